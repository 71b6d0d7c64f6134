"""`hpwf.engine.pruning.Incremental` answers exactly as Optuna's median/percentile pruner."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.pruners import MedianPruner, NopPruner, PercentilePruner, SuccessiveHalvingPruner
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from hpwf.engine.pruning import Incremental, incremental, linear_percentile

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on NaN and inf values


def _value(rng: random.Random) -> float:
    roll = rng.random()
    if roll < 0.05:
        return math.nan
    if roll < 0.07:
        return rng.choice([math.inf, -math.inf])
    if roll < 0.2:
        return float(rng.randint(0, 3))  # ties
    return rng.gauss(0, 1)


def _compare(study: optuna.Study, reference: optuna.pruners.BasePruner, seed: int, n: int = 120) -> int:
    """Run ``n`` trials, a few at a time, reporting random values; at each report ask both
    pruners about the reporting trial. Returns how many answers were 'prune'."""
    rng = random.Random(seed)
    ours = incremental(reference)
    assert isinstance(ours, Incremental)
    running: list[optuna.Trial] = []
    pruned = asked = 0
    while asked < n or running:
        while asked < n and len(running) < rng.randint(1, 6):
            running.append(study.ask())
            asked += 1
        trial = rng.choice(running)
        frozen = study._storage.get_trial(trial._trial_id)
        step = (frozen.last_step + rng.randint(1, 3)) if frozen.last_step is not None else rng.randint(0, 2)
        if rng.random() < 0.7 and step < 12:
            trial.report(_value(rng), step)
            frozen = study._storage.get_trial(trial._trial_id)
            expected = reference.prune(study, frozen)
            if seed % 4 or asked > n // 2:  # (seed % 4 == 0: ours first asked with half the study done)
                assert ours.prune(study, frozen) == expected, (seed, frozen.number, step)
            pruned += expected
            continue
        state = rng.choices([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL], [8, 1, 1])[0]
        study.tell(trial, rng.random() if state == TrialState.COMPLETE else None, state=state)
        running.remove(trial)
    return pruned


@pytest.mark.parametrize("seed", range(12))
def test_same_answers_as_optuna_on_random_studies(seed: int, tmp_path: Path) -> None:
    rng = random.Random(1000 + seed)
    options = {"n_startup_trials": rng.choice([0, 1, 5]), "n_warmup_steps": rng.choice([0, 2]),
               "interval_steps": rng.choice([1, 3]), "n_min_trials": rng.choice([1, 4])}
    reference = MedianPruner(**options) if seed % 2 else \
        PercentilePruner(rng.choice([0.0, 10.0, 25, 33.3, 75.0, 100.0]), **options)
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "j.log"))) if seed % 3 == 0 else None
    study = optuna.create_study(storage=storage, direction=rng.choice(["minimize", "maximize"]))
    assert _compare(study, reference, seed) > 0  # the pruner did prune: the comparison covers both answers


def test_follows_trials_another_writer_completes(tmp_path: Path) -> None:
    """Trials created and completed by another process (another storage object on the same
    journal) count as Optuna counts them."""
    path = str(tmp_path / "j.log")
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(path)), study_name="s")
    other = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(path)))
    reference = MedianPruner(n_startup_trials=1)
    ours = incremental(reference)
    mine = study.ask()
    mine.report(0.5, 0)
    for value in (0.1, 0.2, 0.3, 0.9):
        frozen = study._storage.get_trial(mine._trial_id)
        assert ours.prune(study, frozen) == reference.prune(study, frozen)
        theirs = other.ask()
        theirs.report(value, 0)
        other.tell(theirs, value)
    frozen = study._storage.get_trial(mine._trial_id)
    assert bool(reference.prune(study, frozen)) is True  # 0.5 is above the median of 0.1..0.9 (0.25)
    assert ours.prune(study, frozen) is True


def test_linear_percentile_is_numpys() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        values = sorted(rng.gauss(0, 1) if rng.random() < 0.9 else rng.choice([math.inf, -math.inf, 0.0])
                        for _ in range(rng.randint(1, 9)))
        q = rng.choice([0.0, 100.0, 50.0, 25, rng.uniform(0, 100)])
        expected = float(np.nanpercentile(np.array(values, dtype=float), q))
        got = linear_percentile(values, q)
        assert got == expected or (math.isnan(got) and math.isnan(expected)), (values, q)


def test_other_pruners_are_left_alone() -> None:
    class Mine(MedianPruner):
        pass

    for pruner in (NopPruner(), SuccessiveHalvingPruner(), Mine()):
        assert incremental(pruner) is pruner
