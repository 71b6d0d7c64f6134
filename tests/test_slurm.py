"""`hpwf submit` against a real Slurm: a one-node cluster on 127.0.0.1 that these tests start.

The session fixture runs tests/slurm/localslurm.sh (it apt-installs Slurm and munge when they
are missing, then starts munge, slurmctld and slurmd; needs root). Nothing here is skipped:
without a working Slurm these tests fail. Select them with ``pytest -m slurm``.

Jobs run tests/workflows/toy.py (12 trials) on 1 node x 4 tasks: rank 0 coordinates, 3 agents.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from optuna.trial import TrialState

import hpwf
from hpwf.slurm import job_state, wait_for_job
from tests.test_security_files import other_user  # noqa: F401 - fixtures: the other user
from tests.test_security_user2 import hostile_cwd, planted_ran  # noqa: F401 - and her planted folder
from hpwf.rundir._trialdir import durable_results

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parent.parent
LOCALSLURM = ROOT / "tests" / "slurm" / "localslurm.sh"
STATE_DIR = os.environ.get("HPWF_SLURM_DIR", "/tmp/hpwf-slurm")
TOY = ROOT / "tests" / "workflows" / "toy.py"
GENERIC = ROOT / "site_configs" / "slurm-generic.yaml"
BUDGET = 12


@pytest.fixture(scope="session")
def slurm() -> Iterator[str]:
    """A running localhost Slurm; yields its slurm.conf. Stopped afterwards if this started it."""
    was_running = subprocess.run(["bash", str(LOCALSLURM), "status", STATE_DIR], capture_output=True).returncode == 0
    started = time.time()
    done = subprocess.run(["bash", str(LOCALSLURM), "start", STATE_DIR], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"could not start the local Slurm:\n{done.stdout}\n{done.stderr}"
    conf = done.stdout.strip().splitlines()[-1].removeprefix("SLURM_CONF=")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf  # for sbatch/squeue/scontrol here and in the jobs (sbatch exports it)
    print(f"\n[slurm] ready in {time.time() - started:.1f} s ({'reused' if was_running else 'started'})")
    yield conf
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous
    if not was_running:
        subprocess.run(["bash", str(LOCALSLURM), "stop", STATE_DIR], capture_output=True, timeout=120)


def submit(*args: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "hpwf", "submit", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=120)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert job_id.isdigit(), done.stdout
    return job_id


def log_of(run_dir: Path, job_id: str) -> str:
    path = run_dir / f"slurm-{job_id}.out"
    return path.read_text() if path.exists() else "(no log)"


def finish(job_id: str, run_dir: Path, timeout: float = 300) -> str:
    try:
        return wait_for_job(job_id, timeout=timeout)
    except TimeoutError:
        subprocess.run(["scancel", job_id])
        raise AssertionError(f"job {job_id} did not finish in {timeout} s:\n{log_of(run_dir, job_id)}") from None


def wait_for_results(run_dir: Path, job_id: str, count: int, timeout: float = 120) -> None:
    """Until ``count`` trials finished (COMPLETE or PRUNED) while the job still runs."""
    deadline = time.time() + timeout
    while True:
        states = []
        states += [r["state"] for r in durable_results(run_dir).values()]
        if sum(s in ("COMPLETE", "PRUNED") for s in states) >= count:
            assert job_state(job_id) == "RUNNING", log_of(run_dir, job_id)
            return
        assert time.time() < deadline, f"no {count} results in {timeout} s:\n{log_of(run_dir, job_id)}"
        time.sleep(0.2)


def check_budget(run_dir: Path) -> list:  # type: ignore[type-arg]
    """Exactly the budget finished; a trial that ran again replaced a FAILed one: none counted twice."""
    trials = hpwf.load_study(run_dir).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == BUDGET, [(t.number, t.state.name) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    by_number = {t.number: t for t in trials}
    for t in trials:
        if "hpwf:retry_of" in t.user_attrs:
            assert by_number[t.user_attrs["hpwf:retry_of"]].state == TrialState.FAIL
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] + summary["pruned"] == BUDGET and summary["stop_reason"] is None
    return trials


def test_submit_runs_the_study_to_its_budget(slurm: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    job = submit(TOY, "--site", GENERIC, "--nodes", "1", "--ntasks-per-node", "4", "--time", "00:10:00",
                 "--run-dir", run_dir)
    assert finish(job, run_dir) == "COMPLETED", log_of(run_dir, job)
    check_budget(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["slots"] == 3 and summary["agents_seen"] == 3  # 4 ranks: 1 coordinator, 3 agents
    log = log_of(run_dir, job)
    assert "start 0: hpwf run" in log and "hpwf run exited with code 0" in log
    assert (run_dir / "job.sh").read_text().startswith("#!/bin/bash\n#SBATCH --job-name=hpwf-toy\n")
    status = subprocess.run([sys.executable, "-m", "hpwf", "status", str(run_dir), "--json"],
                            capture_output=True, text=True, timeout=60)
    info = json.loads(status.stdout)
    assert info["slurm"]["job_id"] == job and info["complete"] + info["pruned"] == BUDGET


@pytest.mark.parametrize("how", ["warning signal", "scontrol requeue"])
def test_interrupted_job_requeues_and_finishes_the_budget(slurm: str, tmp_path: Path, how: str) -> None:
    run_dir = tmp_path / "run"
    job = submit(TOY, "--site", GENERIC, "--ntasks-per-node", "4", "--time", "00:10:00", "--run-dir", run_dir,
                 env={"TOY_SLEEP": "0.8"})
    wait_for_results(run_dir, job, 2)
    if how == "warning signal":  # what #SBATCH --signal=B:USR1@300 makes Slurm do near the walltime
        subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True)
    else:
        subprocess.run(["scontrol", "requeue", job], check=True)
    assert finish(job, run_dir) == "COMPLETED", log_of(run_dir, job)
    log = log_of(run_dir, job)
    assert "start 0: hpwf run" in log and "start 1: hpwf resume" in log and "start 2" not in log, log
    signal_name = "SIGUSR1" if how == "warning signal" else "SIGTERM"
    assert f"{signal_name}: stopping the run" in log, log
    trials = check_budget(run_dir)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and len(failed) <= 3, [(t.number, t.user_attrs.get("fail_reason")) for t in trials]
    # The coordinator stopped the running trials and queued them again with the same parameters
    # (agents leave the launcher's signals to it, so none "died mid-trial").
    assert all(f"interrupted by {signal_name}" in t.user_attrs["fail_reason"] for t in failed), \
        [t.user_attrs["fail_reason"] for t in failed]
    by_origin = {t.user_attrs.get("hpwf:retry_of"): t for t in trials}
    # (a trial stopped before it drew a parameter has none yet: its retry draws them)
    assert all(t.params.items() <= by_origin[t.number].params.items() for t in failed), \
        [(t.number, t.params, t.user_attrs.get("hpwf:retry_of")) for t in trials]


def test_requeue_limit_then_resubmit_resumes(slurm: str, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(GENERIC.read_text().replace("max_requeues: 3", "max_requeues: 0"))
    run_dir = tmp_path / "run"
    job = submit(TOY, "--site", site, "--time", "00:10:00", "--run-dir", run_dir, env={"TOY_SLEEP": "0.8"})
    wait_for_results(run_dir, job, 2)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True)
    assert finish(job, run_dir) == "FAILED", log_of(run_dir, job)
    log = log_of(run_dir, job)
    assert "not requeueing: max_requeues=0 reached" in log and "start 1" not in log, log
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "interrupted by SIGUSR1"
    assert summary["complete"] + summary["pruned"] < BUDGET
    again = submit(TOY, "--site", site, "--time", "00:10:00", "--run-dir", run_dir)  # the run dir holds the run
    assert finish(again, run_dir) == "COMPLETED", log_of(run_dir, again)
    assert "start 0: hpwf resume" in log_of(run_dir, again)
    check_budget(run_dir)


def test_scancel_stops_cleanly_and_stays_cancelled(slurm: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    job = submit(TOY, "--site", GENERIC, "--time", "00:10:00", "--run-dir", run_dir, env={"TOY_SLEEP": "0.8"})
    wait_for_results(run_dir, job, 2)
    subprocess.run(["scancel", job], check=True)
    assert finish(job, run_dir) == "CANCELLED", log_of(run_dir, job)
    log = log_of(run_dir, job)
    assert "SIGTERM: stopping the run" in log and "requeueing" not in log, log
    time.sleep(5)  # it would have been requeued by now
    assert job_state(job) in (None, "CANCELLED") and "start 1" not in log_of(run_dir, job)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "interrupted by SIGTERM" and summary["running"] == 0


def test_mpirun_launcher_inside_the_allocation(slurm: str, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("scheduler: slurm\nlauncher: mpirun\nntasks_per_node: 4\ntime: '00:10:00'\n")
    run_dir = tmp_path / "run"
    job = submit(TOY, "--site", site, "--run-dir", run_dir)
    assert finish(job, run_dir) == "COMPLETED", log_of(run_dir, job)
    assert '("$hpwf_mpirun" -np 4)' in (run_dir / "job.sh").read_text()
    check_budget(run_dir)


def test_hostile_names_survive_sbatch_and_the_shell(slurm: str, tmp_path: Path) -> None:
    evil = "a b#c \"d\" 'e' 50% $(touch PWNED) ; `touch PWNED2`"
    folder = tmp_path / evil
    folder.mkdir()
    workflow = folder / "wf.py"
    workflow.write_text(TOY.read_text().replace("seed=1)", f"seed=1, name={evil!r})"))
    run_dir = folder / "run"
    job = submit(workflow, "--site", GENERIC, "--time", "00:10:00", "--run-dir", run_dir)
    info = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    assert re.search(r"JobName=(.*)$", info, re.M).group(1) == f"hpwf-{evil}"  # type: ignore[union-attr]
    assert finish(job, run_dir) == "COMPLETED", log_of(run_dir, job)
    assert (run_dir / f"slurm-{job}.out").exists()  # sbatch put the log where the quoted path says
    check_budget(run_dir)
    assert not list(tmp_path.rglob("PWNED*")) and not list(ROOT.glob("PWNED*"))


def test_handwritten_example_script(slurm: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "WORKFLOW": str(TOY), "RUN_DIR": str(run_dir), "PYTHON": sys.executable}
    done = subprocess.run(["sbatch", "--parsable", f"--output={tmp_path}/slurm-%j.out",
                           "examples/handwritten_job.sbatch"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip().split(";")[0]
    state = wait_for_job(job, timeout=300)
    assert state == "COMPLETED", (tmp_path / f"slurm-{job}.out").read_text()
    check_budget(run_dir)


def test_a_job_ignores_code_planted_in_its_working_directory(slurm: str, tmp_path: Path,
                                                            hostile_cwd: Path) -> None:
    """Issue 21: submitted from a folder where another user planted ``hpwf/`` and ``optuna/``, the
    job's ``cd`` there and every rank's ``python -P -m hpwf`` import neither."""
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-P", "-m", "hpwf", "submit", str(TOY), "--site", str(GENERIC), "--nodes",
                           "1", "--ntasks-per-node", "4", "--time", "00:10:00", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, cwd=hostile_cwd, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip()
    assert finish(job, run_dir) == "COMPLETED", log_of(run_dir, job)
    check_budget(run_dir)
    assert f"cd {hostile_cwd} " in (run_dir / "job.sh").read_text()
    assert planted_ran(hostile_cwd) == [], "code planted in the job's working directory ran in the job"
