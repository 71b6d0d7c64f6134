"""``hpwf submit``: a job script from a template and a site config, submitted with ``sbatch``.

The script (``hpwf/templates/job.sh``) runs ``hpwf run WORKFLOW --backend mpi`` through the
site's launcher (``srun --mpi=TYPE`` or ``mpirun``) over the whole allocation. It asks Slurm for
USR1 some minutes before the walltime (``#SBATCH --signal=B:USR1@N``); on USR1, or on TERM
(preemption), it hands the signal to rank 0, whose coordinator stops handing out trials, fails
and re-queues the running ones in the study, and exits with 130; then the script calls
``scontrol requeue`` (at most ``max_requeues`` times). The requeued job finds ``run.json`` in
the run directory and runs ``hpwf resume`` instead, so no finished trial is lost and none is
counted twice.

Every value reaches the script quoted: ``shlex.quote`` in the shell part, sbatch's own
double-quote syntax on ``#SBATCH`` lines, whose values must be one line (`hpwf.slurm._sites`).

No secret is written into the script: the site config's ``env`` values (tokens, often) go to
``RUN_DIR/job.env`` (mode 0600), which the script sources; a storage URL never holds a
password (`hpwf.secrets`). The script is ``0700`` in a run directory only its owner can enter
(`hpwf.rundir._perms`), and it runs under umask ``077`` (``027`` with ``shared_group``).

Example:
    >>> from hpwf.slurm._sites import load_site
    >>> job = resolve_job(load_site("site_configs/slurm-generic.yaml"), "wf.py", name="wf",
    ...                   ntasks_per_node=4)  # doctest: +SKIP
    >>> print(render_script(job))  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from hpwf.rundir._perms import (
    PRIVATE_UMASK,
    SHARED_UMASK,
    atomic_write,
    check_run_trusted,
    make_run_dir,
    run_umask,
)
from hpwf.errors import ConfigError
from hpwf.progress import say
from hpwf.slurm._sites import SiteConfig, load_site, walltime_seconds

SCRIPT_NAME = "job.sh"
ENV_FILE = "job.env"  # the site config's env values, readable by the user only
LOCAL_LOG = "job.out"
# States after which a job will not run again (a requeued job passes through PENDING instead).
FINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
    "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED",
})
_SBATCH_SAFE = re.compile(r"[\w@%+=:,./-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Job:
    """Everything a job script needs, resolved once: command line, then site config, then defaults."""

    site: SiteConfig
    workflow: Path  # absolute
    name: str  # the study name, used for the job name
    run_dir: Path  # absolute
    workdir: Path  # absolute: where the job runs (where `hpwf submit` ran)
    nodes: int
    ntasks_per_node: int
    time: str
    python: str
    storage: str | None
    shared_group: bool = False  # the run dir's group may read it (2750) instead of the user only (0700)

    @property
    def ranks(self) -> int:
        return self.nodes * self.ntasks_per_node

    @property
    def cpus_per_task(self) -> int | None:
        cpus = self.site.cpus_per_node
        return max(cpus // self.ntasks_per_node, 1) if cpus else None


def resolve_job(
    site: SiteConfig,
    workflow: str | Path,
    *,
    name: str,
    nodes: int | None = None,
    ntasks_per_node: int | None = None,
    time: str | None = None,
    run_dir: str | Path | None = None,
    python: str | None = None,
    workdir: str | Path | None = None,
    shared_group: bool = False,
) -> Job:
    """Combine command-line values with the site config; check what only the two together say.

    Raises:
        ConfigError: a bad ``--nodes``/``--ntasks-per-node``/``--time``, fewer than 2 ranks, or a
            walltime not longer than the site's ``warning_seconds``.
    """
    where = Path(workdir or os.getcwd()).absolute()
    for flag, value in (("--nodes", nodes), ("--ntasks-per-node", ntasks_per_node)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, not {value}")
    n_nodes = nodes or site.nodes
    per_node = ntasks_per_node or site.ntasks_per_node or site.gpus_per_node or site.cpus_per_node
    if per_node is None:
        raise ConfigError(f"{site.path}: ntasks_per_node: not set; give --ntasks-per-node K "
                          "(or ntasks_per_node, gpus_per_node or cpus_per_node in the site config)")
    if n_nodes * per_node < 2:
        raise ConfigError(f"--backend mpi needs at least 2 ranks (rank 0 coordinates), and "
                          f"{n_nodes} node(s) x {per_node} task(s) is {n_nodes * per_node}")
    walltime = time or site.time
    seconds = walltime_seconds(walltime)
    if seconds is None:
        raise ConfigError(f"--time {walltime!r}: not a walltime sbatch takes (30, 30:00, 01:00:00, 1-12, 1-12:00:00)")
    if site.scheduler == "slurm" and site.warning_seconds and seconds <= site.warning_seconds:
        raise ConfigError(f"--time {walltime}: must be longer than the {site.warning_seconds} s warning "
                          f"that {site.path} asks for before the walltime (warning_seconds)")
    if site.scheduler == "local" and n_nodes != 1:
        raise ConfigError(f"--nodes {n_nodes}: {site.path} runs on this machine only (scheduler: local)")
    default_dir = Path("runs") / f"{name}-{_now()}"
    folder = Path(run_dir) if run_dir is not None else default_dir
    return Job(
        site=site, workflow=(where / workflow).resolve(),
        name=name, run_dir=folder if folder.is_absolute() else where / folder, workdir=where,
        nodes=n_nodes, ntasks_per_node=per_node, time=walltime,
        python=python or site.python or sys.executable, storage=site.storage,
        shared_group=shared_group or site.shared_group,
    )


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
        "header": "\n".join(_header(job)),
        "umask": _umask_line(job),
        "source": _comment(f"site config {site.path}" + (f": {site.description}" if site.description else "")),
        "environment": "\n".join(_environment(job)),
        "python": q(job.python),
        "run_dir": q(str(job.run_dir)),
        "max_requeues": str(site.max_requeues if site.scheduler == "slurm" else 0),
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


# --- the ensemble as a job array ---------------------------------------------------------------
ARRAY_SCRIPT_NAME = "ensemble_array.sh"
ARRAY_JOB_ID_FILE = "ensemble_array_job_id"


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
        "source": _comment(f"site config {site.path}" + (f": {site.description}" if site.description else "")),
        "environment": "\n".join(_environment(job)),
        "python": q(job.python),
        "max_requeues": str(site.max_requeues if site.scheduler == "slurm" else 0),
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


# --- checks before sbatch ----------------------------------------------------------------------
NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm")


def check_ranks_fit(job: Job, workflow: Any, array: bool = False) -> None:
    """Refuse a job whose ranks cannot hold the workflow's biggest trial (it would exit 2 in the queue).

    Rank 0 coordinates, so ``job.ranks - 1`` agents run trials; with ``array`` the ensemble's
    members run in their own array tasks and need not fit the search job.

    Raises:
        ConfigError: one line naming ``ranks_per_trial`` and the job's shape.
    """
    needs = []
    if workflow.search is not None:
        needs.append(("ranks_per_trial", max(workflow.search.rank_choices)))
    if workflow.ensemble is not None and not array:
        needs.append(("the ensemble's ranks_per_trial", workflow.ensemble.ranks_per_trial))
    agents = job.ranks - 1
    for what, k in needs:
        if k > agents:
            raise ConfigError(
                f"{job.workflow}: {what}={k} cannot fit: {job.nodes} node(s) x {job.ntasks_per_node} task(s) "
                f"= {job.ranks} ranks leave {agents} for trials (rank 0 coordinates); ask for at least "
                f"{k + 1} ranks (--nodes/--ntasks-per-node)")


def node_local_warnings(job: Job) -> list[str]:
    """Warnings for paths the job needs that lie on node-local storage, which compute nodes cannot see."""
    if job.site.scheduler != "slurm":
        return []
    python = Path(job.python)
    venv = python.parent.parent if python.parent.name == "bin" else python.parent
    checks = [("the run directory (and the job's output)", job.run_dir), ("the Python environment", venv),
              ("the workflow file", job.workflow)]
    if job.storage and job.storage.startswith("journal:"):
        checks.append(("the storage", Path(job.storage.removeprefix("journal:"))))
    warnings = []
    for what, path in checks:
        local = _node_local(path)
        if local:
            warnings.append(f"[hpwf] warning: {what} {path} is on node-local storage ({local}): compute nodes "
                            "see their own, not this machine's; put it on a shared filesystem")
    return warnings


def _node_local(path: Path) -> str | None:
    for candidate in {str(path.absolute()), os.path.realpath(path)}:
        for root in NODE_LOCAL:
            if candidate == root or candidate.startswith(root + "/"):
                return root
    return None


def _header(job: Job) -> list[str]:
    site = job.site
    if site.scheduler != "slurm":
        return []
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
            '    srun --mpi=none --ntasks-per-node=1 --ntasks="${SLURM_NNODES:-1}" "$hpwf_python" -P -m hpwf.slurm._slurm clean-shm "$SLURM_JOB_ID"',
            "fi",
        ]
    if site.mpirun:
        lines = [f"hpwf_mpirun={q(site.mpirun)}"]
    else:  # the mpirun beside the Python (the mpich wheel puts one in the venv), else PATH's
        lines = ["hpwf_mpirun=mpirun",
                 'if [ -x "${hpwf_python%/*}/mpirun" ]; then hpwf_mpirun=${hpwf_python%/*}/mpirun; fi']
    return [*lines, f'hpwf_launch=("$hpwf_mpirun" -np {job.ranks}{extra})']


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


def _comment(text: str) -> str:
    return _CONTROL.sub("?", text)


def _now() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


# --- submit and watch ----------------------------------------------------------------------------
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


JOB_ID_FILE = "slurm_job_id"


def run_job_state(run_dir: Path) -> dict[str, str | None] | None:
    """``{"job_id", "state"}`` of the Slurm job that `hpwf submit` started for ``run_dir``, with
    ``"array_job_id"`` and ``"array_state"`` (e.g. ``"RUNNING 2, PENDING 2"``) for an ensemble array."""
    paths = [Path(run_dir) / name for name in (JOB_ID_FILE, ARRAY_JOB_ID_FILE)]
    if not any(p.exists() for p in paths):
        return None
    job_id, array_id = (p.read_text().strip() if p.exists() else None for p in paths)
    result: dict[str, str | None] = {"job_id": job_id, "state": None}
    try:
        if job_id:
            result["state"] = job_state(job_id)
        if array_id:
            result.update(array_job_id=array_id, array_state=array_state(array_id))
    except OSError:  # no Slurm client on this machine
        pass
    return result


def array_state(array_id: str) -> str | None:
    """How many tasks of a job array are in each state (squeue), or None once Slurm forgot them."""
    done = subprocess.run(["squeue", "-h", "-r", "-j", array_id, "-o", "%T"], capture_output=True, text=True)
    states = done.stdout.split() if done.returncode == 0 else []
    if not states:
        return None
    return ", ".join(f"{state} {states.count(state)}" for state in sorted(set(states)))


def job_state(job_id: str) -> str | None:
    """The job's state (``PENDING``, ``RUNNING``, ``COMPLETED``, ...) from squeue, else scontrol.

    None when Slurm no longer knows the job (it left the controller's memory after MinJobAge).
    """
    done = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    state = done.stdout.strip() if done.returncode == 0 else ""
    if state:
        return state.split()[0]
    done = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True)
    match = re.search(r"\bJobState=(\S+)", done.stdout)
    return match.group(1) if match else None


def wait_for_job(job_id: str, timeout: float = 600.0, poll: float = 1.0) -> str:
    """Wait until the job is in a final state and return it (``UNKNOWN`` if Slurm forgot it).

    Raises:
        TimeoutError: still not done after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        state = job_state(job_id)
        if state is None:
            return "UNKNOWN"
        if state in FINAL_STATES:
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {state} after {timeout:.0f} s")
        time.sleep(poll)


class SubmitError(Exception):
    """The scheduler did not take the job (the CLI prints it and exits 1)."""


# --- the signal hand-off inside the job ---------------------------------------------------------
def signal_rank0(signame: str, token: str, wait_s: float = 10.0) -> list[int]:
    """Send ``signame`` to rank 0 of the ``hpwf`` step tagged ``HPWF_STEP_TOKEN=token`` on this node.

    Only the coordinator gets the signal; it stops the other ranks itself, so no agent dies
    mid-trial. Rank 0 is the ``python -m hpwf ...`` process of the step whose launcher variables
    (``PMI_RANK``, ``SLURM_PROCID``, ... read with `hpwf.worker._topology.placement`) say rank 0. It is
    looked for up to ``wait_s`` seconds (the step may still be starting). Returns the pids signalled.
    """
    from hpwf.worker._topology import LAUNCHERS, placement

    signum = signal.Signals["SIG" + signame.removeprefix("SIG")]
    needle = f"HPWF_STEP_TOKEN={token}".encode()
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if argv[1:3] != [b"-m", b"hpwf"] and argv[1:4] != [b"-P", b"-m", b"hpwf"]:
                    continue
                raw = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if needle not in raw:
                continue
            env = dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)
            # (without a launcher's rank variable, placement() would ask mpi4py in this process)
            if any(rank_var in env for _, rank_var, *_ in LAUNCHERS) and placement(env).rank == 0:
                found.append(int(entry.name))
        for pid in found:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


