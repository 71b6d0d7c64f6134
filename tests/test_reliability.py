"""Reliability: silent and hanging workers, stale trials on every storage, retries, shared stores."""

from __future__ import annotations

import functools
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
from hpwf.backends.local import LocalBackend
from hpwf.rundir._run import open_storage
from tests import objectives

ROOT = Path(__file__).resolve().parents[1]
STORAGES = ["journal", "sqlite"]


def storage_url(kind: str, tmp_path: Path) -> str:
    return f"journal:{tmp_path / 'shared.journal'}" if kind == "journal" else f"sqlite:///{tmp_path / 'shared.db'}"


def run(tmp_path: Path, objective, name: str = "run", **search) -> hpwf.RunResult:  # type: ignore[no-untyped-def]
    search.setdefault("direction", "minimize")
    wf = hpwf.Workflow(objective=objective, search=hpwf.Search(**search))
    return hpwf.run(wf, backend=LocalBackend(workers=2), run_dir=tmp_path / name, progress=False)


@pytest.mark.parametrize("kind", STORAGES)
def test_stale_running_trial_of_a_vanished_run_is_failed_and_rerun(kind: str, tmp_path: Path) -> None:
    url = storage_url(kind, tmp_path)
    study = optuna.create_study(study_name="workflow", storage=open_storage(url, tmp_path))
    ghost = study.ask()  # a trial whose coordinator vanished without a word
    ghost.suggest_float("x", 0, 1)
    ghost.set_user_attr("hpwf:run", "another-run")
    ghost.set_user_attr("hpwf:heartbeat", time.time() - 600)
    alive = study.ask()  # one whose coordinator is still beating: left alone
    alive.suggest_float("x", 0, 1)
    alive.set_user_attr("hpwf:heartbeat", time.time() + 3600)
    result = run(tmp_path, objectives.no_op, n_trials=4, storage=url, heartbeat=1.0)
    trials = hpwf.load_study(result.run_dir).trials
    assert trials[ghost.number].state == TrialState.FAIL
    assert "no heartbeat" in trials[ghost.number].user_attrs["fail_reason"]
    rerun = [t for t in trials if t.user_attrs.get("hpwf:retry_of") == ghost.number]
    assert len(rerun) == 1 and rerun[0].params == trials[ghost.number].params
    assert rerun[0].state == TrialState.COMPLETE
    assert trials[alive.number].state == TrialState.RUNNING
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4


def test_a_silent_worker_is_detected_by_heartbeat(tmp_path: Path) -> None:
    marker = tmp_path / "frozen"
    result = run(tmp_path, functools.partial(objectives.freezes_once, marker=str(marker)), n_trials=5, heartbeat=0.5)
    frozen = int(marker.read_text())
    trials = hpwf.load_study(result.run_dir).trials
    assert trials[frozen].state == TrialState.FAIL and "no heartbeat" in trials[frozen].user_attrs["fail_reason"]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 5


def test_a_hanging_trial_fails_at_its_timeout_and_the_run_goes_on(tmp_path: Path) -> None:
    marker = tmp_path / "hung"
    start = time.time()
    result = run(tmp_path, functools.partial(objectives.hangs_once, marker=str(marker)), n_trials=5,
                 trial_timeout=3.0)
    hung = int(marker.read_text())
    trials = hpwf.load_study(result.run_dir).trials
    assert trials[hung].state == TrialState.FAIL and "trial_timeout" in trials[hung].user_attrs["fail_reason"]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 5
    assert time.time() - start < 120


def test_retry_policy_reruns_a_failed_trial_with_the_same_parameters(tmp_path: Path) -> None:
    result = run(tmp_path, objectives.fails_first_attempt, n_trials=3, retries=1)
    trials = hpwf.load_study(result.run_dir).trials
    assert trials[0].state == TrialState.FAIL and "transient failure" in trials[0].user_attrs["fail_reason"]
    retry = next(t for t in trials if t.user_attrs.get("hpwf:retry_of") == 0)
    assert retry.params == trials[0].params and retry.user_attrs["hpwf:attempt"] == 1
    assert retry.state in (TrialState.COMPLETE, TrialState.FAIL)  # its number differs, so it may pass


