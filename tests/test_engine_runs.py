"""The engine issue's reproductions, end to end with real processes (each failed on the old engine)."""

from __future__ import annotations

import concurrent.futures
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
from tests import objectives
from hpwf.rundir._trialdir import durable_results, trial_folder, trial_folders

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "tests" / "workflows"


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpwf", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


@pytest.mark.slow
def test_a_two_rank_trial_longer_than_three_heartbeats_completes_on_the_local_backend(tmp_path: Path) -> None:
    """Reproduction 1: the reserved rank of a launched group was declared silent, then the run hung."""
    run_dir = tmp_path / "run"
    proc = cli("run", str(WORKFLOWS / "long_group.py"), "--workers", "2", "--run-dir", str(run_dir), timeout=240)
    assert proc.returncode == 0, proc.stderr
    study = hpwf.load_study(run_dir)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE], proc.stderr
    assert "no heartbeat" not in proc.stderr
    assert study.trials[0].value == 4.5  # the average over both ranks of the last epoch


def test_hpwf_ensemble_is_the_function_that_all_names() -> None:
    """Reproduction 2: the submodule shadowed the function."""
    assert callable(hpwf.ensemble) and hpwf.ensemble.__module__ == "hpwf.api"
    assert "ensemble" in hpwf.__all__


def _start(run_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hpwf", "run", str(WORKFLOWS / "stopped_search.py"), "--workers", "2",
         "--run-dir", str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


def _wait_for_trials(run_dir: Path, count: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while len(list(durable_results(run_dir))) < count:
        assert time.time() < deadline, "the search did not get going"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM to the run", "SIGINT to the process group"])
def test_a_stopped_search_starts_no_ensemble_member_and_exits_130(how: str, tmp_path: Path) -> None:
    """Reproduction 4: the ensemble was trained after SIGTERM; Ctrl-C ended in a KeyError traceback."""
    run_dir = tmp_path / "run"
    proc = _start(run_dir)
    try:
        _wait_for_trials(run_dir, 2)
        if how.startswith("SIGTERM"):
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    hpwf_frames = [line for line in err.splitlines() if f'File "{ROOT / "hpwf"}' in line]
    assert not hpwf_frames and "KeyError" not in err and "interrupted by SIG" in err  # (Dask may log its own)
    assert not [p for p in trial_folders(run_dir / "ensemble") if (p / "predictions.npz").exists()]
    assert not (run_dir / "ensemble" / "run.json").exists()
    study = hpwf.load_study(run_dir)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert [t for t in study.trials if t.state == TrialState.WAITING]  # queued to run again on resume


@pytest.mark.slow
def test_a_multi_objective_arity_mistake_is_a_failure_with_its_reason(tmp_path: Path) -> None:
    """Reproduction 5: '2 complete, 0 failed', exit 0, while the study said FAIL with no reason."""
    run_dir = tmp_path / "run"
    proc = cli("run", str(WORKFLOWS / "wrong_arity.py"), "--workers", "2", "--run-dir", str(run_dir))
    assert proc.returncode == 1 and "0/2" in proc.stderr and "more than 10 trials failed" in proc.stderr
    info = json.loads(cli("status", str(run_dir), "--json").stdout)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert info["complete"] == summary["complete"] == 0 and info["fail"] == summary["fail"] >= 11
    ran = [t for t in hpwf.load_study(run_dir).trials if not t.user_attrs["fail_reason"].startswith("not started")]
    assert len(ran) >= 11  # (trials asked ahead and never started are failed and queued again)
    for t in ran:
        assert "returned 1 value(s); the study has 2 directions" in t.user_attrs["fail_reason"]
        assert "Traceback" in (trial_folder(run_dir, t.number) / "traceback.txt").read_text()


def test_hpwf_run_works_off_the_main_thread_and_restores_optuna_logging(tmp_path: Path) -> None:
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.DEBUG)
    try:
        wf = hpwf.Workflow(objective=objectives.no_op, search=hpwf.Search(direction="minimize", n_trials=3))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # a notebook's executor
            result = pool.submit(hpwf.run, wf, backend=LocalBackend(workers=1), run_dir=tmp_path / "r",
                                 progress=False).result(timeout=240)
        assert result.summary["complete"] == 3
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)


@pytest.mark.slow
def test_aborted_trials_do_not_use_up_dask_workers(tmp_path: Path) -> None:
    """Each timeout used to kill a Dask worker; past allowed-failures (3) the slots drained away."""
    marker = tmp_path / "hangs"
    wf = hpwf.Workflow(objective=functools.partial(objectives.hangs_n_times, marker=str(marker), n=5),
                       search=hpwf.Search(direction="minimize", n_trials=4, trial_timeout=2.0, max_failures=10))
    result = hpwf.run(wf, backend=LocalBackend(workers=2), run_dir=tmp_path / "run", progress=False)
    trials = hpwf.load_study(result.run_dir).trials
    timed_out = [t for t in trials if "trial_timeout" in t.user_attrs.get("fail_reason", "")]
    assert len(timed_out) == 5 and result.summary["complete"] == 4