# --- MPICH's leftovers on a requeue --------------------------------------------------------------
def mpich_shm_names(job_id: str, steps: int = 256) -> list[str]:
    """The name prefixes MPICH 4 gives its per-node shared memory in steps of ``job_id`` under srun.

    MPICH names the segment ``mpich_shm_<FNV-1a of the PMI job id>_<node>``, and under Slurm's
    pmi2/pmix plugins that id is ``JOBID.STEPID``. Ranks killed mid-run never unlink it, and a
    requeued job has the same job id and step ids: its ranks would open the stale segment and
    fail in ``MPI_Init`` ("Message truncated") or hang there.

    Example:
        >>> mpich_shm_names("9", steps=1)
        ['mpich_shm_e200f4fa_', 'mpich_vci_e200f4fa_']
    """
    names = []
    for step in range(steps):
        digest = 2166136261
        for byte in f"{job_id}.{step}".encode():
            digest = ((digest ^ byte) * 16777619) & 0xFFFFFFFF
        names += [f"mpich_shm_{digest:x}_", f"mpich_vci_{digest:x}_"]
    return names


def clean_stale_shm(job_id: str, folder: Path = Path("/dev/shm")) -> list[Path]:
    """Remove this job's MPICH segments from ``folder`` (run before its steps start again)."""
    prefixes = tuple(mpich_shm_names(job_id))
    removed = []
    for path in folder.glob("mpich_*"):
        if path.name.startswith(prefixes):
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
    return removed


