"""``--backend dask-slurm``: Dask workers as Slurm jobs (dask-jobqueue's ``SLURMCluster``).

The coordinator runs where ``hpwf run`` runs (a login node, or a small job), with the Dask
scheduler beside it. Worker jobs are sized from the site config: ``dask_processes`` worker
processes per job (one agent each), ``cpus_per_node``, ``memory``, ``time``, ``partition``,
``account``, ``qos``, ``constraint``, extra ``sbatch`` lines; ``modules`` and ``setup`` lines run
in each job before the workers start (``job_script_prologue``), and the ``env`` values are read
there from ``RUN_DIR/workers/job.env`` (mode 0600), never written into the job script.

The cluster is adaptive between ``dask_min_jobs`` and ``dask_max_jobs`` jobs: it asks for as
many workers as there are agents still to place (each agent is one long Dask task), so it
grows while the run goes and shrinks to the minimum once the agents have stopped. Workers
end themselves before Slurm would kill them at the walltime: ``--lifetime`` is the walltime
less ``warning_seconds``, and ``--lifetime-stagger`` (half of ``warning_seconds``) keeps the
workers of one job from leaving all at once. The adaptive cluster then submits a fresh job,
and the agents Dask restarts there carry on; a trial that ran on a retired or killed worker
fails and runs again (the coordinator's retries), so the budget stays exact.
(``--lifetime-restart`` is not used: it would restart the worker inside the same job, which
Slurm still kills at its walltime.)

Example::

    hpwf run workflows/quickstart.py --backend dask-slurm --site site_configs/slurm-generic.yaml
"""

from __future__ import annotations

import math
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distributed.diagnostics.plugin import WorkerPlugin

from hpwf.backends._dask_security import write_key_file
from hpwf.backends.dask import DaskBackend
from hpwf.backends.local import agents_failure, submit_agents
from hpwf.errors import ConfigError
from hpwf.progress import say
from hpwf.slurm import SiteConfig, load_site, walltime_seconds

if TYPE_CHECKING:
    from hpwf.wire import Address

JOB_SCRIPT = "dask-worker-job.sh"
ENV_FILE = "job.env"  # the site config's env for the worker jobs
JOB_NAME = "hpwf-dask-worker"
CHECK_JOBS_S = 3.0


