"""Rank, local rank and node of this process, from one table of launcher variables (mpi4py last).

The first launcher whose rank variable is set wins. A launcher that leaves a field out (``srun
--mpi=pmi2`` sets ``PMI_RANK`` but no local rank; ``srun --mpi=pmix`` sets ``PMIX_RANK`` only) has
it filled from Slurm's variables, when ``SLURM_PROCID`` equals its rank (srun started this very
process). ``OMPI_COMM_WORLD_NODE_RANK`` is not a node index (it counts this node's processes of
every job) and is not read.

Example:
    >>> p = placement({"PMI_RANK": "3", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2",
    ...                "PMI_HOSTNAME": "nodeB"})
    >>> (p.rank, p.local_rank, p.local_size, p.node, p.source)
    (3, 1, 2, 'nodeB', 'mpich')
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple


class Launcher(NamedTuple):
    """The variables one launcher sets (``None``: it does not set that one)."""

    name: str
    rank: str
    size: str | None
    local_rank: str | None
    local_size: str | None
    node_name: str | None
    node_index: str | None


LAUNCHERS: tuple[Launcher, ...] = (
    Launcher("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
             "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_HOSTNAME", None),
    Launcher("mpich", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "PMI_HOSTNAME", None),
    Launcher("pmix", "PMIX_RANK", None, None, None, "PMIX_HOSTNAME", None),
    Launcher("slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", None, "SLURMD_NODENAME", "SLURM_NODEID"),
)
SLURM = LAUNCHERS[-1]


@dataclass(frozen=True)
class Placement:
    """Where this process sits in its job (``node_index``: the node's number, where the launcher says)."""

    rank: int
    size: int
    local_rank: int
    local_size: int
    node: str
    source: str
    node_index: int | None = None


@dataclass(frozen=True)
class Group:
    """The ranks that train this trial together (one, unless ``ranks_per_trial > 1``)."""

    rank: int = 0
    size: int = 1
    comm: Any = None  # an mpi4py communicator for the group, where there is one


def placement(env: Mapping[str, str] | None = None) -> Placement:
    """Read the launcher's variables; fall back to mpi4py, then to a single process."""
    env = os.environ if env is None else env
    for launcher in LAUNCHERS:
        if launcher.rank in env:
            return _from_launcher(launcher, env)
    node = socket.gethostname()
    try:
        from mpi4py import MPI
    except ImportError:
        return Placement(0, 1, 0, 1, node, "single")
    world = MPI.COMM_WORLD
    local = world.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return Placement(world.Get_rank(), world.Get_size(), local.Get_rank(), local.Get_size(), node, "mpi4py")
    finally:
        local.Free()


def _from_launcher(launcher: Launcher, env: Mapping[str, str]) -> Placement:
    rank = int(env[launcher.rank])
    same_step = launcher is SLURM or env.get("SLURM_PROCID") == str(rank)

    def field(own: str | None, slurm: str | None) -> str | None:
        if own and env.get(own):
            return env[own]
        return env.get(slurm) if slurm and same_step else None

    size = field(launcher.size, SLURM.size)
    local_rank = field(launcher.local_rank, SLURM.local_rank)
    local_size = env.get(launcher.local_size) if launcher.local_size else None
    node_index = field(launcher.node_index, SLURM.node_index)
    if local_size is None and same_step:
        local_size = _slurm_tasks_on_node(env)
    return Placement(
        rank=rank,
        size=int(size) if size else rank + 1,
        local_rank=int(local_rank) if local_rank else 0,
        local_size=int(local_size) if local_size else 1,
        node=field(launcher.node_name, SLURM.node_name) or socket.gethostname(),
        source=launcher.name,
        node_index=int(node_index) if node_index else None,
    )


def _slurm_tasks_on_node(env: Mapping[str, str]) -> str | None:
    """This node's task count from ``SLURM_STEP_TASKS_PER_NODE``/``SLURM_TASKS_PER_NODE``
    (``2(x3),1``: two tasks on each of nodes 0-2, one on node 3), or ``SLURM_NTASKS_PER_NODE``."""
    spec = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
    index = int(env.get("SLURM_NODEID", "0"))
    if spec:
        per_node: list[str] = []
        for item in spec.split(","):
            count, _, repeat = item.partition("(x")
            per_node.extend([count] * (int(repeat.rstrip(")")) if repeat else 1))
        if index < len(per_node):
            return per_node[index]
    return env.get("SLURM_NTASKS_PER_NODE")