# --- the command line --------------------------------------------------------------------------
def add_submit_parser(subparsers: Any) -> None:
    """Add ``hpwf submit WORKFLOW --site SITE.yaml [...]`` to the CLI's subparsers."""
    p = subparsers.add_parser("submit", help="write a Slurm job script for a workflow and submit it with sbatch")
    p.add_argument("workflow", type=Path)
    p.add_argument("--site", type=Path, required=True, help="a site config, e.g. site_configs/slurm-generic.yaml")
    p.add_argument("--nodes", type=int, help="nodes (default: the site config's, else 1)")
    p.add_argument("--ntasks-per-node", type=int, help="MPI ranks per node; rank 0 coordinates")
    p.add_argument("--time", help="walltime HH:MM:SS (default: the site config's)")
    p.add_argument("--run-dir", type=Path, help="default: runs/<workflow>-<time>; an existing run is resumed")
    p.add_argument("--shared-group", action="store_true",
                   help="the run dir's group may read it (2750); default: you only (0700)")
    p.add_argument("--dry-run", action="store_true", help="print the job script; write and submit nothing")
    p.add_argument("--ensemble-array", action="store_true",
                   help="train the ensemble's members as a job array, one member per task, after the search job")
    p.add_argument("--array-throttle", type=int, metavar="N",
                   help="at most N members at once (sbatch --array=0-K%%N; implies --ensemble-array)")