class DaskSlurmBackend(DaskBackend):
    """Agents on Dask workers that run as Slurm jobs, started adaptively.

    Args:
        site: the site config (a `SiteConfig` or its file).
        workers: at most this many agents (default: ``dask_max_jobs`` x ``dask_processes``).
        log_directory: where the worker jobs' Slurm logs and their job script go.

    Example:
        >>> b = DaskSlurmBackend(site_from_mapping({"scheduler": "slurm", "launcher": "srun",  # doctest: +SKIP
        ...                      "ntasks_per_node": 2, "dask_max_jobs": 3}))
        >>> b.slots  # doctest: +SKIP
        6
    """

    name = "dask-slurm"

    def __init__(self, site: SiteConfig | str | Path, workers: int | None = None,
                 log_directory: str | Path | None = None) -> None:
        self.site = site if isinstance(site, SiteConfig) else load_site(site)
        if self.site.scheduler != "slurm":
            raise ConfigError(f"--backend dask-slurm: {self.site.path} has scheduler: {self.site.scheduler}; "
                              "it needs scheduler: slurm")
        self.processes = worker_processes(self.site)
        max_jobs = self.site.dask_max_jobs
        if workers is not None:
            max_jobs = max(math.ceil(workers / self.processes), self.site.dask_min_jobs, 1)
        self.min_jobs, self.max_jobs = self.site.dask_min_jobs, max_jobs
        self.log_directory = Path(log_directory or "dask-slurm-logs").absolute()
        self._slots = self.max_jobs * self.processes
        self._client: Any = None
        self._cluster: Any = None
        self._owns_client = True
        self._futures: list[Any] = []
        self._next_check = 0.0
        self.key_dir: Path | None = None  # the hub key file: $HPWF_KEY_DIR or ~/.hpwf/keys (shared home)
        self._key_file: Path | None = None
        self.listen_host = "0.0.0.0"  # agents run on compute nodes
        self.advertise_host = os.environ.get("HPWF_ADVERTISE") or socket.gethostname()

    def check(self) -> None:
        try:
            import dask_jobqueue  # noqa: F401
        except ImportError as exc:  # pragma: no cover - part of the install
            raise ConfigError(f"--backend dask-slurm needs dask-jobqueue: {exc}") from None

    def start(self, address: Address, authkey: bytes) -> None:
        import dask
        from dask_jobqueue import SLURMCluster
        from distributed import Client

        self.log_directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.site.env:  # values stay out of the job script, in a file only you can read
            _write_private(self.log_directory / ENV_FILE, "".join(
                f"export {name}={shlex.quote(value)}\n" for name, value in self.site.env))
        # An agent's worker may be retired or killed many times in a long run; Dask must not
        # give up on the agent's task after 3 (its default): the coordinator judges failures.
        dask.config.set({"distributed.scheduler.allowed-failures": 1000})
        self._cluster = SLURMCluster(**cluster_options(self.site, self.processes, self.log_directory))
        _write_private(self.log_directory / JOB_SCRIPT, self._cluster.job_script())
        # A tiny target duration: the cluster asks for one worker per agent task not yet done.
        self._cluster.adapt(minimum_jobs=self.min_jobs, maximum_jobs=self.max_jobs, target_duration="10ms",
                            wait_count=2, interval="1s")
        self._client = Client(self._cluster)
        self._client.register_plugin(LeaveWithWorker(), name=LeaveWithWorker.name)
        self._key_file = write_key_file(authkey, address, self.key_dir)
        self._futures = submit_agents(_NoWorkerYet(self._client), address, self._key_file, self._slots, "dask-slurm",
                                      self.report_dir)

    def failure(self, live: int, seen: int) -> str | None:
        return agents_failure(self._futures)

    def heal(self, live: int) -> None:
        """Every few seconds: forget worker jobs that Slurm no longer runs (ended at their
        lifetime, cancelled, killed), so that the adaptive cluster submits new ones.

        SLURMCluster keeps an ended job in its plan and among its workers (dask-jobqueue issues
        122 and 611): its adaptive loop would then think the cluster full and never replace it.
        """
        now = time.monotonic()
        if self._cluster is None or now < self._next_check:
            return
        self._next_check = now + CHECK_JOBS_S
        jobs = {name: str(job.job_id) for name, job in list(self._cluster.workers.items())
                if getattr(job, "job_id", None)}
        ended = ended_jobs(list(jobs.values()))
        gone = [name for name, job_id in jobs.items() if job_id in ended]
        if not gone:
            return
        say(f"[hpwf] worker job(s) {', '.join(jobs[n] for n in gone)} ended; new ones are submitted while agents need them")
        cluster = self._cluster

        def forget() -> None:  # on the cluster's event loop; the next adaptive step fills the plan again
            for name in gone:
                cluster.worker_spec.pop(name, None)
                cluster.workers.pop(name, None)  # its job is gone: nothing to close

        cluster.loop.add_callback(forget)

    def close(self, exit_code: int = 0) -> None:
        super().close(exit_code)
        if self._cluster is not None:
            self._cluster.close()  # scancels the worker jobs
            self._cluster = None


