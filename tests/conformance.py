"""The backend conformance suite: every backend runs these same tests (Optuna's pytest_storages style).

A backend's test module subclasses `BackendConformance` and defines the `backend` fixture, a
factory ``backend(slots) -> hpwf.backends.Backend``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable

import optuna
import pytest
from optuna.trial import TrialState

import hpwf
from hpwf.backends import Backend
from tests import objectives
from hpwf.rundir._trialdir import trial_folder


def run(backend: Backend, tmp_path: Path, objective: Callable[..., Any], **search: Any) -> hpwf.RunResult:
    search.setdefault("n_trials", 6)
    search.setdefault("direction", "minimize")
    search.setdefault("pruner", "none")  # backends, not pruning, are under test (the default is Optuna's median)
    wf = hpwf.Workflow(objective=objective, search=hpwf.Search(**search))
    return hpwf.run(wf, backend=backend, run_dir=tmp_path / "run", progress=False)


def states(result: hpwf.RunResult) -> dict[str, int]:
    trials = hpwf.load_study(result.run_dir).get_trials(deepcopy=False)
    return {s.name: sum(t.state == s for t in trials) for s in TrialState if any(t.state == s for t in trials)}


class ThresholdPruner(optuna.pruners.BasePruner):
    """Prunes a trial as soon as it reports a value above 1.5."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        return step is not None and trial.intermediate_values[step] > 1.5


class BackendConformance:
    """What every backend must do. Subclasses provide the `backend` fixture."""

    slots = 2
    lost_with_a_rank = 1  # trials lost when one rank dies (an MPI launcher may end all its ranks)

    def test_runs_the_budget_and_writes_trial_folders(self, backend, tmp_path: Path) -> None:
        result = run(backend(self.slots), tmp_path, objectives.quadratic, n_trials=8, seed=3)
        assert states(result) == {"COMPLETE": 8}
        study = optuna.load_study(study_name="workflow", storage=hpwf.rundir._run.open_storage(None, result.run_dir))
        assert len(study.trials) == 8 and study.best_value == result.summary["best_value"]
        for t in study.trials:
            folder = trial_folder(result.run_dir, t.number)
            assert json.loads((folder / "params.json").read_text()) == t.params
            assert "trained x=" in (folder / "log.txt").read_text()
            assert len((folder / "metrics.csv").read_text().splitlines()) == 1 + 3
            assert json.loads((folder / "result.json").read_text())["state"] == "COMPLETE"

    def test_same_parameters_when_every_trial_shares_a_search_space(self, backend, tmp_path: Path) -> None:
        result = run(backend(self.slots), tmp_path, objectives.conditional, n_trials=10, sampler="random", seed=0)
        study = hpwf.load_study(result.run_dir)
        for t in study.trials:  # conditional parameters are never sampled for the other branch
            expected = {"kind", "slope"} if t.params["kind"] == "linear" else {"kind", "a", "b"}
            assert set(t.params) == expected

    def test_intermediate_values_reach_the_study_while_the_trial_runs(self, backend, tmp_path: Path) -> None:
        result = run(backend(self.slots), tmp_path, objectives.sees_itself_running, n_trials=3)
        assert states(result) == {"COMPLETE": 3}

    def test_pruner_stops_trials_mid_run(self, backend, tmp_path: Path) -> None:
        result = run(backend(self.slots), tmp_path, objectives.prunes_at_step_two, n_trials=6, pruner=ThresholdPruner())
        study = hpwf.load_study(result.run_dir)
        for t in study.trials:
            if t.number % 2:
                assert t.state == TrialState.PRUNED and max(t.intermediate_values) == 2
            else:
                assert t.state == TrialState.COMPLETE and max(t.intermediate_values) == 5

    def test_failing_trial_is_recorded_with_its_traceback_and_the_study_goes_on(self, backend, tmp_path: Path) -> None:
        result = run(backend(self.slots), tmp_path, objectives.fails_when_negative, n_trials=6)
        study = hpwf.load_study(result.run_dir)
        failed = [t for t in study.trials if t.state == TrialState.FAIL]
        assert failed and sum(t.state == TrialState.COMPLETE for t in study.trials) == 6
        for t in failed:
            text = (trial_folder(result.run_dir, t.number) / "traceback.txt").read_text()
            assert "ValueError: planted failure" in text and "Traceback" in text
            assert "planted failure" in t.user_attrs["fail_reason"]

    def test_non_finite_result_fails_the_trial(self, backend, tmp_path: Path) -> None:
        result = run(backend(self.slots), tmp_path, objectives.returns_nan, n_trials=3)
        study = hpwf.load_study(result.run_dir)
        assert study.trials[0].state == TrialState.FAIL and "non-finite" in study.trials[0].user_attrs["fail_reason"]
        assert states(result)["COMPLETE"] == 3

    def test_a_free_slot_gets_the_next_trial_without_waiting_for_the_others(self, backend, tmp_path: Path) -> None:
        result = run(backend(self.slots), tmp_path, objectives.first_trial_slow, n_trials=8)
        study = hpwf.load_study(result.run_dir)
        slow_end = study.trials[0].datetime_complete
        finished_before = [t for t in study.trials[1:] if t.datetime_complete < slow_end]
        assert len(finished_before) >= 5, [t.datetime_complete for t in study.trials]

    def test_killed_agent_fails_its_trial_and_the_run_reaches_its_budget(self, backend, tmp_path: Path) -> None:
        marker = tmp_path / "killed"
        result = run(backend(self.slots), tmp_path, functools.partial(objectives.dies_once, marker=str(marker)), n_trials=6)
        killed = int(marker.read_text())
        study = hpwf.load_study(result.run_dir)
        assert study.trials[killed].state == TrialState.FAIL
        assert "died mid-trial" in study.trials[killed].user_attrs["fail_reason"]
        failed = [t for t in study.trials if t.state == TrialState.FAIL]
        assert states(result)["COMPLETE"] == 6 and 1 <= len(failed) <= self.lost_with_a_rank
        assert all("died mid-trial" in t.user_attrs["fail_reason"] for t in failed)

    def test_agents_import_neither_optuna_nor_numpy_until_a_trial_needs_them(self, backend, tmp_path: Path) -> None:
        result = run(backend(self.slots), tmp_path, objectives.light_until_pruned, n_trials=6, sampler="random")
        trials = hpwf.load_study(result.run_dir).trials
        assert states(result) == {"COMPLETE": 3, "PRUNED": 3}
        first_on_each_agent = [t for t in trials if t.number < self.slots]  # later ones may follow a prune
        assert all(t.user_attrs["heavy"] == [] for t in first_on_each_agent), [t.user_attrs for t in trials]

    def test_objects_from_python_run_without_a_workflow_file(self, backend, tmp_path: Path) -> None:
        offset = 0.25

        def objective(trial: hpwf.Trial) -> float:  # a closure, as in a notebook
            return trial.suggest_float("x", 0, 1) + offset

        result = run(backend(self.slots), tmp_path, objective, n_trials=4)
        assert states(result) == {"COMPLETE": 4} and result.summary["best_value"] >= offset
