"""An array task's side of the member study: claim its member's trial with a compare-and-set,
answer the member's requests against the storage as the coordinator would, tell the result (and
write its durable ``result.json``), and beat while it trains."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import optuna
from optuna.trial import TrialState

from hpwf.errors import ConfigError
from hpwf.rundir import (ATTEMPT_ATTR, CONFIG, FAIL_REASON_ATTR, HEARTBEAT_ATTR, MEMBER, RETRY_OF_ATTR, RUN_ATTR, SEED,
                         SOURCE, TRACEBACK_ATTR, fail_reason, trial_seed)
from hpwf.wire import Assign, Done, DoneState, Report, Suggest, UserAttr, suggest

HEARTBEAT_S = 10.0


@dataclasses.dataclass(frozen=True)
class Claimed:
    """The trial this task runs: its number, the task for `hpwf.worker._agent.run_trial`, its storage id."""

    task: Assign
    trial_id: int


def claim(study: optuna.Study, member: int, members: int, run_id: str, seed: int) -> Claimed | None:
    """Move this member's WAITING trial to RUNNING (queueing a new attempt if it has none)."""
    mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(MEMBER) == member]
    if not mine:
        raise ConfigError(f"--member {member}: the ensemble has members 0..{members - 1}")
    if any(t.state == TrialState.COMPLETE for t in mine):
        return None
    for t in mine:
        if t.state == TrialState.RUNNING:  # its task was killed: this task is the member's only runner
            stale = optuna.trial.Trial(study, t._trial_id)
            stale.set_user_attr(FAIL_REASON_ATTR, "interrupted: its array task ended; the member runs again")
            study.tell(stale, state=TrialState.FAIL)
    if not any(t.state == TrialState.WAITING for t in mine):
        last = max(mine, key=lambda t: t.number)
        attrs = {k: last.user_attrs[k] for k in (MEMBER, CONFIG, SOURCE, SEED) if k in last.user_attrs}
        attrs.update({RETRY_OF_ATTR: last.number, ATTEMPT_ATTR: int(last.user_attrs.get(ATTEMPT_ATTR, 0)) + 1})
        study.enqueue_trial({}, user_attrs=attrs)
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if t.user_attrs.get(MEMBER) != member:
            continue
        if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):  # compare-and-set
            trial = optuna.trial.Trial(study, t._trial_id)
            trial.set_user_attr(RUN_ATTR, run_id)
            trial.set_user_attr(HEARTBEAT_ATTR, time.time())
            attrs = {k: v for k, v in t.user_attrs.items() if k in (MEMBER, CONFIG, SOURCE, SEED)}
            fields = {f.name for f in dataclasses.fields(Assign)}
            extra: dict[str, Any] = {"ticket": t.number} if "ticket" in fields else {}  # messages' key, where used
            task = Assign(number=t.number, params={}, distributions={}, seed=trial_seed(seed, run_id, t.number),
                          attrs=attrs, **extra)
            return Claimed(task, t._trial_id)
    raise ConfigError(f"--member {member}: another process took its trial; is a second task of this member running?")


def answerer(trial: optuna.Trial | None) -> Any:
    """What the coordinator would answer a trial's requests, done here against the storage."""

    def answer(message: Any) -> Any:
        assert trial is not None, "only rank 0 of a member talks to the storage"
        if isinstance(message, Suggest):
            return suggest(trial, message.name, message.distribution)
        if isinstance(message, Report):
            trial.report(message.value, message.step)
            return trial.should_prune()
        if isinstance(message, UserAttr):
            trial.set_user_attr(message.key, message.value)
            return None
        raise TypeError(f"unexpected request {message!r}")

    return answer


def tell(study: optuna.Study, claimed: Claimed, done: Done, folder: Path) -> bool:
    """Record the result (and result.json, as the coordinator writes it); True unless it failed."""
    from hpwf.rundir import read_result, write_result
    from hpwf.workflow import ENSEMBLE_DIR

    trial = optuna.trial.Trial(study, claimed.trial_id)
    if done.state == DoneState.COMPLETE and done.values:
        frozen = study.tell(trial, done.values[0])
    elif done.state == DoneState.PRUNED:
        frozen = study.tell(trial, state=TrialState.PRUNED)
    else:
        reason = fail_reason(done.error)
        trial.set_user_attr(FAIL_REASON_ATTR, reason)
        if done.error:
            trial.set_user_attr(TRACEBACK_ATTR, done.error[-8000:])
        frozen = study.tell(trial, state=TrialState.FAIL)
        say(f"member {claimed.task.attrs and claimed.task.attrs.get('member')} (trial {frozen.number}) failed: {reason}")
    sub = folder / ENSEMBLE_DIR
    if read_result(sub, frozen.number) is None:  # (the agent's own durable result is kept)
        write_result(sub, frozen.number, frozen.state.name, frozen.values, frozen.params, done.duration)
    if frozen.state != TrialState.FAIL:
        say(f"member {claimed.task.attrs and claimed.task.attrs.get('member')} (trial {frozen.number}) "
             f"{frozen.state.name.lower()}: {frozen.value} in {done.duration:.1f} s")
    return frozen.state != TrialState.FAIL


@contextlib.contextmanager
def heartbeat(trial: optuna.Trial | None) -> Iterator[None]:
    """Stamp the trial's heartbeat while it trains, so a coordinator sees it alive."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                trial.set_user_attr(HEARTBEAT_ATTR, time.time())  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - a missed beat is not worth ending the member for
                pass

    thread = threading.Thread(target=beat, name="hpwf-member-heartbeat", daemon=True) if trial else None
    if thread:
        thread.start()
    try:
        yield
    finally:
        stop.set()


def say(text: str) -> None:
    from hpwf.progress import say as say_line

    say_line(f"[hpwf] {text}")