class _NoWorkerYet:
    """The client as `submit_agents` sees it while the adaptive cluster has no worker yet.

    Agents are then submitted with no worker named, and Dask refuses ``allow_other_workers``
    without ``workers=``: it is dropped there. Unplaced agents are what the adaptive cluster
    counts to decide how many jobs to submit.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    def scheduler_info(self, **kwargs: Any) -> Any:
        return self._client.scheduler_info(**kwargs)

    def submit(self, *args: Any, workers: Any = None, allow_other_workers: bool = False, **kwargs: Any) -> Any:
        return self._client.submit(*args, workers=workers, allow_other_workers=allow_other_workers and bool(workers),
                                   **kwargs)


class LeaveWithWorker(WorkerPlugin):
    """A Dask worker plugin: when the worker closes (its ``--lifetime``, or the run's end), the
    process ends at once, agent included.

    A closing worker cannot stop the agent thread it runs, and waits for it: without this the
    process, and with it the Slurm job, would stay until the walltime kills it. The trial the
    agent held fails ("died mid-trial") and runs again elsewhere.
    """

    name = "hpwf-leave-with-worker"

    def teardown(self, worker: Any) -> None:
        import logging

        logging.getLogger("distributed.worker").info("hpwf: worker closing: its agent leaves with it")
        for handler in logging.getLogger().handlers + logging.getLogger("distributed").handlers:
            handler.flush()
        os._exit(0)


def ended_jobs(job_ids: list[str]) -> set[str]:
    """Those of ``job_ids`` that Slurm no longer runs or queues (an empty set if squeue fails)."""
    if not job_ids:
        return set()
    try:
        done = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    if done.returncode != 0:  # squeue refuses a list of ids it has all forgotten
        return set(job_ids) if "Invalid job id" in done.stderr else set()
    live = {line.split()[0] for line in done.stdout.splitlines()
            if line.split()[1:2] and line.split()[1] in ("PENDING", "RUNNING", "CONFIGURING", "REQUEUED", "RESIZING")}
    return set(job_ids) - live


def worker_processes(site: SiteConfig) -> int:
    """Worker processes (one agent each) per job: ``dask_processes``, else the node's tasks or cores."""
    return site.dask_processes or site.ntasks_per_node or site.cpus_per_node or 1


def cluster_options(site: SiteConfig, processes: int, log_directory: Path) -> dict[str, Any]:
    """``SLURMCluster`` keyword arguments from a site config (one job = one node's worth of workers)."""
    walltime = walltime_seconds(site.time) or 3600
    margin = min(site.warning_seconds, walltime // 2)
    lifetime, stagger = walltime - margin, margin // 2
    prologue = [f"module load {shlex.quote(m)}" for m in site.modules]
    if site.env:  # written by `DaskSlurmBackend.start`, mode 0600
        prologue.append(f". {shlex.quote(str(log_directory / ENV_FILE))} || exit 1")
    prologue += list(site.setup)
    # Dask's scratch space: a fresh private folder on the node, not the shared dask-scratch-space
    prologue.append('hpwf_scratch=$(mktemp -d "${TMPDIR:-/tmp}/hpwf-dask-XXXXXXXX") || exit 1')
    extra = [f"--{key}={value}" for key, value in (("qos", site.qos), ("constraint", site.constraint)) if value]
    if site.gpus_per_node:
        extra.append(f"--gpus-per-node={site.gpus_per_node}")
    return {
        "cores": processes, "processes": processes,  # one thread per worker: one agent per worker
        "memory": f"{_gigabytes(site.memory) or processes}GB",  # the workers' memory limit, in all
        "job_mem": site.memory if site.memory else None,
        "job_directives_skip": [] if site.memory else ["--mem"],
        "job_cpu": site.cpus_per_node or processes,
        "walltime": _hms(walltime), "queue": site.partition, "account": site.account,
        "python": f"{shlex.quote(site.python or sys.executable)} -P",  # nothing from the job's working directory
        "job_script_prologue": prologue,
        "job_extra_directives": extra + list(site.sbatch),
        "worker_extra_args": ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s"],
        "log_directory": str(log_directory),
        "local_directory": "$hpwf_scratch",
        "interface": os.environ.get("HPWF_DASK_INTERFACE"),
        "scheduler_options": {"dashboard_address": ":0"},  # no fixed port 8787 on a shared login node
        "job_name": JOB_NAME,
    }


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (``0600``)."""
    from hpwf.rundir import open_fd

    fd = open_fd(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # (a planted link is refused)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _gigabytes(memory: str | None) -> int | None:
    """A Slurm size (``64G``, ``512M``, ``0`` = all of it) in whole GB for Dask; None when unknown."""
    if not memory or memory == "0":
        return None
    units = {"K": 1 / 2**20, "M": 1 / 2**10, "G": 1, "T": 2**10}
    number, unit = (memory[:-1], memory[-1]) if memory[-1] in units else (memory, "M")  # Slurm's default: MB
    return max(1, int(int(number) * units[unit]))
