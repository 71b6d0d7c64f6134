"""Job scripts rendered from the packaged templates (``templates/job.sh``, ``ensemble_array.sh``):
every value quoted (``shlex.quote`` in the shell part, sbatch's own syntax on ``#SBATCH`` lines),
the site config's ``env`` values kept in a ``0600`` ``job.env`` beside a ``0700`` script."""

from __future__ import annotations

import re
import shlex
from importlib import resources
from pathlib import Path

from hpwf.rundir import PRIVATE_UMASK, SHARED_UMASK, atomic_write, check_run_trusted, make_run_dir, run_umask
from hpwf.slurm._job import Job
from hpwf.slurm._schedulers import comment, sbatch_quote, scheduler_for

SCRIPT_NAME = "job.sh"
ENV_FILE = "job.env"  # the site config's env values, readable by the user only
ARRAY_SCRIPT_NAME = "ensemble_array.sh"


def render_script(job: Job, search_only: bool = False) -> str:
    """The job script's text: the packaged template filled in, every value quoted.

    ``search_only``: the job runs the search and leaves the ensemble to a job array.
    """
    site = job.site
    q = shlex.quote
    run_args = ["run", str(job.workflow), "--backend", "mpi", "--run-dir", str(job.run_dir)]
    resume_args = ["resume", "$hpwf_run_dir", "--backend", "mpi"]
    if job.storage:
        run_args += ["--storage", job.storage]  # never with a password (refused by hpwf.slurm._sites)
    if job.shared_group:
        run_args.append("--shared-group")
    if search_only:
        run_args.append("--no-ensemble")
        resume_args.append("--no-ensemble")
    values = {
        "header": "\n".join(scheduler_for(site).header(job)),
        "umask": _umask_line(job),
        "source": comment(f"site config {site.path}" + (f": {site.description}" if site.description else "")),
        "environment": "\n".join(_environment(job)),
        "python": q(job.python),
        "run_dir": q(str(job.run_dir)),
        "max_requeues": str(scheduler_for(site).max_requeues(site)),
        "launch": "\n".join(_launch(job)),
        "workdir": q(str(job.workdir)),
        "run_args": " ".join(q(a) for a in run_args),
        "resume_args": " ".join('"$hpwf_run_dir"' if a == "$hpwf_run_dir" else q(a) for a in resume_args),
    }
    return _fill(SCRIPT_NAME, values)

def _umask_line(job: Job) -> str:
    return (f"umask {SHARED_UMASK:03o}  # what the run writes: readable by you and your group (shared_group)"
            if job.shared_group else f"umask {PRIVATE_UMASK:03o}  # what the run writes: readable by you only")

def _fill(template_name: str, values: dict[str, str]) -> str:
    template = resources.files("hpwf.slurm").joinpath("templates").joinpath(template_name).read_text(encoding="utf-8")

    def fill(match: re.Match[str]) -> str:
        return values[match.group(1)]

    text = re.sub(r"\{\{(\w+)\}\}", fill, template)
    return re.sub(r"\n{3,}", "\n\n", text.replace("#!/bin/bash\n\n", "#!/bin/bash\n"))

def render_array_script(job: Job, members: int, ranks: int = 1, throttle: int | None = None) -> str:
    """The job array of an ensemble: task I runs ``hpwf ensemble-member RUN_DIR --member I``.

    Each task asks for ``ranks`` tasks on one node (the member's ``ranks_per_trial``); at most
    ``throttle`` tasks run at once (``--array=0-K%N``). A task whose member fails requeues itself.
    """
    site, q = job.site, shlex.quote
    member_args = [str(job.run_dir), "--workflow", str(job.workflow)]
    if job.storage:
        member_args += ["--storage", job.storage]
    values = {
        "header": "\n".join(_array_header(job, members, ranks, throttle)),
        "umask": _umask_line(job),
        "source": comment(f"site config {site.path}" + (f": {site.description}" if site.description else "")),
        "environment": "\n".join(_environment(job)),
        "python": q(job.python),
        "max_requeues": str(scheduler_for(site).max_requeues(site)),
        "launch": "\n".join(_member_launch(job, ranks)),
        "workdir": q(str(job.workdir)),
        "member_args": " ".join(q(a) for a in member_args),
        "script": q(str(job.run_dir / ARRAY_SCRIPT_NAME)),
    }
    return _fill(ARRAY_SCRIPT_NAME, values)

