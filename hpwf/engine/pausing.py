"""Trials that pause and resume: the coordinator's side of a `Scheduler` (functions over it).

- `answer_report`: the scheduler's answer to a Report (go on, prune, or pause).
- `paused`: a trial's leader said "paused": the scheduler's decision: RUNNING -> PAUSED, marked in the
  study (`mark_paused`), or RUNNING -> DONE with the result it names (a PBT segment).
- `promote`: paused trials the scheduler promotes go back to WAITING with a new ticket.
- `drain`: nothing else can run: the scheduler promotes the best paused trials or prunes them.
- `adopt`: on resume, trials the last coordinator left paused are PAUSED again in the ledger.

A paused trial stays RUNNING in the study, its intermediate values kept, with the user attr
``hpwf:paused`` (the step it continues from) and ``hpwf:restore`` (where its checkpoint is).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import optuna
from optuna.trial import FrozenTrial

from hpwf.engine.ledger import AgentState, TrialRecord, TrialState
from hpwf.engine.schedulers import Decision
from hpwf.rundir import PAUSED_ATTR, RESTORE_ATTR
from hpwf.wire import PAUSE, Done, DoneState, Stop, send_quietly

if TYPE_CHECKING:
    from hpwf.engine.loop import Coordinator

S = TrialState
REPLIES: dict[Decision, bool | str] = {Decision.CONTINUE: False, Decision.STOP: True, Decision.PAUSE: PAUSE}


def answer_report(c: Coordinator, record: TrialRecord, step: int, value: float) -> bool | str:
    """The scheduler's `Decision` as the trial reads it: False (go on), True (prune) or `PAUSE`."""
    assert c.scheduler is not None
    record.trial.report(value, step)
    return REPLIES[c.scheduler.on_report(record, step, value)]


def paused(c: Coordinator, record: TrialRecord) -> None:
    """The leader's Done said "paused": its checkpoint is saved; its ranks come back as usual. The
    scheduler decides: it stays paused (marked in the study), or it ends now with the result the
    scheduler names (PBT: the segment, told complete with its last value)."""
    assert c.scheduler is not None
    ending = c.scheduler.on_paused(record)
    if ending is not None:
        record.result = ending
        c.session.ledger.move(record, S.DONE)
        return
    c.session.ledger.move(record, S.PAUSED)
    steps = record.trial.storage.get_trial(record.trial._trial_id).intermediate_values
    c.store.effect(c, lambda: mark_paused(record.trial, max(steps) + 1 if steps else 0))  # kept if the store fails


def mark_paused(trial: optuna.Trial, step: int | None) -> None:
    """The study's mark of a paused trial (the step it continues from; None: woken), which a resume
    and `hpwf status` read through `hpwf.rundir.is_paused`."""
    trial.set_user_attr(PAUSED_ATTR, False if step is None else step)
    if step is not None:
        trial.set_user_attr(RESTORE_ATTR, {"from": trial.number, "step": step})


def promote(c: Coordinator, always: bool = False) -> None:
    """Paused trials the scheduler promotes wait for a group again (same number, new ticket).

    Not once the run stops (a paused trial stays paused for a resume). Every turn calls this: it
    looks at the paused trials only when the rungs, the paused trials or the idle agents changed
    since it last looked (or ``always``: housekeeping's look every half second).
    """
    ledger = c.session.ledger
    if c.scheduler is None or c.stop_reason or not ledger.count(S.PAUSED):
        return
    seen = (getattr(c.scheduler, "changes", None), ledger.count(S.PAUSED), ledger.agent_count(AgentState.IDLE))
    if seen == c.promote_seen and seen[0] is not None and not always:
        return
    c.promote_seen = seen
    for record in c.scheduler.promotable(_back(c)):
        _wake(c, record)


def _back(c: Coordinator) -> Iterator[TrialRecord]:
    """Paused trials whose ranks have all come back (a group's other ranks end after its leader);
    lazily: a scheduler with nothing to promote does not look."""
    return (r for r in c.session.ledger.in_state(S.PAUSED) if not any(a.ticket == r.ticket for a in r.agents))


def _wake(c: Coordinator, record: TrialRecord) -> None:
    ledger = c.session.ledger
    for conn in [conn for conn, r in c.attached.items() if r is record]:  # the old attempt's rank 0
        c.attached.pop(conn)
        send_quietly(conn, Stop("paused"))
        c.session.drop(conn)
    ledger.reticket(record)
    record.result, record.agents, record.working = None, [], set()
    c.store.effect(c, lambda: mark_paused(record.trial, None))
    ledger.move(record, S.WAITING)
    ledger.to_front(record)  # it has the most training invested: it goes first
    c.progress.note(f"trial {record.number} resumes")


def drain(c: Coordinator) -> None:
    """Nothing runs, waits or can be asked: the scheduler promotes paused trials or prunes them."""
    ledger = c.session.ledger
    if c.scheduler is None or c.stop_reason:
        return
    if ledger.count(S.ASKED, S.WAITING, S.PLACED, S.RUNNING, S.DONE) or c.can_ask():
        return
    paused = list(_back(c))
    if len(paused) < ledger.count(S.PAUSED):
        return  # a paused group's ranks are still coming back
    wake, prune = c.scheduler.drain(paused)
    for record in wake:
        _wake(c, record)
    for record in prune:
        record.result = Done(record.ticket, DoneState.PRUNED)
        ledger.move(record, S.DONE)


def adopt(c: Coordinator, frozen_trials: list[FrozenTrial]) -> None:
    """Rebuild the scheduler from the study; put this run's paused trials back in the ledger."""
    if c.scheduler is None:
        return
    c.scheduler.recover(c.study.get_trials(deepcopy=False))
    for frozen in frozen_trials:
        trial = optuna.trial.Trial(c.study, frozen._trial_id)
        if frozen.user_attrs.get(PAUSED_ATTR) in (None, False):  # unmarked: its durable result said PAUSED
            mark_paused(trial, max(frozen.intermediate_values) + 1 if frozen.intermediate_values else 0)
        size = c.fixed_size or int(frozen.params.get("ranks_per_trial", 1))
        record = c.session.ledger.add_trial(trial, size)
        c.session.ledger.move(record, S.PAUSED)
    if frozen_trials:
        c.progress.note(f"{len(frozen_trials)} paused trial(s) adopted from the last run")
