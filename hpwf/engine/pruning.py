"""Optuna's median (percentile) pruner, answered in time that does not grow with the study.

``optuna.pruners.PercentilePruner.prune`` reads every completed trial at each report (a list of
all trials, then their values at the step, then a percentile): the coordinator's CPU per trial
grows with the study, O(n^2) over a run. `Incremental` wraps a `MedianPruner` or
`PercentilePruner` and keeps, per step, the sorted intermediate values of the completed trials,
updated from the trials that are new or were still running at the previous call (completed
trials never change in Optuna). It gives the same answers as the wrapped pruner, to the bit
(the percentile is numpy's 'linear' method, replayed; `tests/test_pruning.py` checks it against
Optuna on random studies). Where the store cannot be followed cheaply (an RDB), the wrapped
pruner answers itself.
"""

from __future__ import annotations

import math
from bisect import insort
from typing import Any, cast

import optuna
from optuna.pruners import BasePruner, MedianPruner, PercentilePruner
from optuna.pruners._percentile import _get_best_intermediate_result_over_steps, _is_first_in_interval_step
from optuna.storages import InMemoryStorage, JournalStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState


def incremental(pruner: BasePruner) -> BasePruner:
    """``pruner`` wrapped in `Incremental` where it is Optuna's own median or percentile
    pruner (not a subclass, whose ``prune`` may differ); else ``pruner`` itself."""
    if type(pruner) in (MedianPruner, PercentilePruner):
        return Incremental(cast(PercentilePruner, pruner))
    return pruner


class Incremental(BasePruner):
    """Answers as ``inner`` (a `PercentilePruner`) would, from values kept since the last call."""

    def __init__(self, inner: PercentilePruner) -> None:
        self.inner = inner
        self._followed: tuple[int, int] | None = None  # (id of the storage, study id) the view is of
        self._known = 0  # trials numbered below it have been seen
        self._open: list[int] = []  # trial ids seen unfinished
        self._completed = 0
        self._counts: dict[int, int] = {}  # step -> completed trials with a value there (NaN included)
        self._values: dict[int, list[float]] = {}  # step -> their non-NaN values, sorted

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        storage = study._storage
        if not isinstance(storage, (InMemoryStorage, JournalStorage)):
            return self.inner.prune(study, trial)
        self._follow(storage, study._study_id)
        inner = self.inner
        if self._completed == 0 or self._completed < inner._n_startup_trials:
            return False
        step = trial.last_step
        if step is None or step < inner._n_warmup_steps:
            return False
        if not _is_first_in_interval_step(step, trial.intermediate_values.keys(), inner._n_warmup_steps,
                                          inner._interval_steps):
            return False
        direction = study.direction
        best = _get_best_intermediate_result_over_steps(trial, direction)
        if math.isnan(best):
            return True
        if self._counts.get(step, 0) < inner._n_min_trials:
            return False
        percentile = inner._percentile
        p = linear_percentile(self._values.get(step, []),
                              100 - percentile if direction == StudyDirection.MAXIMIZE else percentile)
        if math.isnan(p):
            return False
        return bool(best < p) if direction == StudyDirection.MAXIMIZE else bool(best > p)

    def _follow(self, storage: Any, study_id: int) -> None:
        """Bring the view up to the store: new trials, and those that were unfinished."""
        if self._followed != (id(storage), study_id):
            self.__init__(self.inner)  # type: ignore[misc]
            self._followed = (id(storage), study_id)
            trials = storage.get_all_trials(study_id, deepcopy=False)  # one pass, at the start
            for frozen in trials:
                self._see(frozen, sort=False)
            for values in self._values.values():
                values.sort()
            self._known = len(trials)
            return
        while True:
            try:
                self._open.append(storage.get_trial_id_from_study_id_trial_number(study_id, self._known))
            except KeyError:
                break
            self._known += 1
        still, self._open = self._open, []
        for trial_id in still:
            self._see(storage.get_trial(trial_id))

    def _see(self, frozen: FrozenTrial, sort: bool = True) -> None:
        if not frozen.state.is_finished():
            self._open.append(frozen._trial_id)
            return
        if frozen.state != TrialState.COMPLETE:
            return
        self._completed += 1
        for step, value in frozen.intermediate_values.items():
            self._counts[step] = self._counts.get(step, 0) + 1
            if not math.isnan(value):
                (insort if sort else list.append)(self._values.setdefault(step, []), value)


def linear_percentile(ordered: list[float], percentile: float) -> float:
    """``numpy.nanpercentile(values, percentile)`` of values whose non-NaN ones are ``ordered``
    (sorted): numpy's default 'linear' method, step by step as numpy 2 computes it, so that the
    float is the same."""
    n = len(ordered)
    if n == 0:
        return math.nan  # numpy: an all-NaN slice
    virtual = (n - 1) * (percentile / 100)
    previous = float(math.floor(virtual))
    if virtual >= n - 1:
        previous = -1.0
        low = high = ordered[-1]
    else:
        low, high = ordered[int(previous)], ordered[int(previous) + 1]
    gamma = virtual - previous
    diff = high - low
    if gamma >= 0.5:
        return high - diff * (1 - gamma)
    return low + diff * gamma