def _array_header(job: Job, members: int, ranks: int, throttle: int | None) -> list[str]:
    site, s = job.site, sbatch_quote
    cpus = job.cpus_per_task
    options = [
        ("job-name", f"hpwf-{job.name}-ensemble"), ("array", f"0-{members - 1}" + (f"%{throttle}" if throttle else "")),
        ("nodes", "1"), ("ntasks", str(ranks)), ("cpus-per-task", cpus and str(cpus)),
        ("gpus-per-task", site.gpus_per_node and "1"), ("mem", site.memory),
        ("time", job.time), ("partition", site.partition), ("account", site.account), ("qos", site.qos),
        ("constraint", site.constraint),
        ("output", str(job.run_dir).replace("%", "%%") + "/ensemble/slurm-%A_%a.out"),
        ("open-mode", "append"),
    ]
    lines = [f"#SBATCH --{key}={s(value)}" for key, value in options if value]
    lines.append("#SBATCH --requeue")
    lines += [f"#SBATCH {line}" for line in site.sbatch]
    return lines

def _member_launch(job: Job, ranks: int) -> list[str]:
    """One rank: plain Python. More: the site's launcher starts the member's ranks."""
    site, q = job.site, shlex.quote
    if ranks == 1:
        return ["hpwf_launch=()"]
    extra = "".join(f" {q(a)}" for a in site.launcher_args)
    if site.launcher == "srun":
        mpi = f" --mpi={q(site.mpi)}" if site.mpi else ""
        return [f"hpwf_launch=(srun --kill-on-bad-exit=1{mpi}{extra})"]
    mpirun = q(site.mpirun) if site.mpirun else '"${hpwf_python%/*}/mpirun"'
    return [f"hpwf_launch=({mpirun} -np {ranks}{extra})"]

def render_env(job: Job) -> str:
    """The text of ``RUN_DIR/job.env``: the site config's ``env``, one quoted ``export`` a line."""
    lines = ["# Written by `hpwf submit`: the site config's env, kept out of job.sh (readable by you only)."]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in job.site.env]
    return "\n".join(lines) + "\n"

def _environment(job: Job) -> list[str]:
    site, q = job.site, shlex.quote
    lines = [f"module load {q(m)}" for m in site.modules]
    if site.env:
        names = " ".join(name for name, _ in site.env)
        lines += [f"# the site config's env ({names}): its values stay in {ENV_FILE}, readable by you only",
                  f". {q(str(job.run_dir / ENV_FILE))} || exit 1"]
    if job.cpus_per_task and site.launcher == "srun":
        lines.append(f"export SRUN_CPUS_PER_TASK={job.cpus_per_task}")  # srun >= 22.05 does not inherit it
    lines += list(site.setup)  # code, as the site wrote it
    return lines

def _launch(job: Job) -> list[str]:
    site, q = job.site, shlex.quote
    extra = "".join(f" {q(a)}" for a in site.launcher_args)
    if site.launcher == "srun":
        mpi = f" --mpi={q(site.mpi)}" if site.mpi else ""
        # Like mpirun's default: a rank that exits without MPI_Finalize (an agent giving up its
        # trial exits 75) ends the step, instead of leaving the others in Finalize's PMI barrier.
        return [
            f"hpwf_launch=(srun --kill-on-bad-exit=1{mpi}{extra})",
            'if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then  # shared memory the killed MPI step left on each node',
            '    srun --mpi=none --ntasks-per-node=1 --ntasks="${SLURM_NNODES:-1}" "$hpwf_python" -P -m hpwf.slurm clean-shm "$SLURM_JOB_ID"',
            "fi",
        ]
    if site.mpirun:
        lines = [f"hpwf_mpirun={q(site.mpirun)}"]
    else:  # the mpirun beside the Python (the mpich wheel puts one in the venv), else PATH's
        lines = ["hpwf_mpirun=mpirun",
                 'if [ -x "${hpwf_python%/*}/mpirun" ]; then hpwf_mpirun=${hpwf_python%/*}/mpirun; fi']
    return [*lines, f'hpwf_launch=("$hpwf_mpirun" -np {job.ranks}{extra})']

def write_script(job: Job, text: str | None = None, name: str = SCRIPT_NAME) -> Path:
    """Write ``RUN_DIR/job.sh`` (or ``name``; ``0700``) and ``RUN_DIR/job.env`` (``0600``); return
    the script's path.

    The run directory is created ``0700`` (``2750`` with ``shared_group``); an existing one must
    be the user's and writable by no one else (`hpwf.rundir._perms.check_run_trusted`).
    """
    with run_umask(job.shared_group):
        make_run_dir(job.run_dir, job.shared_group)
        check_run_trusted(job.run_dir)
        if job.site.env:
            atomic_write(job.run_dir / ENV_FILE, render_env(job), mode=0o600)
        path = job.run_dir / name
        atomic_write(path, render_script(job) if text is None else text, mode=0o700)
    return path
