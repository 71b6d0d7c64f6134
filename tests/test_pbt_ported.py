"""PBT as a Ray Tune user expects it (issue 22): starting values apart from the explore ranges,
``generations=`` that stops each member's last segment, a run that ends early says why, and
status's best is a final segment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

import hpwf
from hpwf.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

WALK = """
import hpwf
search = hpwf.Search(direction="minimize", sampler="random", scheduler="pbt", population=4, interval=2, seed=0,
                     {budget}, scheduler_options={{"initial": {{"lr": [0.1, 0.2, 0.3, 0.4],
                                                                "m": lambda rng: rng.uniform(0.5, 0.6)}}}})

def objective(trial):
    lr = trial.suggest_float("lr", 0.01, 1.0, log=True)
    m = trial.suggest_float("m", 0.0, 1.0)
    restored = trial.restore()
    w, start = (0.0, 0) if restored is None else (restored.state["w"], restored.step)
    value = float("nan")
    for step in range(start, {steps}):  # {steps} steps: more than the run trains, or fewer
        w += lr * (3.0 - w)
        value = (w - 3.0) ** 2 + m / 10 + (100.0 if step >= 2 else 0.0)  # later steps look worse, on purpose
        trial.report(value, step)
        if trial.should_pause():
            trial.pause({{"w": w}})
    return value
"""


def _run(tmp_path: Path, budget: str, steps: int) -> tuple[Path, subprocess.CompletedProcess[str]]:
    workflow = tmp_path / "walk.py"
    workflow.write_text(WALK.format(budget=budget, steps=steps))
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "hpwf", "run", str(workflow), "--workers", "2", "--run-dir",
                           str(run_dir), "--quiet"], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


def test_generations_stop_the_last_segment_and_initial_values_start_the_members(tmp_path: Path) -> None:
    run_dir, proc = _run(tmp_path, "generations=2", steps=1000)  # the objective alone would train 1000 steps
    trials = hpwf.load_study(run_dir).trials
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)  # population x generations
    first = sorted((t for t in trials if t.user_attrs["pbt:generation"] == 0), key=lambda t: t.user_attrs["pbt:member"])
    assert [t.params["lr"] for t in first] == [0.1, 0.2, 0.3, 0.4]  # each member's start, not a sampled value
    assert all(0.5 <= t.params["m"] <= 0.6 for t in first) and len({t.params["m"] for t in first}) == 4  # drawn
    last = [t for t in trials if t.user_attrs["pbt:generation"] == 1]
    assert [max(t.intermediate_values) for t in last] == [3] * 4  # stopped at generations x interval = 4
    # status: the best is the best *final* segment (gen-0 segments report better values here, on purpose)
    status = hpwf.status(run_dir)
    best_last = min(last, key=lambda t: t.value)
    assert status["best_trial"] == best_last.number and status["best_is"] == "the best final PBT segment"
    assert min(trials, key=lambda t: t.value).user_attrs["pbt:generation"] == 0  # what "best" named before
    text = subprocess.run([sys.executable, "-m", "hpwf", "status", str(run_dir)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120).stdout
    assert f"(trial {best_last.number}, the best final PBT segment)" in text, text
    assert f"(trial {best_last.number}, the best final PBT segment)" in proc.stderr  # the run's last line too


def test_a_run_whose_members_all_ended_early_says_why(tmp_path: Path) -> None:
    run_dir, proc = _run(tmp_path, "n_trials=12", steps=3)  # 3 generations planned; the objective stops at step 3
    trials = hpwf.load_study(run_dir).trials
    assert len(trials) == 8  # generation 1 returned at step 3 (< 4): no member has a generation 2
    reason = hpwf.status(run_dir)["stop_reason"]
    assert reason and reason.startswith("PBT: no member has a next segment (8 of 12 segments finished)"), reason
    assert "[hpwf] stopped: PBT: no member has a next segment" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("options, why", [
    (dict(generations=0), "generations must be >= 1"),
    (dict(scheduler="none", population=None, interval=None, generations=2), "need a scheduler"),
    (dict(scheduler_options={"initial": {"lr": []}}), "scheduler_options initial must map"),
])
def test_bad_pbt_options_name_the_key(options: dict, why: str) -> None:  # type: ignore[type-arg]
    base = dict(direction="minimize", scheduler="pbt", population=2, interval=1, n_trials=4)
    with pytest.raises(ConfigError, match=why):
        hpwf.Search(**{**base, **options})
