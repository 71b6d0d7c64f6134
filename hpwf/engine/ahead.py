"""Sampling ahead of the round trip, with define-by-run kept exact.

When a trial is placed, the coordinator *proposes* a value for every parameter of the space
that each finished trial so far used (Optuna's intersection search space), with the same
sampler logic Optuna's ``suggest_*`` would run (relative samplers' ``sample_relative`` values,
else ``sample_independent``), but records nothing. The proposals travel with the trial; a
``suggest_*`` on the agent whose name and distribution match one is answered there, and the
agent reports it at once in a one-way `Used` message (no wait). Only then is a proposal recorded
in the study, with exactly the proposed value (it is held as one of the Optuna trial's fixed
parameters). A proposal the objective never asks for is never recorded, and a new name or
another distribution still makes the round trip: conditional spaces stay exact.

So that a sampler finds what it finds with round trips (`bench ahead_quality`): a sampler that
learns proposes only after the results in hand are told, and a running trial's used values are
in the study while it runs (TPE's constant liar and GP read them).
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna import pruners
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState


class SampleAhead:
    """Proposes values for the search space seen so far; records the ones a trial used.

    The space is Optuna's intersection search space (complete and pruned trials), kept up to
    date as this run's trials finish (`seen`), so a placement costs O(parameters), not
    O(trials) as recomputing it from the study would.
    """

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        history_free = (optuna.samplers.RandomSampler, optuna.samplers.QMCSampler, optuna.samplers.GridSampler)
        self.learns = not isinstance(study.sampler, history_free)  # it proposes from the results told
        self._space: dict[str, BaseDistribution] | None = None  # None: no finished trial yet
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        for frozen in done:
            self.seen(frozen.distributions)

    def seen(self, distributions: dict[str, BaseDistribution]) -> None:
        """A trial finished with ``distributions``: the space keeps what it shares with them."""
        if self._space is None:
            self._space = dict(distributions)
        else:
            self._space = {k: d for k, d in self._space.items() if distributions.get(k) == d}

    def propose(self, trial: optuna.Trial) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
        """Values and distributions for the seen space's parameters ``trial`` has not recorded."""
        space = self._space or {}
        recorded = trial.params
        values: dict[str, Any] = {}
        dists: dict[str, BaseDistribution] = {}
        for name, dist in space.items():
            if name in recorded:
                continue
            value = _propose(trial, name, dist)
            trial._fixed_params[name] = value  # recording it later gives exactly this value
            values[name], dists[name] = value, dist
        return values, dists

    @staticmethod
    def record(trial: optuna.Trial, used: dict[str, Any], proposed: dict[str, BaseDistribution]) -> None:
        """Record the proposals the objective used (in the order it used them)."""
        for name in used:
            dist = proposed.get(name)
            if dist is not None and name not in trial.params:
                trial._suggest(name, dist)


def _propose(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """What ``trial.suggest_*`` would sample for ``name``, without storing it (Optuna's own order)."""
    if name in trial._fixed_params and dist._contains(dist.to_internal_repr(trial._fixed_params[name])):
        return trial._fixed_params[name]  # an enqueued trial (a retry) keeps its parameters
    if dist.single():
        return optuna.distributions._get_single_value(dist)
    if trial._is_relative_param(name, dist):
        return trial.relative_params[name]
    frozen = trial._get_latest_trial()
    return trial.study.sampler.sample_independent(pruners._filter_study(trial.study, frozen), frozen, name, dist)
