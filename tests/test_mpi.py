"""`mpirun -np N python -m hpwf run WORKFLOW --backend mpi`: real MPI, real Horovod."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

import hpwf
from hpwf.rundir._trialdir import trial_folder

pytestmark = pytest.mark.mpi

ROOT = Path(__file__).resolve().parents[1]
MPIRUN = str(Path(sys.executable).parent / "mpirun")
HVD = str(ROOT / "tests" / "workflows" / "hvd_check.py")


def mpirun(np: int, *args: str, env: dict[str, str] | None = None, flags: tuple[str, ...] = (),
           timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MPIRUN, *flags, "-np", str(np), sys.executable, "-m", "hpwf", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})},
    )


def rank_records(run_dir: Path, number: int) -> list[dict]:  # type: ignore[type-arg]
    folder = trial_folder(run_dir, number)
    return [json.loads(p.read_text()) for p in sorted(folder.glob("rank*.json"))]


def test_groups_train_data_parallel_with_horovod(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = mpirun(5, "run", HVD, "--backend", "mpi", "--run-dir", str(run_dir), "--quiet",
                  env={"HVD_TRIALS": "6"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = hpwf.load_study(run_dir)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    pairs = set()
    for t in study.trials:
        ranks = rank_records(run_dir, t.number)
        assert [r["group_rank"] for r in ranks] == [0, 1]
        assert all(r["hvd_size"] == 2 and r["group_size"] == 2 for r in ranks)
        assert [r["hvd_rank"] for r in ranks] == [0, 1]
        assert ranks[0]["params"] == ranks[1]["params"] == t.params  # suggested once, shared
        assert ranks[0]["weights"] == ranks[1]["weights"]  # broadcast + allreduce really ran
        world = [r["world_rank"] for r in ranks]
        assert 0 not in world and len(set(world)) == 2  # rank 0 only coordinates
        pairs.add(tuple(world))
    assert len({r for p in pairs for r in p}) == 4  # every worker rank trained


def test_prune_decision_reaches_every_rank_of_the_group(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = mpirun(5, "run", HVD, "--backend", "mpi", "--run-dir", str(run_dir), "--quiet",
                  env={"HVD_TRIALS": "8", "HVD_PRUNER": "median", "HVD_BAD_LR": "0.05", "HVD_EPOCHS": "4"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = hpwf.load_study(run_dir)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, "trials with a huge reported loss must be pruned"
    for t in pruned:
        ranks = rank_records(run_dir, t.number)
        assert len(ranks) == 2 and ranks[0]["pruned_at"] == ranks[1]["pruned_at"] is not None
        assert ranks[0]["weights"] == ranks[1]["weights"]


def test_a_rank_killed_mid_trial_does_not_hang_the_run(tmp_path: Path) -> None:
    """The coordinator outside the MPI job (--backend mpirun) sees the job die, fails the trials
    that ran on it, starts a new job and reaches the budget."""
    run_dir = tmp_path / "run"
    marker = tmp_path / "died"
    workflow = str(ROOT / "tests" / "workflows" / "rank_dies.py")
    proc = subprocess.run(
        [sys.executable, "-m", "hpwf", "run", workflow, "--backend", "mpirun", "--workers", "4",
         "--run-dir", str(run_dir), "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "DIE_MARKER": str(marker)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    dead_trial = int(marker.read_text())
    study = hpwf.load_study(run_dir)
    assert study.trials[dead_trial].state == TrialState.FAIL
    assert "died mid-trial" in study.trials[dead_trial].user_attrs["fail_reason"]
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 6
    assert all(t.state != TrialState.RUNNING for t in study.trials)


def test_a_dead_mpi_job_of_agents_is_started_again(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    workflow = tmp_path / "kill_job.py"
    workflow.write_text(
        "import functools, hpwf\n"
        "from tests import objectives\n"
        "search = hpwf.Search(direction='minimize', n_trials=6, sampler='random', seed=0)\n"
        f"objective = functools.partial(objectives.kills_its_mpi_job_once, marker={str(tmp_path / 'killed')!r})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "hpwf", "run", str(workflow), "--backend", "mpirun", "--workers", "2",
         "--run-dir", str(run_dir), "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "starting it again (1/3)" in proc.stderr
    study = hpwf.load_study(run_dir)
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 6
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert 1 <= len(failed) <= 2 and all("died mid-trial" in t.user_attrs["fail_reason"] for t in failed)


def test_without_the_flag_mpirun_ends_the_job_and_resume_finishes_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    marker = tmp_path / "died"
    workflow = str(ROOT / "tests" / "workflows" / "rank_dies.py")
    env = {"DIE_MARKER": str(marker)}
    proc = mpirun(5, "run", workflow, "--backend", "mpi", "--run-dir", str(run_dir), "--quiet", env=env, timeout=240)
    assert proc.returncode != 0 and marker.exists()  # MPICH ends the whole job: no hang
    proc = mpirun(5, "resume", str(run_dir), "--quiet", env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert hpwf.status(run_dir)["complete"] == 6


def test_searched_group_sizes_are_packed_onto_the_ranks(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = mpirun(5, "run", HVD, "--backend", "mpi", "--run-dir", str(run_dir), "--quiet",
                  env={"HVD_TRIALS": "10", "HVD_RANKS": "1,2,4"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = hpwf.load_study(run_dir)
    sizes = {t.params["ranks_per_trial"] for t in study.trials}
    assert len(sizes) >= 2
    for t in study.trials:
        ranks = rank_records(run_dir, t.number)
        assert len(ranks) == t.params["ranks_per_trial"]
        assert all(r["hvd_size"] == t.params["ranks_per_trial"] for r in ranks)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0 < summary["utilisation"] <= 1 and summary["slots"] == 4


def test_leftover_ranks_are_reported_and_too_big_groups_refused(tmp_path: Path) -> None:
    proc = mpirun(4, "run", HVD, "--backend", "mpi", "--run-dir", str(tmp_path / "a"), "--quiet",
                  env={"HVD_TRIALS": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 of 3 ranks stay idle" in proc.stderr
    proc = mpirun(3, "run", HVD, "--backend", "mpi", "--run-dir", str(tmp_path / "b"), env={"HVD_RANKS": "4"},
                  timeout=120)
    assert proc.returncode == 2
    assert "ranks_per_trial=4 needs more ranks than the 2" in proc.stderr
    assert not (tmp_path / "b" / "study.journal").exists()


def test_local_backend_launches_horovod_ranks_for_a_group(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "hpwf", "run", HVD, "--workers", "2", "--run-dir", str(run_dir), "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "HVD_TRIALS": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for t in hpwf.load_study(run_dir).trials:
        ranks = rank_records(run_dir, t.number)
        assert [r["hvd_size"] for r in ranks] == [2, 2] and ranks[0]["weights"] == ranks[1]["weights"]


def test_a_trial_timeout_under_the_mpi_backend_never_ends_the_job(tmp_path: Path) -> None:
    """Issue 20, reproduction 1: trial 0 sleeps past its trial_timeout under ``mpirun -np 3``.
    Its rank is not aborted (that ended every rank, exit 9 or 75); the job exits 0 with the
    budget met exactly and trial 0 failed."""
    run_dir = tmp_path / "run"
    proc = mpirun(3, "run", str(ROOT / "tests" / "workflows" / "slow_first.py"), "--backend", "mpi",
                  "--run-dir", str(run_dir), "--quiet", env={"SLOW_TRIALS": "40", "SLOW_S": "8"}, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = hpwf.load_study(run_dir)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 40 and TrialState.RUNNING not in states
    assert "trial_timeout" in study.trials[0].user_attrs["fail_reason"]


def test_a_leader_hung_on_a_timed_out_trial_is_retired_and_its_other_rank_trains_on(tmp_path: Path) -> None:
    """Trial 0's leader hangs 60 s (heartbeat beating) past its 3 s trial_timeout under
    ``mpirun -np 4`` (3 worker ranks, trials of 2). Before, it kept its group until it returned:
    no other trial could run meanwhile. Now, 30 s (the linger) after the timeout it is retired,
    never told to exit, and its other rank, which came back, trains the rest with the third: the
    budget is met before the leader returns, and the job exits 0."""
    run_dir = tmp_path / "run"
    proc = mpirun(4, "run", str(ROOT / "tests" / "workflows" / "hung_leader.py"), "--backend", "mpi",
                  "--run-dir", str(run_dir), "--quiet", env={"HUNG_S": "60"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = hpwf.load_study(run_dir)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 6 and study.trials[0].state == TrialState.FAIL
    returned = float((trial_folder(run_dir, 0) / "leader_returned").read_text())
    assert all(t.datetime_complete is not None and t.datetime_complete.timestamp() < returned for t in done)
