"""`hpwf ensemble-member`, what each task of an ensemble job array runs, here without Slurm.

The real job array runs in tests/test_slurm_array.py. Here: the members are planned once,
from the finished search; each call trains exactly its member; a failed member exits 1 and
trains again on the next call; a trained member is never trained again; bad input exits 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parent.parent
WF = ROOT / "tests" / "workflows" / "toy_search_ensemble.py"
ENSEMBLE_ONLY = ROOT / "tests" / "workflows" / "toy_ensemble.py"


def hpwf(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpwf", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=180)


def member_trials(run_dir: Path) -> list:  # type: ignore[type-arg]
    from hpwf.rundir._run import load_study

    return load_study(run_dir / "ensemble").get_trials(deepcopy=False)


def test_each_call_trains_its_member_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = hpwf("run", WF, "--no-ensemble", "--workers", "2", "--run-dir", run_dir, "--quiet")
    assert done.returncode == 0, done.stderr
    assert not (run_dir / "ensemble").exists()  # the search only
    env = {"MEMBER_FAIL_ONCE": str(tmp_path / "failed-once")}

    assert hpwf("ensemble-member", run_dir, "--member", "2", env=env).returncode == 0
    trials = member_trials(run_dir)
    assert len(trials) == 4  # all four planned at once, as WAITING trials
    assert [(t.user_attrs["member"], t.state) for t in trials if t.state != TrialState.WAITING] == \
        [(2, TrialState.COMPLETE)]

    failed = hpwf("ensemble-member", run_dir, "--member", "1", env=env)
    assert failed.returncode == 1 and "member 1 (trial 1) failed: RuntimeError: planted member failure" in failed.stderr
    again = hpwf("ensemble-member", run_dir, "--member", "1", env=env)
    assert again.returncode == 0, again.stderr
    retry = [t for t in member_trials(run_dir) if t.user_attrs["member"] == 1]
    assert [t.state for t in retry] == [TrialState.FAIL, TrialState.COMPLETE]
    assert retry[1].user_attrs["hpwf:retry_of"] == retry[0].number
    assert retry[1].user_attrs["config"] == retry[0].user_attrs["config"]

    done = hpwf("ensemble-member", run_dir, "--member", "2", env=env)
    assert done.returncode == 0 and "member 2 is trained already" in done.stderr
    assert len(member_trials(run_dir)) == 5
    for member in (0, 3):
        assert hpwf("ensemble-member", run_dir, "--member", str(member)).returncode == 0
    assert (run_dir / "uq_metrics.json").exists()  # the last member combined them
    status = hpwf("status", run_dir)
    assert "ensemble   4 of 4 members done, 1 failed attempts" in status.stdout


def test_an_ensemble_only_workflow_plans_its_members_itself(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = hpwf("ensemble-member", run_dir, "--member", "0", "--workflow", ENSEMBLE_ONLY)
    assert done.returncode == 0, done.stderr
    assert (run_dir / "run.json").exists() and (run_dir / "ensemble" / "run.json").exists()
    assert [t.state for t in member_trials(run_dir)].count(TrialState.WAITING) == 5
    resumed = hpwf("resume", run_dir, "--workers", "2", "--quiet")  # the rest, the usual way
    assert resumed.returncode == 0, resumed.stderr
    assert [t.state for t in member_trials(run_dir)] == [TrialState.COMPLETE] * 6


def test_bad_member_input_exits_2(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert hpwf("run", WF, "--no-ensemble", "--workers", "2", "--run-dir", run_dir, "--quiet").returncode == 0
    for member, problem in (("4", "--member 4: the ensemble has members 0..3"),
                            ("-1", "--member must be >= 0, not -1")):
        done = hpwf("ensemble-member", run_dir, "--member", member)
        assert done.returncode == 2 and done.stderr.strip().endswith(problem), done.stderr
    done = hpwf("ensemble-member", tmp_path / "none", "--member", "0", "--workflow", WF)
    assert done.returncode == 2 and "no search run here yet" in done.stderr
    assert not (tmp_path / "none").exists()
