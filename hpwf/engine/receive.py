"""The receive step: what each message from an agent does, and what losing an agent does.

Functions over the `hpwf.engine.loop.Coordinator` ``c``, through its public members only (its
session, ledger, `attached` and `fail`); kept apart so each step reads on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optuna.exceptions import UpdateFinishedTrialError


from hpwf.engine import pausing
from hpwf.engine.ahead import SampleAhead
from hpwf.engine.ledger import AgentRecord, AgentState, TrialRecord, TrialState
from hpwf.engine.stops import Why
from hpwf.engine.store import STORE_ERRORS
from hpwf.rundir import fail_reason
from hpwf.wire import (
    Done, DoneState, Heartbeat, Hello, Reply, Report, Stop, Suggest, Used, UserAttr, send_quietly, suggest, to_optuna)

if TYPE_CHECKING:
    from hpwf.engine.loop import Coordinator

A, S = AgentState, TrialState


def receive(c: Coordinator, conn: Any) -> None:
    """Act on the messages complete on a readable ``conn`` (never blocks on a half-sent one)."""
    try:
        messages = conn.take()
    except Exception as exc:  # noqa: BLE001 - a dead or broken peer must never end the run
        agent = c.session.ledger.agents.get(conn)
        why = "died mid-trial" if isinstance(exc, (EOFError, OSError)) else f"sent an unreadable message ({type(exc).__name__})"
        lose(c, agent, why) if agent is not None else _detach(c, conn, why)
        return
    for message in messages:
        if conn.closed:
            return  # an earlier message of the batch ended this connection
        _act(c, conn, message)


def _act(c: Coordinator, conn: Any, message: Any) -> None:
    agent = c.session.ledger.agents.get(conn)
    if agent is not None:
        agent.last_seen = c.session.clock.now()
    if isinstance(message, Hello):
        _hello(c, conn, agent, message)
    elif isinstance(message, Heartbeat):
        _started_running(c, message.ticket)
    elif isinstance(message, Done):
        _done(c, agent, message)
    elif isinstance(message, (Suggest, Report, UserAttr)):  # (answered once the store answers, if it fails)
        c.store.effect(c, lambda: send_quietly(conn, Reply(message.ticket, _answer(c, message))))
    elif isinstance(message, Used):
        c.store.effect(c, lambda: _answer(c, message))  # one way: no reply


def _hello(c: Coordinator, conn: Any, agent: AgentRecord | None, hello: Hello) -> None:
    ledger = c.session.ledger
    if agent is None or agent.state != A.CONNECTING:
        return  # a second Hello: ignored
    if hello.attach is not None:  # rank 0 of a launched group carries its trial's requests
        ledger.forget_agent(agent)
        record = ledger.trials.get(hello.attach)
        if record is None or record.state not in (S.PLACED, S.RUNNING):
            send_quietly(conn, Stop("that trial is over"))
            c.session.drop(conn)
            return
        c.attached[conn] = record
        send_quietly(conn, c.setup)
        return
    agent.name, agent.host, agent.pid = hello.agent, hello.host, hello.pid
    agent.rank = hello.rank if hello.rank is not None else c.session.agents_seen
    c.session.agents_seen += 1
    ledger.move_agent(agent, A.IDLE)
    send_quietly(conn, c.setup)


def _started_running(c: Coordinator, ticket: int | None) -> TrialRecord | None:
    record = c.session.ledger.trials.get(ticket) if ticket is not None else None
    if record is not None and record.state == S.PLACED:
        c.session.ledger.move(record, S.RUNNING)
    return record


def _answer(c: Coordinator, message: Suggest | Report | UserAttr | Used) -> Any:
    record = _started_running(c, message.ticket)
    if record is None or record.state != S.RUNNING:
        return RuntimeError("this trial is no longer running (it was stopped, failed or timed out)")
    trial = record.trial
    try:
        if message.used:
            SampleAhead.record(trial, message.used, record.proposed)
        if isinstance(message, Used):
            return None
        if isinstance(message, Suggest):
            dist = to_optuna(message.distribution)
            if message.name in record.ahead_fixed and record.proposed.get(message.name) != dist:
                trial._fixed_params.pop(message.name, None)  # proposed for another distribution: drawn afresh
                record.ahead_fixed.discard(message.name)
                record.proposed.pop(message.name, None)
            return suggest(trial, message.name, message.distribution)
        if isinstance(message, Report):
            if not c.outcomes.single:
                return False  # Optuna prunes single-objective studies only
            if c.scheduler is not None:
                return pausing.answer_report(c, record, message.step, message.value)
            trial.report(message.value, message.step)
            return trial.should_prune()
        trial.set_user_attr(message.key, message.value)
        return None
    except STORE_ERRORS:
        raise  # the request waits for the store (hpwf.engine.store), its trial goes on
    except Exception as exc:  # noqa: BLE001 - the trial side raises it in the objective
        return exc


def _done(c: Coordinator, agent: AgentRecord | None, done: Done) -> None:
    ledger = c.session.ledger
    record = ledger.trials.get(done.ticket)
    if record is not None and done.state != DoneState.MEMBER and record.state in (S.PLACED, S.RUNNING):
        c.mean_s = done.duration if c.mean_s is None else 0.8 * c.mean_s + 0.2 * done.duration
        record.result, record.done_at = done, c.session.clock.now()
        if done.used:
            try:
                SampleAhead.record(record.trial, done.used, record.proposed)
            except UpdateFinishedTrialError:
                pass  # another run sharing the study failed it as stale: its tell learns so (Outcomes)
        if done.state in (DoneState.COMPLETE, DoneState.PRUNED):
            ledger.move(record, S.DONE)  # told once the agent has its next trial
        elif done.state == DoneState.PAUSED and c.scheduler is not None:
            pausing.paused(c, record)
        else:
            reason = fail_reason(done.error)
            if agent is not None and agent.ticket == done.ticket and record.size == 1:
                record.working.discard(agent)  # it is done with it: no Abort for it
            c.fail(record, reason, done.error)
    elif record is not None and done.state != DoneState.MEMBER and record.done_at is None:
        record.done_at = c.session.clock.now()  # a failed (e.g. timed-out) trial's leader is back: its other
        # ranks must follow within the linger time too (housekeeping retires a hung one)
    if agent is None or record is None or agent.ticket != done.ticket:
        if agent is not None and agent.ticket == done.ticket:
            ledger.move_agent(agent, A.IDLE)
        return
    launched = c.backend.group_mode != "mpi" and record.size > 1
    record.working.discard(agent)
    if launched or not record.working:
        release(c, record)
    else:
        ledger.move_agent(agent, A.RESERVED, record.ticket)  # the group's ranks come back together


def release(c: Coordinator, record: TrialRecord) -> None:
    """The trial's ranks are all done: its agents are free again."""
    ledger = c.session.ledger
    record.working.clear()
    for agent in record.agents:
        if agent.ticket == record.ticket and agent.state in (A.BUSY, A.RESERVED):
            ledger.move_agent(agent, A.IDLE)
    if record.state in (S.PLACED, S.RUNNING) and record.result is None and not _attached_to(c, record):
        c.fail(record, "the trial's ranks ended without a result")
    ledger.forget(record)


