"""Dask cluster backends: a real `dask scheduler` + `dask worker` cluster, and dask-mpi under mpirun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

import hpwf
from hpwf.backends.dask import DaskBackend
from tests.conformance import BackendConformance

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and two single-threaded workers started with Dask's own command line."""
    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    deadline = time.time() + 60
    while not scheduler_file.exists() and time.time() < deadline:
        time.sleep(0.2)
    address = json.loads(scheduler_file.read_text())["address"]
    procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nworkers", "2", "--nthreads", "1",
                                   "--no-dashboard", "--host", "127.0.0.1"],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=60)
    yield address
    for proc in procs[::-1]:
        proc.terminate()
        proc.wait(timeout=30)


class TestDaskBackend(BackendConformance):
    @pytest.fixture
    def backend(self, dask_cluster: str):
        return lambda slots: DaskBackend(scheduler=dask_cluster)


def run_on(scheduler: str, workflow: str, run_dir: Path) -> None:
    """``hpwf run WORKFLOW --backend dask --scheduler ADDRESS`` through the CLI; it must succeed."""
    proc = subprocess.run(
        [sys.executable, "-m", "hpwf", "run", workflow, "--backend", "dask", "--scheduler", scheduler,
         "--run-dir", str(run_dir), "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_cli_runs_on_a_dask_scheduler(dask_cluster: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_on(dask_cluster, "tests/workflows/toy.py", run_dir)
    info = hpwf.status(run_dir)
    assert info["complete"] + info["pruned"] == 12 and json.loads((run_dir / "summary.json").read_text())["slots"] == 2


def test_unreachable_scheduler_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hpwf", "run", "tests/workflows/toy.py", "--backend", "dask", "--scheduler",
         "tcp://127.0.0.1:9", "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"},
    )
    assert proc.returncode == 2 and "cannot reach the Dask scheduler" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.mpi
def test_dask_mpi_backend_under_mpirun(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [str(BIN / "mpirun"), "-np", "4", sys.executable, "-m", "hpwf", "run", "tests/workflows/toy.py",
         "--backend", "dask-mpi", "--run-dir", str(run_dir), "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "HPWF_DASK_INTERFACE": "lo"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] + summary["pruned"] == 12 and summary["slots"] == 2  # ranks 2 and 3
    assert summary["agents_seen"] == 2


@pytest.mark.slow
def test_a_two_rank_trial_longer_than_three_heartbeats_completes_on_dask(dask_cluster: str, tmp_path: Path) -> None:
    """The engine issue's reproduction 1 on a Dask cluster: the reserved rank beats while it waits."""
    run_dir = tmp_path / "run"
    run_on(dask_cluster, "tests/workflows/long_group.py", run_dir)
    trials = hpwf.load_study(run_dir).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] and trials[0].value == 4.5


def test_agents_on_a_dask_cluster_share_their_host(dask_cluster: str, tmp_path: Path) -> None:
    """Dask's nanny sets one thread per worker process (its ``pre-spawn-environ``): the agents keep
    the administrator's word, torch included, whatever the host's cores."""
    run_dir = tmp_path / "run"
    run_on(dask_cluster, "tests/workflows/threads_check.py", run_dir)
    seen = [json.loads(p.read_text()) for p in sorted(run_dir.glob("trials/*/*/threads.rank0.json"))]
    count = 1
    assert seen == [{"OMP_NUM_THREADS": str(count), "MKL_NUM_THREADS": str(count),
                     "OPENBLAS_NUM_THREADS": str(count), "torch": count}] * 2, seen
