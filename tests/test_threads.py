"""Agents share the host's cores: `cores / agents` threads per rank by default, the user's
explicit variables kept, ``threads_per_trial`` over both (`hpwf.worker._threads`).

Real agents: the local backend's agent processes, ranks of ``mpirun`` (the mpi and mpirun
backends) and ranks launched for a 2-rank group. The workflow imports torch at its top.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hpwf
from hpwf.worker._threads import AGENTS_ENV, THREAD_VARS, apply_threads, default_threads, usable_cores

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "tests" / "workflows" / "threads_check.py"
MPIRUN = str(Path(sys.executable).parent / "mpirun")
CORES = usable_cores()


@pytest.fixture(autouse=True)
def _no_thread_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (*THREAD_VARS, "THREADS_OPTION", "THREADS_RANKS", "THREADS_TRIALS", AGENTS_ENV):
        monkeypatch.delenv(var, raising=False)


def seen(run_dir: Path) -> list[dict]:  # type: ignore[type-arg]
    files = sorted(run_dir.glob("trials/*/*/threads.rank*.json"))
    assert files, f"no trial wrote its thread counts under {run_dir}"
    return [json.loads(p.read_text()) for p in files]


def expect(count: int, **over: object) -> dict:  # type: ignore[type-arg]
    return {**{var: str(count) for var in THREAD_VARS}, "torch": count, **over}


def test_local_agents_share_the_cores(tmp_path: Path) -> None:
    hpwf.run(WORKFLOW, workers=2, run_dir=tmp_path / "run", progress=False)
    assert seen(tmp_path / "run") == [expect(max(1, CORES // 2))] * 2


def test_threads_per_trial_overrides_the_default_and_the_environment(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    monkeypatch.setenv("THREADS_OPTION", "3")
    hpwf.run(WORKFLOW, workers=1, run_dir=tmp_path / "run", progress=False)
    assert seen(tmp_path / "run") == [expect(3)] * 2


def test_variables_the_user_set_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    hpwf.run(WORKFLOW, workers=2, run_dir=tmp_path / "run", progress=False)
    assert seen(tmp_path / "run") == [expect(max(1, CORES // 2), OMP_NUM_THREADS="3", torch=3)] * 2


@pytest.mark.mpi
def test_ranks_under_mpirun_share_the_cores(tmp_path: Path) -> None:
    """--backend mpi (3 ranks on this host: rank 0 coordinates) and --backend mpirun (2 agent ranks)."""
    env = {**os.environ, "THREADS_TRIALS": "4"}
    proc = subprocess.run([MPIRUN, "-np", "3", sys.executable, "-m", "hpwf", "run", str(WORKFLOW), "--backend", "mpi",
                           "--run-dir", str(tmp_path / "mpi"), "--quiet"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seen(tmp_path / "mpi") == [expect(max(1, CORES // 3))] * 4
    proc = subprocess.run([sys.executable, "-m", "hpwf", "run", str(WORKFLOW), "--backend", "mpirun", "--workers", "2",
                           "--threads-per-trial", "2", "--run-dir", str(tmp_path / "mpirun"), "--quiet"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seen(tmp_path / "mpirun") == [expect(2)] * 4


@pytest.mark.mpi
def test_every_rank_of_a_launched_group_gets_its_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADS_RANKS", "2")
    monkeypatch.setenv("THREADS_TRIALS", "1")
    hpwf.run(WORKFLOW, workers=2, run_dir=tmp_path / "run", progress=False)
    assert seen(tmp_path / "run") == [expect(max(1, CORES // 2))] * 2  # ranks 0 and 1


def test_the_default_divides_the_cores_among_the_agents_on_a_host() -> None:
    assert default_threads({AGENTS_ENV: "4"}, cores=16) == 4
    assert default_threads({"MPI_LOCALNRANKS": "3", "PMI_RANK": "1"}, cores=16) == 5  # mpich's local size
    assert default_threads({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "32"}, cores=16) == 1
    assert default_threads({}, cores=16) == 16  # one agent alone
    env = {"MKL_NUM_THREADS": "7", AGENTS_ENV: "2"}
    apply_threads(None, env)
    assert env == {"MKL_NUM_THREADS": "7", AGENTS_ENV: "2", "OMP_NUM_THREADS": str(max(1, CORES // 2)),
                   "OPENBLAS_NUM_THREADS": str(max(1, CORES // 2))}


def test_a_bad_thread_count_is_one_line_exit_2(tmp_path: Path) -> None:
    with pytest.raises(hpwf.ConfigError, match="threads_per_trial must be >= 1, not 0"):
        hpwf.Search(direction="minimize", n_trials=1, threads_per_trial=0)
    proc = subprocess.run([sys.executable, "-m", "hpwf", "run", str(WORKFLOW), "--threads-per-trial", "0",
                           "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == ["hpwf: error: --threads-per-trial must be >= 1, not 0"], proc.stderr
    assert not (tmp_path / "run").exists()
