"""Where a job script goes: one small class per scheduler, filling the hooks of the one submission
algorithm in `_submit` (as submitit's executors do). ``local`` starts the script on this machine;
``slurm`` writes ``#SBATCH`` lines and calls ``sbatch``."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from hpwf.errors import ConfigError
from hpwf.rundir import atomic_write

if TYPE_CHECKING:
    from hpwf.slurm._job import Job
    from hpwf.slurm._sites import SiteConfig

LOCAL_LOG = "job.out"
JOB_ID_FILE = "slurm_job_id"
_SBATCH_SAFE = re.compile(r"[\w@%+=:,./-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SubmitError(Exception):
    """The scheduler did not take the job (the CLI prints it and exits 1)."""


class Scheduler:
    """The hooks: what a job may ask for, its script's header, and how it is started.

    Attributes:
        remote_nodes: the job runs on other machines (node-local paths are a mistake there).
        arrays: job arrays are possible (an ensemble's members as array tasks).
    """

    remote_nodes = False
    arrays = False

    def check_job(self, site: SiteConfig, nodes: int, walltime: str, seconds: int) -> None:
        """Raise `ConfigError` for a job shape this scheduler cannot run."""

    def max_requeues(self, site: SiteConfig) -> int:
        """How often the job script requeues itself on a walltime warning."""
        return 0

    def header(self, job: Job) -> list[str]:
        """The job script's header lines."""
        return []

    def start(self, job: Job, script: Path, after: str | None = None) -> str:
        """Start ``script`` (after job ``after``, if given); return the job's id."""
        raise NotImplementedError

    def started(self, job: Job, job_id: str, script: Path, resuming: bool) -> str:
        """The line that tells the user where the job went."""
        raise NotImplementedError


class LocalScheduler(Scheduler):
    """``scheduler: local``: the script runs on this machine, detached; its id is the process id."""

    def check_job(self, site: SiteConfig, nodes: int, walltime: str, seconds: int) -> None:
        if nodes != 1:
            raise ConfigError(f"--nodes {nodes}: {site.path} runs on this machine only (scheduler: local)")

    def start(self, job: Job, script: Path, after: str | None = None) -> str:
        return str(start_local(script, job.workdir))

    def started(self, job: Job, job_id: str, script: Path, resuming: bool) -> str:
        return f"[hpwf] started {script} as process {job_id} with {job.ranks} ranks; log {script.parent / LOCAL_LOG}"


class SlurmScheduler(Scheduler):
    """``scheduler: slurm``: ``#SBATCH`` lines, ``sbatch --parsable``; the job id goes to
    ``RUN_DIR/slurm_job_id`` for `hpwf status`."""

    remote_nodes = True
    arrays = True

    def check_job(self, site: SiteConfig, nodes: int, walltime: str, seconds: int) -> None:
        if site.warning_seconds and seconds <= site.warning_seconds:
            raise ConfigError(f"--time {walltime}: must be longer than the {site.warning_seconds} s warning "
                              f"that {site.path} asks for before the walltime (warning_seconds)")

    def max_requeues(self, site: SiteConfig) -> int:
        return site.max_requeues

    def header(self, job: Job) -> list[str]:
        """``#SBATCH`` lines: the job's shape, its log, requeue, and USR1 before the walltime."""
        site = job.site
        s = sbatch_quote
        options = [
            ("job-name", f"hpwf-{job.name}"), ("nodes", str(job.nodes)), ("ntasks-per-node", str(job.ntasks_per_node)),
            ("cpus-per-task", job.cpus_per_task and str(job.cpus_per_task)),
            ("gpus-per-node", site.gpus_per_node and str(site.gpus_per_node)), ("mem", site.memory),
            ("time", job.time), ("partition", site.partition), ("account", site.account), ("qos", site.qos),
            ("constraint", site.constraint),
            ("output", str(job.run_dir).replace("%", "%%") + "/slurm-%j.out"),  # %% is a literal % there
            ("open-mode", "append"),
        ]
        lines = [f"#SBATCH --{key}={s(value)}" for key, value in options if value]
        lines.append("#SBATCH --requeue")
        if site.warning_seconds:
            lines.append(f"#SBATCH --signal=B:USR1@{site.warning_seconds}")
        lines += [f"#SBATCH {line}" for line in site.sbatch]  # sbatch syntax as the site wrote it; one line each
        return lines

    def start(self, job: Job, script: Path, after: str | None = None) -> str:
        job_id = sbatch(script, job.workdir, [f"--dependency=afterok:{after}"] if after else [])
        if script.name == "job.sh":
            atomic_write(job.run_dir / JOB_ID_FILE, job_id + "\n")
        return job_id

    def started(self, job: Job, job_id: str, script: Path, resuming: bool) -> str:
        return (f"[hpwf] submitted job {job_id}: {job.nodes} node(s) x {job.ntasks_per_node} ranks, "
                f"{'resumes' if resuming else 'run dir'} {job.run_dir}; log {job.run_dir / ('slurm-' + job_id + '.out')}")


SCHEDULERS: dict[str, Scheduler] = {"local": LocalScheduler(), "slurm": SlurmScheduler()}


def scheduler_for(site: SiteConfig) -> Scheduler:
    """The scheduler a site config names (validated when it was loaded)."""
    return SCHEDULERS[site.scheduler]


def sbatch(script: Path, workdir: Path, options: Sequence[str] = ()) -> str:
    """Submit ``script`` with ``sbatch --parsable [options]`` and return the job id.

    Raises:
        SubmitError: no ``sbatch`` here, or sbatch refused the job (its message, one line).
    """
    command = shutil.which("sbatch")
    if command is None:
        raise SubmitError("sbatch not found: this is not a Slurm login node (site_configs/local.yaml runs here)")
    done = subprocess.run([command, "--parsable", *options, str(script)], cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or [f"exit code {done.returncode}"]
        raise SubmitError(f"sbatch refused the job: {lines[-1].strip()}")
    return done.stdout.strip().split(";")[0]

def start_local(script: Path, workdir: Path) -> int:
    """Start the script on this machine, detached (``scheduler: local``); return its process id."""
    log = open(script.parent / LOCAL_LOG, "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(["bash", str(script)], cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()
    return proc.pid

def sbatch_quote(value: str) -> str:
    """Quote a value for an ``#SBATCH`` line the way sbatch reads it (double quotes, backslash).

    sbatch does not use the shell for these lines: single quotes would stay in the value, and
    an unquoted ``#`` starts a comment. The value must be one line (checked by `hpwf.slurm._sites`).

    Example:
        >>> sbatch_quote('gpu')
        'gpu'
        >>> print(sbatch_quote('a "b" #c'))
        "a \\"b\\" #c"
    """
    if _CONTROL.search(value):
        raise ConfigError(f"{value!r}: an #SBATCH value must be one line with no control characters")
    if _SBATCH_SAFE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

def comment(text: str) -> str:
    """``text`` with control characters replaced, for a comment line of the script."""
    return _CONTROL.sub("?", text)
