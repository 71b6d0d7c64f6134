"""End-to-end runs through the real CLI on the embedded default (a real LocalCluster)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import hpwf

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "workflows" / "toy.py"


def hpwf_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpwf", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=ROOT,
    )


def status(run_dir: Path, storage: str | None = None) -> dict:  # type: ignore[type-arg]
    proc = hpwf_cli("status", str(run_dir), "--json", *(["--storage", storage] if storage else []))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path: Path) -> None:
    run_dir = tmp_path / "qs"
    proc = hpwf_cli("run", "workflows/quickstart.py", "--run-dir", str(run_dir), "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    info = status(run_dir)
    assert {"complete", "pruned", "fail", "running", "best_value", "best_params"} <= set(info)
    assert info["complete"] + info["pruned"] == 16 and info["fail"] == 0 and info["running"] == 0
    assert info["pruned"] > 0, "ASHA must have stopped some trials early"
    assert info["best_value"] > 0.9, "a tuned MLP classifies digits well"
    assert set(info["best_params"]) == {"lr", "hidden", "layers", "dropout", "optimizer"}
    # Plain Optuna reads the study in place (so optuna-dashboard can too).
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(
        study_name="quickstart",
        storage=optuna.storages.JournalStorage(JournalFileBackend(str(run_dir / "study.journal"))),
    )
    assert study.best_value == info["best_value"]
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert all(len(t.intermediate_values) < 15 for t in pruned)
    proc = hpwf_cli("report", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "report.html").stat().st_size > 10_000
    assert len((run_dir / "trials.csv").read_text().splitlines()) == 1 + len(study.trials)


def test_resume_after_the_coordinator_is_killed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "TOY_SLEEP": "0.25", "TOY_EPOCHS": "4"}
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "hpwf", "run", str(TOY), "--run-dir", str(run_dir), "--n-trials", "24",
         "--workers", "2", "--quiet"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.5)
        if (run_dir / "run.json").exists():
            info = hpwf.status(run_dir)
            if info["complete"] + info["pruned"] >= 5 and info["running"] >= 1:
                break
    else:
        coordinator.kill()
        pytest.fail("the run never got going")
    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait()
    before = {t.number: (t.state, t.values, t.params) for t in hpwf.load_study(run_dir).trials}
    interrupted = [n for n, (s, _, _) in before.items() if s == TrialState.RUNNING]
    assert interrupted

    proc = hpwf_cli("resume", str(run_dir), env=env)
    assert proc.returncode == 0, proc.stderr
    study = hpwf.load_study(run_dir)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 24, "the budget is reached exactly"
    for number, (state, values, params) in before.items():
        if state in (TrialState.COMPLETE, TrialState.PRUNED):  # kept as they were
            t = study.trials[number]
            assert (t.state, t.values, t.params) == (state, values, params)
    for number in interrupted:
        assert study.trials[number].state == TrialState.FAIL
        assert "interrupted" in study.trials[number].user_attrs["fail_reason"]
        retries = [t for t in study.trials if t.user_attrs.get("hpwf:retry_of") == number]
        assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert status(run_dir)["running"] == 0


def test_run_into_an_existing_run_dir_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert hpwf_cli("run", str(TOY), "--run-dir", str(run_dir), "--n-trials", "2", "--quiet").returncode == 0
    journal = (run_dir / "study.journal").read_bytes()
    proc = hpwf_cli("run", str(TOY), "--run-dir", str(run_dir), "--n-trials", "2")
    assert proc.returncode == 2 and "hpwf resume" in proc.stderr
    assert (run_dir / "study.journal").read_bytes() == journal


def test_time_budget_stops_handing_out_trials(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = hpwf_cli("run", str(TOY), "--run-dir", str(run_dir), "--n-trials", "1000", "--timeout", "4",
                    "--workers", "2", "--quiet", env={"TOY_SLEEP": "0.2"})
    assert proc.returncode == 0, proc.stderr
    info = status(run_dir)
    assert 2 <= info["complete"] + info["pruned"] < 1000 and info["running"] == 0
    assert info["stop_reason"] == "time budget reached"


def test_sqlite_storage_and_multi_objective(tmp_path: Path) -> None:
    workflow = tmp_path / "two_goals.py"
    workflow.write_text(
        "import hpwf\n"
        "search = hpwf.Search(directions=['minimize', 'minimize'], n_trials=8, sampler='nsga2', seed=0)\n"
        "def objective(trial):\n"
        "    x = trial.suggest_float('x', 0, 1)\n"
        "    return x, 1 - x\n"
    )
    db = tmp_path / "s.db"
    run_dir = tmp_path / "run"
    proc = hpwf_cli("run", str(workflow), "--run-dir", str(run_dir), "--storage", f"sqlite:///{db}", "--quiet")
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="two_goals", storage=f"sqlite:///{db}")
    assert len(study.trials) == 8 and len(study.best_trials) == 8  # all on the Pareto front
    assert len(status(run_dir, storage=f"sqlite:///{db}")["best_trials"]) == 8  # a store outside: named


def test_workflow_as_python_objects_from_examples(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "python_api.py"), str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "complete: 6" in proc.stdout
