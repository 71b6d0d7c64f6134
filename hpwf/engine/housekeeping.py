"""The housekeeping step (every half second): health, the budget, the journal's snapshot, the summary (when it changed) and progress.

Functions over the `hpwf.engine.loop.Coordinator` ``c``, through its public members only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hpwf.engine import health
from hpwf.engine.ledger import AgentState, TrialState
from hpwf.engine.receive import lose, release
from hpwf.engine.stops import StopKind, StopReason, Why
from hpwf.engine.summary import progress_fields

if TYPE_CHECKING:
    from hpwf.engine.loop import Coordinator

A, S = AgentState, TrialState
LINGER_S = 30.0  # an MPI group's other ranks return within this after their leader's Done, or are retired
STARVED_S = 300.0  # waiting trials that no set of live agents can hold, for this long, stop the run


def housekeeping(c: Coordinator, now: float) -> None:
    ledger = c.session.ledger
    for agent, silent in health.silent_agents(ledger.agents_in(A.CONNECTING, A.IDLE, A.BUSY, A.RESERVED), now,
                                              c.session.heartbeat):
        lose(c, agent, f"silent for {silent:.0f} s (no heartbeat)")
    for record in health.overdue_trials(ledger.in_state(S.PLACED, S.RUNNING), now, c.trial_timeout):
        mpi = c.backend.group_mode == "mpi"
        ended = "its ranks take no other trial until it returns" if mpi else "its workers were ended"
        c.fail(record, f"exceeded trial_timeout={c.trial_timeout:g} s; {ended}", why=Why.TIMED_OUT)
        if mpi and record.done_at is None:
            record.done_at = now  # its ranks, leader too, must come back within the linger time
    _reclaim_lingering_ranks(c, now)
    if now - c.last_beat >= c.heartbeat:
        c.last_beat = now
        c.store.run(c, lambda: _watch_runs(c, now))
    if c.store.expired(now) and not c.stop_reason:
        c.stop_reason = c.store.stop_reason(c.run_dir)
    _check_budget(c, now)
    c.snapshots.tick()
    c.summary_file.update(c, now)
    c.progress.update(progress_fields(c))


def _watch_runs(c: Coordinator, now: float) -> None:
    """This run's heartbeat in the study; other runs' trials whose run stopped beating run again."""
    health.beat(c.study, c.run_id, c.heartbeat, c.session.clock.wall())
    ours = {r.number for r in c.session.ledger.trials.values()}
    for frozen, reason in c.stale_watch.stale(c.study, ours, now, c.session.clock.wall()):
        c.outcomes.fail_stale(frozen, reason)


def _reclaim_lingering_ranks(c: Coordinator, now: float) -> None:
    """Ranks of an MPI group still out `LINGER_S` after their leader's `Done`, or after their trial
    timed out (e.g. a Horovod or NCCL shutdown hang, or a leader hung in the objective, their
    heartbeat thread still beating) are retired: they take no more work and are never told to exit
    (that would end the job); the group's ranks that came back are free again."""
    if c.backend.group_mode != "mpi":
        return
    ledger = c.session.ledger
    linger = max(LINGER_S, health.SILENT_BEATS * c.heartbeat)
    for record in ledger.in_state(S.DONE, S.TOLD, S.PAUSED, S.FAILED, S.REQUEUED):
        if record.done_at is None or not record.working or now - record.done_at <= linger:
            continue
        for agent in list(record.working):
            if agent.state in (A.BUSY, A.RESERVED) and agent.ticket == record.ticket:
                ledger.move_agent(agent, A.RETIRED)
                c.progress.note(f"{agent.where()} retired: it did not return {linger:.0f} s after "
                                f"trial {record.number} ended (its leader reported, or it timed out)")
        record.working.clear()
        release(c, record)


def _check_budget(c: Coordinator, now: float) -> None:
    timeout = c.budget.timeout
    if timeout is not None and c.elapsed() >= timeout and not c.stop_reason:
        c.stop_reason = StopReason(StopKind.TIME_BUDGET, "time budget reached")
    ledger = c.session.ledger
    if not c.stop_reason:
        working = ledger.working_agents()
        c.backend.heal(working)
        failure = c.backend.failure(working, c.session.agents_seen)
        if failure and working < min(c.biggest, c.backend.slots):
            c.stop_reason = StopReason(StopKind.BACKEND, f"backend failed: {failure}")
        elif c.backend.slots < c.biggest:  # e.g. an MPI job restarted without a lost host
            c.stop_reason = StopReason(StopKind.BACKEND, f"backend failed: {c.backend.slots} ranks are left, and "
                                                         f"ranks_per_trial needs up to {c.biggest}")
    _check_starved(c, now)
    if c.stop_reason:
        for record in ledger.in_state(S.ASKED, S.WAITING):
            c.fail(record, f"not started: {c.stop_reason}", why=Why.NOT_STARTED)


def _check_starved(c: Coordinator, now: float) -> None:
    """Trials (waiting, or still to ask) bigger than every live agent together, with nothing
    running, for `STARVED_S`: stop (the backend's call before any agent came)."""
    ledger = c.session.ledger
    waiting = list(ledger.in_state(S.WAITING))
    need = min(r.size for r in waiting) if waiting else (c.smallest if c.can_ask() else None)
    starving = need is not None and c.session.agents_seen and not ledger.count(S.PLACED, S.RUNNING) and \
        need > _capacity(c)
    if not starving:
        c.starved_since = None
    elif c.starved_since is None:
        c.starved_since = now
    elif now - c.starved_since > STARVED_S + health.SILENT_BEATS * c.heartbeat and not c.stop_reason:
        where = " on one host" if c.one_host else ""
        c.stop_reason = StopReason(StopKind.BACKEND, f"backend failed: only {_capacity(c)} agents are left{where}, "
                                                     f"and the trials need {need} ranks")


def _capacity(c: Coordinator) -> int:
    """The biggest group the live agents could form (a launched group's: on one host)."""
    agents = c.session.ledger.agents_in(A.IDLE, A.BUSY, A.RESERVED)
    if not c.one_host:
        return len(list(agents))
    per_host: dict[str, int] = {}
    for agent in agents:
        per_host[agent.host] = per_host.get(agent.host, 0) + 1
    return max(per_host.values(), default=0)
