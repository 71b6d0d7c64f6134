"""Bootstrap ensembles end to end on real backends, and their UQ metrics on held-out data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState

import hpwf
from hpwf.rundir._trialdir import trial_folder

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / "tests" / "workflows" / "toy_ensemble.py")


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpwf", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, **(env or {})})


def members_study(run_dir: Path):  # type: ignore[no-untyped-def]
    return hpwf.load_study(run_dir / "ensemble")


@pytest.mark.slow
def test_uq_regression_search_then_ensemble_is_calibrated(tmp_path: Path) -> None:
    run_dir = tmp_path / "uq"
    proc = cli("run", "workflows/uq_regression.py", "--run-dir", str(run_dir), "--workers", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "uq_metrics.json").read_text())
    models = {"ensemble", "best_member", "best_trial", "mc_dropout"}
    assert set(metrics) == models | {f"{m}+conformal" for m in models} | {"selection", "conditional"}
    ens, cal = metrics["ensemble"], metrics["ensemble+conformal"]
    assert 0.85 <= ens["picp_90"] <= 0.96, ens
    assert 0.87 <= cal["picp_90"] <= 0.93, cal  # 1,000 test points, 400 calibration points
    assert {"picp_68", "picp_95", "crps", "rmse", "miscalibration_area", "mace", "ece", "width_90"} <= set(ens)
    # Eight members, from the configurations greedy selection chose, on different bootstrap resamples.
    study, search = members_study(run_dir), hpwf.load_study(run_dir)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["member"] for t in done) == list(range(8))
    chosen = {int(k) for k in metrics["selection"]["weights"]}
    assert all(t.user_attrs["config"] == search.trials[t.user_attrs["source_trial"]].params for t in done)
    assert {t.user_attrs["source_trial"] for t in done} <= chosen
    bags = [np.load(trial_folder(run_dir / "ensemble", t.number) / "bootstrap.npz")["in_bag"] for t in done]
    assert all(not np.array_equal(bags[0], b) for b in bags[1:])
    proc = cli("report", str(run_dir))
    page = (run_dir / "report.html").read_text()
    assert proc.returncode == 0 and "Uncertainty quantification" in page and "before and after conformal" in page
    assert "Predictive band" in page and page.count("plotly.js v") == 1


def test_bootstrap_is_reproducible_from_the_seed(tmp_path: Path) -> None:
    from hpwf.workflow import Member
    from hpwf.workflow._trial import Trial

    def member(index: int, seed: int) -> Member:
        trial = Trial(0, {}, {}, seed=0, folder=tmp_path, request=lambda m: None)
        trial.user_attrs.update(member=index, member_seed=seed, config={})
        return Member(trial)

    a, b, c = member(0, 7).bootstrap(100), member(0, 7).bootstrap(100), member(1, 8).bootstrap(100)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], c[0])
    assert set(a[1]) == set(range(100)) - set(a[0])  # out-of-bag = never drawn


def test_resume_never_retrains_a_finished_member(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {"MEMBER_SLEEP": "0.8", "MEMBERS": "6"}
    proc = subprocess.Popen([sys.executable, "-m", "hpwf", "run", TOY, "--run-dir", str(run_dir), "--workers", "2",
                             "--quiet"], cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.3)
        if (run_dir / "ensemble" / "run.json").exists() and members_study(run_dir).get_trials(
                deepcopy=False, states=(TrialState.COMPLETE,)):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number: t.user_attrs["member"] for t in members_study(run_dir).trials if t.state == TrialState.COMPLETE}
    assert 1 <= len(before) < 6
    done = cli("resume", str(run_dir), "--quiet", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    after = [t for t in members_study(run_dir).trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["member"] for t in after) == list(range(6))  # each member exactly once
    assert {t.number: t.user_attrs["member"] for t in after if t.number in before} == before
    again = cli("resume", str(run_dir), "--quiet", env=env)
    assert again.returncode == 0 and len(members_study(run_dir).trials) == len(members_study(run_dir).trials)
    assert sum(t.state == TrialState.COMPLETE for t in members_study(run_dir).trials) == 6
    assert json.loads((run_dir / "uq_metrics.json").read_text())["ensemble"]["members"] == 6


def test_a_failed_member_runs_again_with_the_same_attributes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = cli("run", TOY, "--run-dir", str(run_dir), "--workers", "2", "--quiet",
               env={"MEMBER_FAIL_ONCE": str(tmp_path / "failed"), "MEMBERS": "4"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = members_study(run_dir).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs["member"] == 1
    retry = [t for t in trials if t.user_attrs.get("hpwf:retry_of") == failed[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].user_attrs["member_seed"] == failed[0].user_attrs["member_seed"]
    assert hpwf.status(run_dir)["complete"] == 4


def test_ensemble_command_builds_members_from_an_existing_search(tmp_path: Path) -> None:
    run_dir = tmp_path / "search"
    workflow = tmp_path / "wf.py"
    workflow.write_text(
        "import hpwf, numpy as np\n"
        "search = hpwf.Search(direction='minimize', n_trials=6, sampler='random', seed=0)\n"
        "def objective(trial):\n"
        "    return (trial.suggest_float('x', -2, 2) - 1) ** 2\n"
        "def train(member):\n"
        "    y = np.linspace(0, 1, 20)\n"
        "    member.save_predictions(y=y, mean=y + member.params['x'] - 1, var=np.full(20, 0.1))\n"
        "    return abs(member.params['x'] - 1)\n"
        "ensemble = hpwf.Ensemble(members=2, train=train, params={'x': 1.0})\n"
    )
    search_only = tmp_path / "search_only.py"
    search_only.write_text(workflow.read_text().replace("ensemble = ", "unused = "))
    assert cli("run", str(search_only), "--run-dir", str(run_dir), "--workers", "2", "--quiet").returncode == 0
    proc = cli("ensemble", str(workflow), "--from", str(run_dir), "--top-k", "2", "--members", "4", "--workers", "2",
               "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    search = hpwf.load_study(run_dir)
    top2 = [t.params for t in sorted(search.trials, key=lambda t: t.value)[:2]]
    members = sorted(members_study(run_dir).trials, key=lambda t: t.user_attrs["member"])
    assert [m.user_attrs["config"] for m in members] == [top2[0], top2[1], top2[0], top2[1]]
    assert json.loads((run_dir / "uq_metrics.json").read_text())["ensemble"]["members"] == 4


@pytest.mark.mpi
def test_nt3_search_and_classification_ensemble_under_mpirun(tmp_path: Path) -> None:
    run_dir = tmp_path / "nt3"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "mpirun"), "-np", "5", sys.executable, "-m", "hpwf", "run",
         "workflows/nt3_cnn.py", "--backend", "mpi", "--n-trials", "4", "--run-dir", str(run_dir), "--quiet"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "uq_metrics.json").read_text())
    for key in ("accuracy", "nll", "brier", "ece", "entropy", "mutual_information"):
        assert key in metrics["ensemble"]
    assert metrics["ensemble"]["members"] == 4 and metrics["ensemble"]["mutual_information"] > 0
