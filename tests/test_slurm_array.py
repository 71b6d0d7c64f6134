"""`hpwf submit --ensemble-array` against the real localhost Slurm (the fixture of tests/test_slurm.py).

The search runs as one job; the ensemble's members run as a job array that waits for it
(``--dependency=afterok``), one member per task, throttled with ``%``. Member 1 fails on its
first attempt: its task requeues itself and trains it again; a resubmission trains nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.test_slurm import GENERIC, ROOT, finish, log_of, slurm  # noqa: F401 - the session's Slurm

pytestmark = pytest.mark.slurm

WF = ROOT / "tests" / "workflows" / "toy_search_ensemble.py"
MEMBERS = 4


def submit_array(run_dir: Path, env: dict[str, str], *extra: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "hpwf", "submit", str(WF), "--site", str(GENERIC), "--ntasks-per-node", "3",
         "--time", "10", "--run-dir", str(run_dir), "--ensemble-array", *extra],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def wait_for_array(array_job: str, run_dir: Path, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while subprocess.run(["squeue", "-h", "-j", array_job, "-o", "%i %T"], capture_output=True,
                         text=True).stdout.strip():
        if time.time() > deadline:
            subprocess.run(["scancel", array_job])
            raise AssertionError(f"array {array_job} not done in {timeout} s:\n{array_logs(run_dir)}")
        time.sleep(1)


def array_logs(run_dir: Path) -> str:
    return "\n".join(f"== {p.name}\n{p.read_text()}" for p in sorted((run_dir / "ensemble").glob("slurm-*.out")))


def member_trials(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    from hpwf.rundir._run import load_study

    return load_study(run_dir / "ensemble").get_trials(deepcopy=False)


def test_ensemble_as_a_job_array_after_the_search(slurm: str, tmp_path: Path) -> None:  # noqa: F811
    run_dir = tmp_path / "run"
    env = {"MEMBER_FAIL_ONCE": str(tmp_path / "failed-once"), "MEMBER_SLEEP": "1"}
    search_job, array_job = submit_array(run_dir, env, "--array-throttle", "2")
    shown = subprocess.run(["scontrol", "show", "job", array_job], capture_output=True, text=True).stdout
    assert f"Dependency=afterok:{search_job}" in shown, shown  # still waiting for the search
    assert re.search(r"ArrayTaskThrottle=2\b", shown), shown
    assert "#SBATCH --array=0-3%2\n" in (run_dir / "ensemble_array.sh").read_text()
    assert finish(search_job, run_dir) == "COMPLETED", log_of(run_dir, search_job)
    wait_for_array(array_job, run_dir)
    logs = array_logs(run_dir)

    # One member per task, each into the same member study; member 1 failed once and ran again.
    trials = member_trials(run_dir)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert sorted(t.user_attrs["member"] for t in complete) == list(range(MEMBERS)), logs
    assert [t.user_attrs["member"] for t in failed] == [1] and len(trials) == MEMBERS + 1, logs
    assert "planted member failure" in failed[0].user_attrs["fail_reason"]
    retry = next(t for t in complete if t.user_attrs["member"] == 1)
    assert retry.user_attrs["hpwf:retry_of"] == failed[0].number
    task1 = (run_dir / "ensemble" / f"slurm-{array_job}_1.out").read_text()
    assert "requeueing task 1" in task1 and "start 1: member 1" in task1, task1
    from hpwf.rundir import trial_folder

    for t in complete:  # each member trained in its own array task
        member_log = (trial_folder(run_dir / "ensemble", t.number) / "log.txt").read_text()
        assert f"member {t.user_attrs['member']} " in member_log and f"task {t.user_attrs['member']}\n" in member_log

    # The array ran after the search: members took the search's top-2 configurations.
    search = [t for t in optuna.load_study(study_name="toy_search_ensemble",
                                           storage=_journal(run_dir)).get_trials(deepcopy=False)]
    assert len([t for t in search if t.state == TrialState.COMPLETE]) == 6
    top2 = sorted((t for t in search if t.state == TrialState.COMPLETE), key=lambda t: t.value)[:2]
    assert {t.user_attrs["source_trial"] for t in complete} == {t.number for t in top2}
    assert min(t.datetime_start for t in trials) > max(t.datetime_complete for t in search)
    assert (run_dir / "uq_metrics.json").exists()

    # Submitting again trains no member again (and runs no search job: the search is done).
    [array_job] = submit_array(run_dir, env, "--array-throttle", "2")
    wait_for_array(array_job, run_dir)
    assert len(member_trials(run_dir)) == MEMBERS + 1, array_logs(run_dir)
    again = array_logs(run_dir)
    assert again.count("is trained already") == MEMBERS, again
    status = subprocess.run([sys.executable, "-m", "hpwf", "status", str(run_dir), "--json"],
                            capture_output=True, text=True, timeout=60)
    import json

    info = json.loads(status.stdout)
    assert info["ensemble"] == {"complete": MEMBERS, "fail": 1, "running": 0, "n_trials": MEMBERS}
    assert info["slurm"]["array_job_id"] == array_job
    text = subprocess.run([sys.executable, "-m", "hpwf", "status", str(run_dir)], capture_output=True, text=True,
                          timeout=60).stdout
    assert f"ensemble   {MEMBERS} of {MEMBERS} members done, 1 failed attempts" in text
    assert f"slurm      array {array_job}: " in text, text


def _journal(run_dir: Path) -> optuna.storages.BaseStorage:
    from hpwf.rundir._run import open_storage

    return open_storage(None, run_dir)


def test_a_member_of_two_ranks_trains_on_two_tasks_of_its_array_task(slurm: str, tmp_path: Path) -> None:  # noqa: F811
    from hpwf.rundir import trial_folder

    run_dir = tmp_path / "run"
    search_job, array_job = submit_array(run_dir, {"MEMBER_RANKS": "2"})
    assert "#SBATCH --ntasks=2\n" in (run_dir / "ensemble_array.sh").read_text()
    assert finish(search_job, run_dir) == "COMPLETED", log_of(run_dir, search_job)
    wait_for_array(array_job, run_dir)
    trials = member_trials(run_dir)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * MEMBERS, array_logs(run_dir)
    for t in trials:  # both ranks of the member's group ran it, in the same array task
        folder = trial_folder(run_dir / "ensemble", t.number)
        ranks = sorted(p.name for p in folder.glob("rank*-of-*"))
        assert ranks == ["rank0-of-2", "rank1-of-2"], ranks
        assert len({(folder / r).read_text() for r in ranks}) == 1
