"""Health: silent agents, over-long trials, and RUNNING trials of runs that vanished.

Pure functions over the ledger and the store, called from the loop's housekeeping (every half
second, so they may be O(agents)); the loop decides what to do with what they find.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import optuna
from optuna.trial import TrialState

from hpwf.engine.ledger import AgentRecord, AgentState, TrialRecord, TrialState as S
from hpwf.rundir import HEARTBEAT_ATTR, RUN_ATTR, RUN_BEAT_PREFIX

SILENT_BEATS = 3  # an agent silent this many heartbeats is lost
CLOCK_SKEW_S = 300.0  # a beat older than its limit plus this, by our clock, is stale at first sight


def silent_agents(agents: Iterable[AgentRecord], now: float, heartbeat: float) -> list[tuple[AgentRecord, float]]:
    """Agents (idle, busy, reserved or still connecting) silent for `SILENT_BEATS` heartbeats.

    Every agent beats whatever it does, so silence means the process or its node is gone, or
    it is stuck so deep that it cannot run a thread: either way its trial cannot finish.
    """
    limit = SILENT_BEATS * heartbeat
    live = (AgentState.CONNECTING, AgentState.IDLE, AgentState.BUSY, AgentState.RESERVED)
    return [(a, now - a.last_seen) for a in agents if a.state in live and now - a.last_seen > limit]


def overdue_trials(trials: Iterable[TrialRecord], now: float, trial_timeout: float | None) -> list[TrialRecord]:
    """Placed or running trials older than ``trial_timeout`` seconds."""
    if trial_timeout is None:
        return []
    return [t for t in trials if t.state in (S.PLACED, S.RUNNING) and now - t.placed_at > trial_timeout]


def beat(study: optuna.Study, run_id: str, every: float, wall: float) -> None:
    """This run is alive: one store write per heartbeat for the whole run (not one per trial)."""
    study.set_user_attr(RUN_BEAT_PREFIX + run_id, {"t": wall, "every": every})


@dataclass
class _Seen:
    value: float
    since: float  # our clock when this beat value was first seen


class StaleWatch:
    """RUNNING trials of other runs on a shared store whose run stopped beating.

    Each run is judged by its own interval, and by our clock only: a beat is stale once it has
    not changed for `SILENT_BEATS` + 1 of its intervals while we watched, or at first sight when
    it is older than that by any clock skew a cluster could have (`CLOCK_SKEW_S`).
    """

    def __init__(self, own_run: str, fallback_every: float) -> None:
        self.own_run = own_run
        self.fallback_every = fallback_every  # for a beat that does not say its interval
        self._seen: dict[str, _Seen] = {}

    def stale(self, study: optuna.Study, ours: set[int], now: float, wall: float) -> list[tuple[Any, str]]:
        """(frozen trial, reason) for every RUNNING trial whose run vanished."""
        runs = study.user_attrs
        found = []
        watched: dict[str, _Seen] = {}  # only what is RUNNING now is kept: bounded by the live trials
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            run = frozen.user_attrs.get(RUN_ATTR)
            if frozen.number in ours or run == self.own_run:
                continue
            beat_value, every = _beat_of(frozen, runs.get(RUN_BEAT_PREFIX + str(run)), self.fallback_every)
            if beat_value is None:
                continue  # nothing to judge it by
            key = f"run:{run}" if isinstance(runs.get(RUN_BEAT_PREFIX + str(run)), dict) else f"trial:{frozen._trial_id}"
            seen = self._seen.get(key)
            if seen is None or seen.value != beat_value:
                seen = _Seen(beat_value, now)
            watched[key] = seen
            limit = SILENT_BEATS * every
            if wall - beat_value > limit + CLOCK_SKEW_S or now - seen.since > limit + every:
                found.append((frozen, f"stale: no heartbeat for {max(wall - beat_value, now - seen.since):.0f} s; it runs again"))
        self._seen = watched
        return found


def _beat_of(frozen: Any, run_beat: Any, fallback_every: float) -> tuple[float | None, float]:
    if isinstance(run_beat, dict) and isinstance(run_beat.get("t"), (int, float)):
        every = run_beat.get("every")
        return float(run_beat["t"]), float(every) if isinstance(every, (int, float)) and every > 0 else fallback_every
    own = frozen.user_attrs.get(HEARTBEAT_ATTR)
    return (float(own), fallback_every) if isinstance(own, (int, float)) else (None, fallback_every)
