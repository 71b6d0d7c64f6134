"""A job, resolved once: command line, then site config, then defaults (`resolve_job`), and the
checks that only the job and the workflow together can make."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpwf.errors import ConfigError
from hpwf.slurm._schedulers import scheduler_for
from hpwf.slurm._sites import SiteConfig, walltime_seconds

NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm")


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
    scheduler_for(site).check_job(site, n_nodes, walltime, seconds)
    default_dir = Path("runs") / f"{name}-{_now()}"
    folder = Path(run_dir) if run_dir is not None else default_dir
    return Job(
        site=site, workflow=(where / workflow).resolve(),
        name=name, run_dir=folder if folder.is_absolute() else where / folder, workdir=where,
        nodes=n_nodes, ntasks_per_node=per_node, time=walltime,
        python=python or site.python or sys.executable, storage=site.storage,
        shared_group=shared_group or site.shared_group,
    )

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
    if not scheduler_for(job.site).remote_nodes:
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

def _now() -> str:
    return time.strftime("%Y%m%d-%H%M%S")