def submit_command(args: argparse.Namespace) -> int:
    """``hpwf submit``: print the script (``--dry-run``), or write it into the run dir and submit it.

    Prints the job id (the process id for ``scheduler: local``) on stdout; with an ensemble
    array, the search job's id and then the array's (the array waits for the search:
    ``--dependency=afterok``). Bad input raises `ConfigError` (exit 2) before anything is
    written; a job the scheduler refuses prints one line and returns 1.
    """
    from hpwf.workflow._loading import load

    site = load_site(args.site)
    workflow = load(args.workflow)  # a bad workflow file fails here, not in the queue
    array = bool(args.ensemble_array or args.array_throttle is not None or site.ensemble_array)
    throttle = args.array_throttle if args.array_throttle is not None else site.array_throttle
    if array:
        _check_array(args, site, workflow, throttle)
    job = resolve_job(site, args.workflow, name=workflow.name, nodes=args.nodes,
                      ntasks_per_node=args.ntasks_per_node, time=args.time, run_dir=args.run_dir,
                      shared_group=args.shared_group)
    search = workflow.search is not None and not (array and _search_done(job.run_dir))
    if search or not array:
        check_ranks_fit(job, workflow, array)
    for warning in node_local_warnings(job):
        say(warning)
    scripts: list[tuple[str, str]] = []
    if search or not array:
        scripts.append((SCRIPT_NAME, render_script(job, search_only=array)))
    if array:
        assert workflow.ensemble is not None
        scripts.append((ARRAY_SCRIPT_NAME, render_array_script(job, workflow.ensemble.members,
                                                               workflow.ensemble.ranks_per_trial, throttle)))
    if args.dry_run:
        sys.stdout.write("\n".join(text for _, text in scripts))
        return 0
    resuming = (job.run_dir / "run.json").exists()
    paths = [write_script(job, text, name) for name, text in scripts]
    if array:  # sbatch does not create the folder of a task's --output
        with run_umask(job.shared_group):
            (job.run_dir / "ensemble").mkdir(exist_ok=True)
    with run_umask(job.shared_group):  # sbatch hands it to the job (SLURM_UMASK): its log file too
        return _submit(job, workflow, paths, search, array, throttle, resuming)