def _attached_to(c: Coordinator, record: TrialRecord) -> bool:
    return any(r is record for r in c.attached.values())


def lose(c: Coordinator, agent: AgentRecord, why: str) -> None:
    """An agent is gone: fail its trial; its group's other ranks are retired (MPI) or freed."""
    ledger = c.session.ledger
    record = ledger.trials.get(agent.ticket) if agent.ticket is not None else None
    c.session.busy_ended += agent.busy_total + (c.session.clock.now() - agent.busy_since
                                                   if agent.state == A.BUSY else 0.0)
    ledger.move_agent(agent, A.LOST)
    c.session.drop(agent.conn)
    if record is None:
        return
    if record.state in (S.PLACED, S.RUNNING):  # a result already in hand (DONE) stands
        c.fail(record, f"{agent.where()} {why}", why=Why.LOST)
    record.working.discard(agent)
    for other in record.agents:
        if other.ticket != record.ticket or other.state not in (A.BUSY, A.RESERVED):
            continue
        if c.backend.group_mode == "mpi" and other in record.working:
            # It may be blocked in a collective with the dead rank, and killing it would make
            # some MPI launchers end the whole job: it gets no more work and exits at the end.
            ledger.move_agent(other, A.RETIRED)
            c.progress.note(f"rank {other.rank} retired: its group lost {agent.where()}")
        elif other not in record.working:
            ledger.move_agent(other, A.IDLE)
    record.working = {a for a in record.working if a.state == A.BUSY}
    if not record.working:
        release(c, record)


def _detach(c: Coordinator, conn: Any, why: str) -> None:
    record = c.attached.pop(conn, None)
    c.session.drop(conn)
    if record is not None and record.result is None:
        c.fail(record, f"the trial's launched ranks ended without a result ({why})")