@pytest.mark.parametrize("kind", STORAGES)
def test_coordinator_killed_then_resumed(kind: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    url = storage_url(kind, tmp_path)
    env = {**os.environ, "TOY_SLEEP": "0.2"}
    cmd = [sys.executable, "-m", "hpwf", "run", "tests/workflows/toy.py", "--run-dir", str(run_dir),
           "--storage", url, "--n-trials", "20", "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.3)
        if (run_dir / "run.json").exists():
            info = hpwf.status(run_dir, url)  # a store outside the run directory: named by its owner
            if info["complete"] + info["pruned"] >= 4:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = {t.number: t.values for t in hpwf.load_study(run_dir).trials if t.state == TrialState.COMPLETE}
    done = subprocess.run([sys.executable, "-m", "hpwf", "resume", str(run_dir), "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    trials = hpwf.load_study(run_dir).trials
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 20
    assert {n: trials[n].values for n in kept} == kept
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_eight_processes_share_one_journal_store(tmp_path: Path) -> None:
    url = f"journal:{tmp_path / 'shared.journal'}"
    workflow = tmp_path / "shared.py"
    workflow.write_text("import hpwf\nsearch = hpwf.Search(direction='minimize', n_trials=200, sampler='random', "
                        "name='shared')\ndef objective(trial):\n    return trial.suggest_float('x', 0, 1)\n")
    procs = [subprocess.Popen([sys.executable, "-m", "hpwf", "run", str(workflow), "--run-dir", str(tmp_path / f"r{i}"),
                               "--storage", url, "--workers", "1", "--quiet"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(8)]
    for p in procs:
        assert p.wait(timeout=900) == 0, p.stderr.read()[-2000:] if p.stderr else ""
    study = optuna.load_study(study_name="shared", storage=open_storage(url, tmp_path))
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) == 1600
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 1600
    for i in range(8):  # each run finished exactly its own budget
        assert json.loads((tmp_path / f"r{i}" / "summary.json").read_text())["complete"] == 200


def test_unwritable_run_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # root ignores permissions, not this
    proc = subprocess.run([sys.executable, "-m", "hpwf", "run", "tests/workflows/toy.py", "--run-dir",
                           str(blocker / "run")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "cannot create" in proc.stderr
    assert blocker.read_text() == "not a folder"


def _small_disk() -> None:
    """In the child: files may not grow past 48 kB, so the journal's writes start failing mid-run
    (EFBIG, as ENOSPC would on a full disk: a write fails part-way), with no privileges needed."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (48_000, 48_000))


def test_a_full_disk_stops_the_run_clearly_and_resume_finishes_it(tmp_path: Path) -> None:
    run_dir, journal = tmp_path / "run", tmp_path / "run" / "study.journal"
    command = [sys.executable, "-m", "hpwf", "run", "tests/workflows/toy.py", "--n-trials", "200",
               "--workers", "2", "--run-dir", str(run_dir), "--quiet"]
    full = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          preexec_fn=_small_disk, env={**os.environ, "TOY_SLEEP": "0"})
    assert full.returncode == 1, full.stderr[-2000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("hpwf: run stopped: cannot write") and "hpwf resume" in last, last
    assert "File too large" in last and str(run_dir) in last
    assert journal.stat().st_size <= 48_000 and not journal.read_bytes().endswith(b"\n")  # a torn record
    status = subprocess.run([sys.executable, "-m", "hpwf", "status", str(run_dir)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr  # it reads past the torn record, and never writes:
    assert not journal.read_bytes().endswith(b"\n")  # the next writer cuts it, under the journal's lock
    before = {t.number: t.value for t in hpwf.load_study(run_dir).trials if t.state == TrialState.COMPLETE}
    assert journal.read_bytes().endswith(b"\n")
    assert 0 < len(before) < 200

    resumed = subprocess.run([sys.executable, "-m", "hpwf", "resume", str(run_dir), "--quiet"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300, env={**os.environ, "TOY_SLEEP": "0"})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for line in journal.read_text().splitlines():  # no broken record anywhere in the store
        json.loads(line)
    trials = hpwf.load_study(run_dir).trials
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 200
    assert not any(t.state == TrialState.RUNNING for t in trials)
    assert all(trials[n].value == value for n, value in before.items())