def _submit(job: Job, workflow: Any, paths: list[Path], search: bool, array: bool, throttle: int | None,
            resuming: bool) -> int:
    site = job.site
    try:
        if site.scheduler == "local":
            pid = start_local(paths[0], job.workdir)
            print(pid)
            say(f"[hpwf] started {paths[0]} as process {pid} with {job.ranks} ranks; log {paths[0].parent / LOCAL_LOG}")
            return 0
        job_id = sbatch(paths[0], job.workdir) if search or not array else None
        if job_id is not None:
            atomic_write(job.run_dir / JOB_ID_FILE, job_id + "\n")  # for `hpwf status`
            print(job_id, flush=True)
            say(f"[hpwf] submitted job {job_id}: {job.nodes} node(s) x {job.ntasks_per_node} ranks, "
                f"{'resumes' if resuming else 'run dir'} {job.run_dir}; log {job.run_dir / ('slurm-' + job_id + '.out')}")
        if array:
            after = [f"--dependency=afterok:{job_id}"] if job_id else []
            array_id = sbatch(paths[-1], job.workdir, after)
            atomic_write(job.run_dir / ARRAY_JOB_ID_FILE, array_id + "\n")
            print(array_id)
            assert workflow.ensemble is not None
            say(f"[hpwf] submitted job array {array_id}: {workflow.ensemble.members} members"
                + (f", at most {throttle} at once" if throttle else "")
                + (f", after job {job_id} (the search)" if job_id else "")
                + f"; logs {job.run_dir / 'ensemble' / ('slurm-' + array_id + '_*.out')}")
    except SubmitError as exc:
        say(f"hpwf: error: {exc}")
        return 1
    return 0


def _search_done(run_dir: Path) -> bool:
    """The run's search reached its trial budget (a resubmitted ensemble array needs no search job)."""
    from hpwf.rundir._run import read_summary

    if not (run_dir / "run.json").exists():
        return False
    summary = read_summary(run_dir)
    budget = int(summary.get("n_trials") or 0)
    finished = int(summary.get("complete") or 0) + int(summary.get("pruned") or 0)
    return budget > 0 and finished >= budget and not summary.get("stop_reason")


def _check_array(args: argparse.Namespace, site: SiteConfig, workflow: Any, throttle: int | None) -> None:
    if workflow.ensemble is None:
        raise ConfigError(f"--ensemble-array: {args.workflow} defines no `ensemble = hpwf.Ensemble(...)`")
    if site.scheduler != "slurm":
        raise ConfigError(f"--ensemble-array: {site.path} has scheduler: {site.scheduler}; a job array needs Slurm")
    if throttle is not None and throttle < 1:
        raise ConfigError(f"--array-throttle must be >= 1, not {throttle}")
    if workflow.path is None:  # pragma: no cover - `hpwf submit` always loads a file
        raise ConfigError("--ensemble-array needs a workflow file")


def main(argv: Sequence[str]) -> int:
    """The job script's helpers: ``python -m hpwf.slurm._slurm signal-rank0 SIGNAL TOKEN`` (hand a
    signal to the coordinator) and ``python -m hpwf.slurm._slurm clean-shm JOBID`` (before a restart)."""
    if len(argv) == 3 and argv[0] == "signal-rank0":
        return 0 if signal_rank0(argv[1], argv[2]) else 1
    if len(argv) == 2 and argv[0] == "clean-shm":
        for path in clean_stale_shm(argv[1]):
            print(f"[hpwf job] removed {path}, left by a killed MPI step of job {argv[1]}")
        return 0
    print("usage: python -m hpwf.slurm._slurm signal-rank0 SIGNAL TOKEN | clean-shm JOBID", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
