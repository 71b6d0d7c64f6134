"""Trials that pause and resume, end to end: successive halving with resumption and PBT on the local,
MPI and Dask backends, groups of 1 and 2 ranks (Horovod), and a coordinator killed while trials are
paused. The workflow is tests/workflows/resume_check.py (a tiny linear model, a few epochs)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

import hpwf
from tests.resume_checks import check_never_trained_twice, check_pbt, check_sha_resumes, events
from tests.test_backend_dask import dask_cluster  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOW = "tests/workflows/resume_check.py"
SHA_TRIALS, POPULATION, GENERATIONS = 4, 2, 3
CASES = [("asha-resume", 1), ("asha-resume", 2), ("pbt", 1), ("pbt", 2)]


def env_for(scheduler: str, ranks: int, **extra: str) -> dict[str, str]:
    trials = POPULATION * GENERATIONS if scheduler == "pbt" else SHA_TRIALS
    return {**os.environ, "RC_SCHED": scheduler, "RC_RANKS": str(ranks), "RC_TRIALS": str(trials),
            "RC_POPULATION": str(POPULATION), "RC_INTERVAL": "2", "RC_EPOCHS": "6", "RC_BAD_LR": "0.04", **extra}


def hpwf_cli(*args: str, env: dict[str, str], prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "hpwf", *args], capture_output=True, text=True,
                          timeout=400, cwd=ROOT, env=env)


def check(run_dir: Path, scheduler: str, ranks: int) -> None:
    if scheduler == "pbt":
        assert check_pbt(run_dir, ranks, POPULATION, POPULATION * GENERATIONS) >= 1, "the bad member never exploited"
    else:
        check_sha_resumes(run_dir, ranks, SHA_TRIALS)


@pytest.mark.parametrize("scheduler, ranks", CASES)
def test_schedulers_on_the_local_backend(scheduler: str, ranks: int, tmp_path: Path) -> None:
    """workers == ranks: one group at a time, so a paused trial's ranks can only have served others."""
    run_dir = tmp_path / "run"
    proc = hpwf_cli("run", WORKFLOW, "--workers", str(ranks), "--run-dir", str(run_dir), "--quiet",
                    env=env_for(scheduler, ranks))
    assert proc.returncode == 0, proc.stderr[-3000:]
    check(run_dir, scheduler, ranks)
    if scheduler == "pbt" and ranks == 1:  # the report draws the lineage
        report = hpwf_cli("report", str(run_dir), env=env_for(scheduler, ranks))
        assert report.returncode == 0, report.stderr[-2000:]
        page = (run_dir / "report.html").read_text()
        assert "PBT lineage" in page and "Best final configuration as a schedule" in page


def test_hyperband_brackets_resume_on_the_local_backend(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = hpwf_cli("run", WORKFLOW, "--workers", "1", "--run-dir", str(run_dir), "--quiet",
                    env=env_for("hyperband-resume", 1, RC_TRIALS="6"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = hpwf.load_study(run_dir)
    assert {t.user_attrs["hpwf:bracket"] for t in study.trials} == {0, 1, 2}  # 6 epochs, eta 2: rungs 1, 2, 4
    check_never_trained_twice(run_dir, 1)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials) == 6


@pytest.mark.mpi
@pytest.mark.parametrize("scheduler, ranks", CASES)
def test_schedulers_under_mpirun(scheduler: str, ranks: int, tmp_path: Path) -> None:
    """mpirun -np 1+ranks: rank 0 coordinates, the others form one group (MPI sub-communicators)."""
    run_dir = tmp_path / "run"
    proc = hpwf_cli("run", WORKFLOW, "--backend", "mpi", "--run-dir", str(run_dir), "--quiet",
                    env=env_for(scheduler, ranks), prefix=(str(BIN / "mpirun"), "-np", str(1 + ranks)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    check(run_dir, scheduler, ranks)


@pytest.mark.parametrize("scheduler, ranks", CASES)
def test_schedulers_on_a_dask_cluster(scheduler: str, ranks: int, dask_cluster: str, tmp_path: Path) -> None:  # noqa: F811
    run_dir = tmp_path / "run"
    env = env_for(scheduler, ranks, PYTHONPATH=str(ROOT))
    proc = hpwf_cli("run", WORKFLOW, "--backend", "dask", "--scheduler", dask_cluster, "--run-dir", str(run_dir),
                    "--quiet", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if scheduler == "pbt":
        check(run_dir, scheduler, ranks)
    else:  # two workers: with 1-rank trials two run at once, so "reused" is not implied; the rest holds
        check_never_trained_twice(run_dir, ranks)
        study = hpwf.load_study(run_dir)
        assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials) == SHA_TRIALS
        assert any(e["event"] == "restore" for rows in events(run_dir).values() for e in rows)


def check_paused_counted_apart(run_dir: Path, env: dict[str, str]) -> None:
    """``hpwf report`` and ``hpwf status`` (text and --json) count paused trials as paused, not running."""
    trials = hpwf.load_study(run_dir).trials
    paused = sum(t.state == TrialState.RUNNING and t.user_attrs.get("hpwf:paused") not in (None, False) for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials) - paused
    report = hpwf_cli("report", str(run_dir), env=env)
    assert report.returncode == 0, report.stderr[-2000:]
    header = re.search(r"<th>trials</th><td>(\d+) \(([^)]*)\)</td>", (run_dir / "report.html").read_text())
    assert header, "no trials row in the report's header"
    counts = {name: int(n) for n, name in (part.split(" ") for part in header.group(2).split(", "))}
    assert (counts["paused"], counts["running"]) == (paused, running), counts
    assert sum(counts.values()) == int(header.group(1)) == len(trials)
    status = hpwf_cli("status", "--json", str(run_dir), env=env)
    assert status.returncode == 0, status.stderr[-2000:]
    info = json.loads(status.stdout)
    assert (info["paused"], info["running"]) == (paused, running)
    text = hpwf_cli("status", str(run_dir), env=env).stdout
    assert f"{running} running, {paused} paused" in text


def test_a_killed_coordinator_leaves_paused_trials_that_resume_from_their_checkpoints(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = env_for("asha-resume", 1, RC_TRIALS="6", RC_SLEEP="0.4")
    proc = subprocess.Popen([sys.executable, "-m", "hpwf", "run", WORKFLOW, "--workers", "1", "--run-dir",
                             str(run_dir), "--quiet"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, paused = time.time() + 240, 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if (run_dir / "run.json").exists() and (run_dir / "study.journal").exists():
            info = hpwf.status(run_dir)
            paused = info["paused"]
            if paused >= 2:
                break
    assert paused >= 2, "no two trials paused before the run ended"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number for t in hpwf.load_study(run_dir).trials
              if t.state == TrialState.RUNNING and t.user_attrs.get("hpwf:paused")}
    assert len(before) >= 2
    check_paused_counted_apart(run_dir, env)
    done = hpwf_cli("resume", str(run_dir), "--quiet", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    study = hpwf.load_study(run_dir)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials) == 6  # the budget, exactly
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    check_never_trained_twice(run_dir, 1)
    lead = events(run_dir)
    for number in before:  # paused when the coordinator died: never trained again from scratch
        assert sum(e["event"] == "fresh" for e in lead[number]) == 1
        assert study.trials[number].state in (TrialState.COMPLETE, TrialState.PRUNED)
    resumed = [n for n in before if any(e["event"] == "restore" for e in lead[n])]
    assert resumed or all(study.trials[n].state == TrialState.PRUNED for n in before)
