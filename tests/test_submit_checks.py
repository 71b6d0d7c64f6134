"""`hpwf submit`'s checks before sbatch, and the ensemble array's scripts, with a fake sbatch.

The real Slurm runs the array in tests/test_slurm_array.py. Here: a job whose ranks cannot
hold ``ranks_per_trial`` exits 2 before anything is written or submitted; every walltime form
sbatch takes is accepted; paths on node-local storage are warned about; the array is
submitted after the search with ``--dependency=afterok`` and ``%`` throttling.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpwf.slurm import load_site, walltime_seconds

ROOT = Path(__file__).resolve().parent.parent
TOY = ROOT / "tests" / "workflows" / "toy.py"
SEARCH_ENSEMBLE = ROOT / "tests" / "workflows" / "toy_search_ensemble.py"
GENERIC = ROOT / "site_configs" / "slurm-generic.yaml"
SHARED = "/srv/hpwf-shared-test/run"  # not node-local; a dry run never creates it


def hpwf(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpwf", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=120)


def own_warnings(stderr: str) -> list[str]:
    """stderr's lines less warnings about this checkout or its venv (a clone may itself lie in /tmp)."""
    venv = str(Path(sys.executable).parent.parent)
    return [line for line in stderr.splitlines()
            if not (line.startswith("[hpwf] warning:") and (f" {ROOT}/" in line or f" {venv} " in line))]


def fake_sbatch(folder: Path, job_ids: list[str]) -> dict[str, str]:
    """An sbatch that logs each call's arguments (one line each) and answers the next job id."""
    folder.mkdir()
    (folder / "ids").write_text("\n".join(job_ids) + "\n")
    stub = folder / "sbatch"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {folder}/calls\nhead -n1 {folder}/ids\n'
                    f'sed -i 1d {folder}/ids\n')
    stub.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def workflow_with_ranks(tmp_path: Path, search_ranks: int, member_ranks: int = 1) -> Path:
    path = tmp_path / "wf.py"
    path.write_text(SEARCH_ENSEMBLE.read_text()
                    .replace('seed=2)', f'seed=2, ranks_per_trial={search_ranks})')
                    .replace('int(os.environ.get("MEMBER_RANKS", "1"))', str(member_ranks)))
    return path


# --- ranks_per_trial must fit the job ------------------------------------------------------------
def test_a_trial_bigger_than_the_job_exits_2_before_sbatch(tmp_path: Path) -> None:
    env = fake_sbatch(tmp_path / "bin", ["4242"])
    wf = workflow_with_ranks(tmp_path, 4)
    run_dir = tmp_path / "run"
    done = hpwf("submit", wf, "--site", GENERIC, "--ntasks-per-node", "4", "--run-dir", run_dir, env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        f"hpwf: error: {wf}: ranks_per_trial=4 cannot fit: 1 node(s) x 4 task(s) = 4 ranks leave 3 for trials "
        "(rank 0 coordinates); ask for at least 5 ranks (--nodes/--ntasks-per-node)")
    assert not run_dir.exists() and not (tmp_path / "bin" / "calls").exists()
    assert hpwf("submit", wf, "--site", GENERIC, "--ntasks-per-node", "5", "--run-dir", SHARED,
                "--dry-run").returncode == 0
    assert hpwf("submit", wf, "--site", GENERIC, "--nodes", "2", "--ntasks-per-node", "3", "--run-dir", SHARED,
                "--dry-run").returncode == 0


def test_the_ensembles_ranks_must_fit_unless_it_runs_as_an_array(tmp_path: Path) -> None:
    wf = workflow_with_ranks(tmp_path, 1, member_ranks=4)
    done = hpwf("submit", wf, "--site", GENERIC, "--ntasks-per-node", "3", "--run-dir", SHARED, "--dry-run")
    assert done.returncode == 2 and "the ensemble's ranks_per_trial=4 cannot fit" in done.stderr
    done = hpwf("submit", wf, "--site", GENERIC, "--ntasks-per-node", "3", "--run-dir", SHARED, "--dry-run",
                "--ensemble-array")
    assert done.returncode == 0, done.stderr
    array = done.stdout[done.stdout.index("#!/bin/bash", 1):]  # the search's script, then the array's
    assert "#SBATCH --ntasks=4\n" in array and "hpwf_launch=(srun --kill-on-bad-exit=1 --mpi=pmi2)" in array


