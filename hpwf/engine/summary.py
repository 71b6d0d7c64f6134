"""The figures a phase shows: the progress line's fields and ``summary.json``.

``summary.json`` is rewritten when a figure other than the clocks changed, and otherwise every
`SUMMARY_REFRESH_S` (its elapsed time): a week-long run rewrites it a few times a minute, not
twice a second (each rewrite is a create and a rename, metadata work on a parallel filesystem).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpwf.engine.ledger import TrialState
from hpwf.engine.stops import stop_kind
from hpwf.rundir import write_summary

if TYPE_CHECKING:
    from hpwf.engine.loop import Coordinator

SUMMARY_REFRESH_S = 10.0
CLOCKS = ("elapsed_s", "session_wall_s", "utilisation")  # figures that move with time alone


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


class SummaryFile:
    """Writes a phase's ``summary.json`` when it changed (or its clocks are `SUMMARY_REFRESH_S` old)."""

    def __init__(self) -> None:
        self._figures: dict[str, Any] | None = None
        self._written_at = float("-inf")

    def update(self, c: Coordinator, now: float) -> None:
        summary = summarize(c)
        figures = {k: v for k, v in summary.items() if k not in CLOCKS}
        if figures != self._figures or now - self._written_at >= SUMMARY_REFRESH_S:
            write_summary(c.run_dir, summary)
            self._figures, self._written_at = figures, now
