"""The figures a phase shows: the progress line's fields and ``summary.json``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpwf.engine.ledger import TrialState
from hpwf.engine.stops import stop_kind

if TYPE_CHECKING:
    from hpwf.engine.loop import Coordinator


def progress_fields(c: Coordinator) -> dict[str, Any]:
    counts, ledger = c.counts, c.session.ledger
    return {
        "done": counts.finished_ok, "total": c.budget.n_trials, "pruned": counts.pruned, "failed": counts.fail,
        "running": ledger.count(TrialState.PLACED, TrialState.RUNNING), "best": counts.best_value,
        "agents": ledger.working_agents(), "elapsed": c.elapsed(), "timeout": c.budget.timeout,
    }


def summarize(c: Coordinator) -> dict[str, Any]:
    """Counts, best trial, elapsed time and rank utilisation (busy rank-seconds / available)."""
    session = c.session
    now = session.clock.now()
    wall = max(now - c.started, 1e-9)
    busy = session.busy_seconds() - c.busy_before
    slots = max(c.backend.slots, 1)
    counts = c.counts
    return {
        "study": c.study.study_name, "complete": counts.complete, "pruned": counts.pruned, "fail": counts.fail,
        "running": session.ledger.count(TrialState.PLACED, TrialState.RUNNING),
        "paused": session.ledger.count(TrialState.PAUSED),
        "n_trials": c.budget.n_trials, "timeout": c.budget.timeout,
        "best_value": counts.best_value, "best_trial": counts.best_number, "best_params": counts.best_params,
        "elapsed_s": round(c.elapsed(), 3), "session_wall_s": round(wall, 3),
        "slots": c.backend.slots, "agents_seen": session.agents_seen,
        "agents_unreachable": c.backend.unreachable_agents,
        "utilisation": round(min(busy / (slots * wall), 1.0), 4),
        "stop_reason": c.stop_reason,
        "connections_refused": getattr(session.hub, "refused", 0),  # hung up on by the hub (a flood?)
        "stop_kind": kind.value if (kind := stop_kind(c.stop_reason)) else None,
    }