# --- every walltime form sbatch takes --------------------------------------------------------------
@pytest.mark.parametrize("form,seconds", [
    ("30", 1800), ("30:00", 1800), ("01:00:00", 3600), ("1-12", 129600), ("1-12:30", 131400),
    ("1-12:00:00", 129600), ("100:00:00", 360000),
])
def test_every_sbatch_walltime_form_is_accepted(form: str, seconds: int, tmp_path: Path) -> None:
    assert walltime_seconds(form) == seconds
    done = hpwf("submit", TOY, "--site", GENERIC, "--time", form, "--run-dir", SHARED, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert f"#SBATCH --time={form}\n" in done.stdout
    site = tmp_path / "site.yaml"  # in a site config too, as a YAML string or a number of minutes
    value = form if form.isdigit() else f'"{form}"'  # unquoted, YAML would read 30:00 as sexagesimal 1800
    site.write_text(f"scheduler: slurm\nlauncher: srun\ntime: {value}\n")
    assert load_site(site).time == form


@pytest.mark.parametrize("form", ["1h", "0", "00:00:00", "1:2:3:4", "-5", "1-", "5"])
def test_a_walltime_sbatch_would_refuse_exits_2(form: str) -> None:
    done = hpwf("submit", TOY, "--site", GENERIC, "--time", form, "--run-dir", SHARED, "--dry-run")
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "hpwf: error: --time " in done.stderr
    assert "must be longer than the 300 s warning" in done.stderr if form == "5" else f"{form!r}: not a walltime" in done.stderr


# --- node-local storage ----------------------------------------------------------------------------
@pytest.mark.parametrize("root", ["/tmp", "/var/tmp", "/dev/shm"])
def test_node_local_run_dir_is_warned_about(root: str) -> None:
    run_dir = f"{root}/hpwf-never-created/run"
    done = hpwf("submit", TOY, "--site", GENERIC, "--run-dir", run_dir, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert own_warnings(done.stderr) == [
        f"[hpwf] warning: the run directory (and the job's output) {run_dir} is on node-local storage ({root}): "
        "compute nodes see their own, not this machine's; put it on a shared filesystem"]
    assert not Path(run_dir).exists()


def test_a_shared_run_dir_and_venv_give_no_warning_and_a_node_local_venv_does(tmp_path: Path) -> None:
    done = hpwf("submit", TOY, "--site", GENERIC, "--run-dir", SHARED, "--dry-run")
    assert done.returncode == 0 and own_warnings(done.stderr) == []
    site = tmp_path / "site.yaml"
    site.write_text(GENERIC.read_text().replace("python: null", "python: /dev/shm/venv/bin/python"))
    done = hpwf("submit", TOY, "--site", site, "--run-dir", SHARED, "--dry-run")
    assert done.returncode == 0
    assert own_warnings(done.stderr) == [
        "[hpwf] warning: the Python environment /dev/shm/venv is on node-local storage (/dev/shm): "
        "compute nodes see their own, not this machine's; put it on a shared filesystem"]


def test_local_scheduler_gives_no_node_local_warning(tmp_path: Path) -> None:
    done = hpwf("submit", TOY, "--site", ROOT / "site_configs" / "local.yaml", "--run-dir", tmp_path / "r", "--dry-run")
    assert done.returncode == 0 and "warning" not in done.stderr


# --- the ensemble as a job array -------------------------------------------------------------------
def test_array_is_submitted_after_the_search_with_a_throttle(tmp_path: Path) -> None:
    env = fake_sbatch(tmp_path / "bin", ["4242", "4243;cluster"])
    run_dir = tmp_path / "run"
    done = hpwf("submit", SEARCH_ENSEMBLE, "--site", GENERIC, "--run-dir", run_dir, "--array-throttle", "2", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "4242\n4243\n"
    calls = (tmp_path / "bin" / "calls").read_text().splitlines()
    assert calls == [f"--parsable {run_dir}/job.sh",
                     f"--parsable --dependency=afterok:4242 {run_dir}/ensemble_array.sh"]
    search = (run_dir / "job.sh").read_text()
    assert "--run-dir " + str(run_dir) + " --no-ensemble)" in search
    assert 'hpwf_args=(resume "$hpwf_run_dir" --backend mpi --no-ensemble)' in search
    array = (run_dir / "ensemble_array.sh").read_text()
    assert "#SBATCH --array=0-3%2\n" in array and f"#SBATCH --output={run_dir}/ensemble/slurm-%A_%a.out\n" in array
    assert f'ensemble-member {run_dir} --workflow {SEARCH_ENSEMBLE} --member "$hpwf_member"' in array
    assert (run_dir / "ensemble").is_dir()  # sbatch does not create the folder of --output
    assert (run_dir / "ensemble_array_job_id").read_text() == "4243\n"


def test_site_config_turns_the_array_on_and_an_ensemble_only_workflow_has_no_search_job(tmp_path: Path) -> None:
    env = fake_sbatch(tmp_path / "bin", ["77"])
    site = tmp_path / "site.yaml"
    site.write_text(GENERIC.read_text().replace("ensemble_array: false", "ensemble_array: true")
                    .replace("array_throttle: null", "array_throttle: 3"))
    run_dir = tmp_path / "run"
    done = hpwf("submit", ROOT / "tests" / "workflows" / "toy_ensemble.py", "--site", site, "--run-dir", run_dir, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "77\n" and not (run_dir / "job.sh").exists()
    assert (tmp_path / "bin" / "calls").read_text() == f"--parsable {run_dir}/ensemble_array.sh\n"
    assert "#SBATCH --array=0-5%3\n" in (run_dir / "ensemble_array.sh").read_text()


@pytest.mark.parametrize("args,problem", [
    ((TOY, "--ensemble-array"), "--ensemble-array: " + str(TOY) + " defines no `ensemble = hpwf.Ensemble(...)`"),
    ((SEARCH_ENSEMBLE, "--array-throttle", "0"), "--array-throttle must be >= 1, not 0"),
])
def test_bad_array_options_exit_2(args: tuple[str, ...], problem: str, tmp_path: Path) -> None:
    done = hpwf("submit", *args, "--site", GENERIC, "--run-dir", tmp_path / "run")
    assert done.returncode == 2 and done.stderr.strip() == f"hpwf: error: {problem}"
    assert not (tmp_path / "run").exists()


def test_local_site_refuses_an_array(tmp_path: Path) -> None:
    done = hpwf("submit", SEARCH_ENSEMBLE, "--site", ROOT / "site_configs" / "local.yaml", "--ensemble-array",
                "--run-dir", tmp_path / "run")
    assert done.returncode == 2 and "a job array needs Slurm" in done.stderr
