"""``--backend dask-slurm``: Dask workers as Slurm jobs, on the real localhost Slurm.

The run's trials execute on worker jobs that dask-jobqueue's SLURMCluster submits (adaptive
between 1 and 2 jobs of 2 workers). One worker job is killed with ``scancel`` mid-run: the
trials it held fail and run again, the cluster submits a replacement job, and the run ends
with exactly its budget. The Slurm fixture is tests/test_slurm.py's (one start per session).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

import hpwf
from hpwf.backends.dask_slurm import JOB_NAME, cluster_options
from hpwf.slurm import site_from_mapping
from tests.test_slurm import BUDGET, ROOT, TOY, slurm  # noqa: F401 - the session's Slurm
from hpwf.rundir._trialdir import durable_results

SITE = """scheduler: slurm
launcher: srun
ntasks_per_node: 2
time: "00:10:00"
warning_seconds: 60
dask_min_jobs: 1
dask_max_jobs: 2
env: {HPWF_TEST_SECRETISH: "s3cr3t value"}
"""


def worker_jobs() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", JOB_NAME, "-t", "RUNNING", "-o", "%i"], capture_output=True,
                         text=True).stdout
    return out.split()


def results(run_dir: Path) -> list[str]:
    states = []
    states += [r["state"] for r in durable_results(run_dir).values()]
    return states


@pytest.mark.slurm
def test_trials_run_on_worker_jobs_and_survive_a_scancelled_job(slurm: str, tmp_path: Path) -> None:  # noqa: F811
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    workflow = tmp_path / "toy.py"  # a trial that lost its worker runs again with the same parameters
    workflow.write_text(TOY.read_text().replace("seed=1)", "seed=1, retries=2)"))
    run_dir = tmp_path / "run"
    log = open(tmp_path / "hpwf.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "hpwf", "run", str(workflow), "--backend", "dask-slurm", "--site", str(site),
                             "--run-dir", str(run_dir)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "TOY_SLEEP": "1.0"})
    seen: set[str] = set()
    try:
        deadline = time.time() + 120
        while not (len(worker_jobs()) == 2 and sum(s in ("COMPLETE", "PRUNED") for s in results(run_dir)) >= 2):
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "hpwf.log").read_text()
            seen.update(worker_jobs())
            time.sleep(0.3)
        seen.update(worker_jobs())  # adaptive: it grew from 1 to 2 jobs for 4 agents
        victim = worker_jobs()[0]
        subprocess.run(["scancel", victim], check=True)
        assert proc.wait(timeout=150) == 0, (tmp_path / "hpwf.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["scancel", "-n", JOB_NAME])
    text = (tmp_path / "hpwf.log").read_text()

    trials = hpwf.load_study(run_dir).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(finished) == BUDGET, [(t.number, t.state.name) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert failed, f"the killed job held no trial?\n{text}"
    assert all("died mid-trial" in t.user_attrs["fail_reason"] for t in failed), [t.user_attrs for t in failed]
    by_origin = {t.user_attrs.get("hpwf:retry_of"): t for t in trials}
    for t in failed:  # it ran again with the parameters it had drawn (a retry may draw the ones it had not yet)
        assert t.params.items() <= by_origin[t.number].params.items(), [(u.number, u.params) for u in trials]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] + summary["pruned"] == BUDGET and summary["stop_reason"] is None
    assert summary["slots"] == 4
    # The cluster replaced the killed job, and cancelled its jobs at the end.
    logs = {p.name.split("-")[-1].split(".")[0] for p in (run_dir / "workers").glob(f"{JOB_NAME}-*.err")}
    assert victim in logs and len(logs) >= 3, (logs, seen, victim)
    time.sleep(2)
    assert worker_jobs() == []
    script = (run_dir / "workers" / "dask-worker-job.sh").read_text()
    assert "--lifetime 540s --lifetime-stagger 30s" in script and "#SBATCH -t 00:10:00" in script
    env_file = run_dir / "workers" / "job.env"  # the site's env reached the jobs through a private file
    assert "s3cr3t" not in script and env_file.stat().st_mode & 0o777 == 0o600
    assert "export HPWF_TEST_SECRETISH='s3cr3t value'" in env_file.read_text()


def test_worker_jobs_are_sized_from_the_site_config(tmp_path: Path) -> None:
    from dask_jobqueue import SLURMCluster

    site = site_from_mapping({
        "scheduler": "slurm", "launcher": "srun", "partition": "gpu", "account": "abc", "qos": "high",
        "cpus_per_node": 8, "ntasks_per_node": 4, "memory": "16G", "time": "2-00", "warning_seconds": 600,
        "modules": ["python/3.11"], "env": {"OMP_NUM_THREADS": 2}, "setup": ["source /opt/env.sh"],
        "sbatch": ["--exclusive"], "python": "/shared/venv/bin/python", "dask_processes": 4,
    })
    options = cluster_options(site, 4, tmp_path)
    with SLURMCluster(**options) as cluster:
        script = cluster.job_script()
    for line in ("#SBATCH -p gpu", "#SBATCH -A abc", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=16G",
                 "#SBATCH -t 48:00:00", "#SBATCH --qos=high", "#SBATCH --exclusive", f"#SBATCH -J {JOB_NAME}",
                 "module load python/3.11", f". {tmp_path}/job.env || exit 1", "source /opt/env.sh"):
        assert line + "\n" in script, (line, script)
    assert "/shared/venv/bin/python -P -m distributed.cli.dask_worker" in script  # nothing from the job's cwd
    assert "--local-directory $hpwf_scratch" in script and "hpwf_scratch=$(mktemp -d" in script  # private scratch
    assert "--nthreads 1" in script and "--nworkers 4" in script
    assert "OMP_NUM_THREADS" not in script  # the env's values stay in job.env
    # Workers leave 5-15 min before the 48 h walltime: lifetime 47:50, +-5 min.
    assert f"--lifetime {48 * 3600 - 600}s --lifetime-stagger 300s" in script


def test_dask_slurm_needs_a_site_config() -> None:
    done = subprocess.run([sys.executable, "-m", "hpwf", "run", str(TOY), "--backend", "dask-slurm"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "hpwf: error: --backend dask-slurm needs --site SITE.yaml (the worker jobs' shape)"


@pytest.mark.slurm
def test_workers_leave_before_the_walltime_and_new_jobs_replace_them(slurm: str, tmp_path: Path) -> None:  # noqa: F811
    """A 1-minute walltime: workers retire after 30 s +- 15 s (before Slurm's kill at 60 s);
    the cluster submits new jobs, and a run longer than one walltime reaches its budget."""
    site = tmp_path / "site.yaml"
    site.write_text(SITE.replace('time: "00:10:00"', "time: 1"))
    workflow = tmp_path / "toy.py"
    workflow.write_text(TOY.read_text().replace("seed=1)", "seed=1, retries=3)"))
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "hpwf", "run", str(workflow), "--backend", "dask-slurm",
                           "--site", str(site), "--run-dir", str(run_dir), "--n-trials", "30"],
                          cwd=ROOT, capture_output=True, text=True, timeout=170,
                          env={**os.environ, "TOY_SLEEP": "2", "TOY_EPOCHS": "4"})
    subprocess.run(["scancel", "-n", JOB_NAME])
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] + summary["pruned"] == 30 and summary["stop_reason"] is None, summary
    assert summary["elapsed_s"] > 50, summary  # longer than the first workers live (30 +- 15 s)
    errs = {p: p.read_text() for p in (run_dir / "workers").glob(f"{JOB_NAME}-*.err")}
    retired = [p.name for p, text in errs.items() if "worker-lifetime-reached" in text]
    assert retired, "\n".join(t[-1500:] for t in errs.values())
    assert len(errs) >= 3, sorted(p.name for p in errs)  # jobs that left were replaced
    assert "DUE TO TIME LIMIT" not in "".join(errs.values())  # none was killed by Slurm at its walltime
    assert "--lifetime 30s --lifetime-stagger 15s" in (run_dir / "workers" / "dask-worker-job.sh").read_text()
