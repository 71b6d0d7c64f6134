"""The study side of a phase: results told, failures recorded, trials queued again, the best kept.

Only this module writes trial states into the Optuna study. A trial whose ``tell`` raises stays
DONE in the ledger (its result is durable in its folder), so a failed store write is retried by
a resume instead of being lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from hpwf.engine.session import Counts
from hpwf.rundir import (
    make_folder,
    ATTEMPT_ATTR, FAIL_REASON_ATTR, FAILURE, RETRY_OF_ATTR, RUN_ATTR, TRACEBACK_ATTR, attrs, read_result, trial_folder,
    write_atomically)
from hpwf.wire import Done, DoneState


class Outcomes:
    """Tells results and failures to ``study`` and keeps the phase's `Counts`."""

    def __init__(self, study: optuna.Study, run_dir: Path, run_id: str, retries: int, note: Callable[[str], None]) -> None:
        self.study = study
        self.run_dir = run_dir
        self.run_id = run_id
        self.retries = retries  # a failed trial runs again (same params and attrs) this many times
        self.note = note
        self.counts = Counts()
        self.single = len(study.directions) == 1
        self._maximize = self.single and study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        self.on_requeue: Callable[[], None] = lambda: None  # the scheduler hears of every trial queued again

    def tell(self, trial: optuna.Trial, done: Done) -> FrozenTrial:
        """Store a finished trial's result (complete or pruned)."""
        if done.state == DoneState.PRUNED:
            frozen = self.study.tell(trial, state=TrialState.PRUNED)
            self.counts.pruned += 1
            return frozen
        values = done.values or []
        if len(values) != len(self.study.directions):
            raise ValueError(f"{len(values)} value(s) for a study of {len(self.study.directions)} objectives")
        frozen = self.study.tell(trial, values[0] if self.single else values)
        if frozen.state != TrialState.COMPLETE:  # Optuna refused the values (it logs why)
            self.counts.fail += 1
            self.counts.fail_here += 1
            return frozen
        self.counts.complete += 1
        self.consider_best(frozen)
        return frozen

    def fail(self, trial: optuna.Trial, reason: str, traceback_text: str | None, *,
             counts_as_failure: bool = True) -> bool:
        """Store ``trial`` as FAIL with its reason; queue it again if a retry is left. True if queued.

        A trial another run finished meanwhile (e.g. failed as stale) is left as it is: False.
        """
        try:
            trial.set_user_attr(FAIL_REASON_ATTR, reason[:1000])
            if traceback_text:
                trial.set_user_attr(TRACEBACK_ATTR, traceback_text[-8000:])
            frozen = self.study.tell(trial, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):
            if not self.finished_elsewhere(trial):
                raise
            self.note(f"trial {trial.number} was finished by another run; it stays as that run left it")
            return False
        if not traceback_text:
            folder = trial_folder(self.run_dir, trial.number)
            make_folder(folder)
            write_atomically(folder / FAILURE, reason + "\n")
        self.counts.fail += 1
        self.counts.fail_here += counts_as_failure
        attempt = int(frozen.user_attrs.get(ATTEMPT_ATTR, 0))
        if not counts_as_failure:  # interrupted or never started: it runs again, whatever the retries
            self.requeue(frozen)
            return True
        if attempt < self.retries:
            self.requeue(frozen, attempt + 1)
            return True
        return False

    def finished_elsewhere(self, trial: optuna.Trial) -> bool:
        """Whether the store holds ``trial`` as finished (by another run sharing the study)."""
        return self.study._storage.get_trial(trial._trial_id).state.is_finished()

    def requeue(self, frozen: FrozenTrial | optuna.Trial, attempt: int | None = None) -> None:
        """Queue a trial to run again with the same parameters and the same member attributes.

        The parameters include those it was queued with and had not drawn yet (a retry that was
        interrupted before its objective asked for them keeps them).
        """
        carried = attrs.carried(frozen.user_attrs)
        carried[RETRY_OF_ATTR] = frozen.number
        if attempt is not None:
            carried[ATTEMPT_ATTR] = attempt
        queued_with = (frozen.system_attrs.get("fixed_params") if isinstance(frozen, FrozenTrial)
                       else frozen._fixed_params) or {}
        self.study.enqueue_trial({**queued_with, **frozen.params}, user_attrs=carried)
        self.on_requeue()

    def consider_best(self, frozen: FrozenTrial) -> None:
        if not self.single or frozen.value is None:
            return
        best = self.counts.best_value
        if best is None or (frozen.value > best if self._maximize else frozen.value < best):
            self.counts.best_value, self.counts.best_number = frozen.value, frozen.number
            self.counts.best_params = dict(frozen.params)

    def recover(self, own_store: bool, keep_paused: bool = False) -> list[FrozenTrial]:
        """Count what this run finished before; settle the trials a dead coordinator left RUNNING.

        A trial whose durable result is in its folder is told, not trained again; the others are
        failed and queued again. The budget is per run: runs sharing one study each finish
        their own ``n_trials``. With ``keep_paused`` (a scheduler that resumes trials), this run's
        paused trials are returned, untouched, for the coordinator to adopt.
        """
        from hpwf.rundir import is_paused

        paused = []
        trials = self.study.get_trials(deepcopy=False)
        retried = {t.user_attrs.get(RETRY_OF_ATTR) for t in trials}
        for frozen in trials:
            ours = frozen.user_attrs.get(RUN_ATTR) == self.run_id
            if frozen.state == TrialState.COMPLETE:
                self.counts.complete += ours
                self.consider_best(frozen)
            elif frozen.state == TrialState.PRUNED:
                self.counts.pruned += ours
            elif frozen.state == TrialState.FAIL:
                self.counts.fail += ours
                attempt = int(frozen.user_attrs.get(ATTEMPT_ATTR, 0))
                if ours and frozen.number not in retried and attempt < self.retries:
                    self.requeue(frozen, attempt + 1)  # its coordinator died between the failure and the retry
            elif keep_paused and ours and is_paused(frozen, self.run_dir):
                paused.append(frozen)
            elif frozen.state == TrialState.RUNNING and (ours or (own_store and RUN_ATTR not in frozen.user_attrs)):
                # (the latter: asked, then the store failed before it was marked, e.g. a full disk)
                # We hold the run lock, so whoever ran this trial is gone.
                self._settle(frozen)
        return paused

    def tell_durable(self, trial: optuna.Trial) -> bool:
        """Tell ``trial`` from the result its leader saved in its folder, if it saved one (complete
        or pruned). True if told: a result on disk is never trained again."""
        result = read_result(self.run_dir, trial.number)
        if result is None or result.get("number") != trial.number or result["state"] not in ("COMPLETE", "PRUNED"):
            return False
        state = DoneState.COMPLETE if result["state"] == "COMPLETE" else DoneState.PRUNED
        try:
            _record_params(trial, result)
            self.tell(trial, Done(-1, state, result.get("values")))
        except ValueError:
            return False
        self.note(f"trial {trial.number}: its result, saved before the coordinator stopped, is kept")
        return True

    def _settle(self, frozen: FrozenTrial) -> None:
        trial = optuna.trial.Trial(self.study, frozen._trial_id)
        if self.tell_durable(trial):
            return
        self.fail(trial, "interrupted: its coordinator stopped; it runs again on resume", None,
                  counts_as_failure=False)

    def fail_stale(self, frozen: FrozenTrial, reason: str) -> None:
        """Fail a trial of a run that vanished, and queue it again (here, in this run)."""
        stale = optuna.trial.Trial(self.study, frozen._trial_id)
        try:
            stale.set_user_attr(FAIL_REASON_ATTR, reason)
            self.study.tell(stale, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):  # its own run finished it meanwhile
            if not self.finished_elsewhere(stale):
                raise
            return
        self.requeue(frozen)


def _record_params(trial: optuna.Trial, result: dict[str, Any]) -> None:
    """Parameters a durable result used that the store does not have yet (sampled ahead)."""
    from optuna.distributions import json_to_distribution

    dists = result.get("distributions") or {}
    for name, value in (result.get("params") or {}).items():
        if name not in trial.params and name in dists:
            trial._fixed_params[name] = value
            trial._suggest(name, json_to_distribution(dists[name]))
