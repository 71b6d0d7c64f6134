"""Rank, local rank and node of this process, from one table of launcher variables (mpi4py last)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Mapping

# (launcher, rank, size, local rank, local size); the first launcher whose rank variable is set wins.
LAUNCHERS: tuple[tuple[str, str, str, str, str], ...] = (
    ("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
    ("mpich", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    ("pmix", "PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE"),
    ("slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
)


@dataclass(frozen=True)
class Placement:
    """Where this process sits in its job."""

    rank: int
    size: int
    local_rank: int
    local_size: int
    node: str
    source: str


def placement(env: Mapping[str, str] | None = None) -> Placement:
    """Read the launcher's variables; fall back to mpi4py, then to a single process."""
    env = os.environ if env is None else env
    node = socket.gethostname()
    for source, rank, size, local_rank, local_size in LAUNCHERS:
        if rank in env:
            r = int(env[rank])
            return Placement(
                r, int(env.get(size, r + 1)), int(env.get(local_rank, 0)),
                _first_int(env.get(local_size, "1")), node, source,
            )
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


def _first_int(value: str) -> int:
    """``SLURM_NTASKS_PER_NODE`` may read like ``4(x2)``: take the leading number."""
    digits = "".join(c for c in value.split("(")[0].split(",")[0] if c.isdigit())
    return int(digits) if digits else 1
