"""Backends: where agents run. Each fills the small contract in `_base.Backend`."""

from __future__ import annotations

from pathlib import Path

from hpwf.backends._base import Backend
from hpwf.errors import ConfigError

BACKENDS = ("local", "mpi", "mpirun", "dask", "dask-mpi", "dask-slurm")


def make_backend(name: str, *, workers: int | None = None, scheduler: str | None = None,
                 interface: str | None = None, site: str | Path | None = None,
                 run_dir: str | Path | None = None) -> Backend:
    """The backend called ``name`` on the command line.

    local: a LocalCluster of ``workers`` processes. mpi: under mpirun/srun, rank 0 coordinates.
    mpirun: hpwf starts ``mpirun -np workers`` agents. dask: the cluster at ``scheduler``.
    dask-mpi: under mpirun, dask-mpi's scheduler/client/workers split. ``interface``: the network
    interface agents on other hosts reach the coordinator by (`hpwf.wire._netif`; local agents use loopback).
    dask-slurm: Dask workers as Slurm jobs sized from the ``site`` config (their logs in
    ``run_dir/workers``).
    """
    if name != "dask" and scheduler:
        raise ConfigError(f"--scheduler only goes with --backend dask, not {name!r}")
    if name != "dask-slurm" and site:
        raise ConfigError(f"--site only goes with --backend dask-slurm, not {name!r}")
    if name == "local":
        from hpwf.backends.local import LocalBackend

        return LocalBackend(workers=workers)
    if name == "mpi":
        from hpwf.backends.mpi import MPIBackend

        return MPIBackend(interface=interface)
    if name == "mpirun":
        from hpwf.backends.mpi import MPIJobBackend

        return MPIJobBackend(ranks=workers, interface=interface)
    if name == "dask":
        if not scheduler:
            raise ConfigError("--backend dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
        from hpwf.backends.dask import DaskBackend

        return DaskBackend(scheduler=scheduler, interface=interface)
    if name == "dask-mpi":
        from hpwf.backends.dask import dask_mpi_backend

        return dask_mpi_backend(interface)
    if name == "dask-slurm":
        if not site:
            raise ConfigError("--backend dask-slurm needs --site SITE.yaml (the worker jobs' shape)")
        from hpwf.backends.dask_slurm import DaskSlurmBackend

        return DaskSlurmBackend(site, workers=workers, log_directory=Path(run_dir) / "workers" if run_dir else None)
    raise ConfigError(f"--backend: unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")


__all__ = ["Backend", "BACKENDS", "make_backend"]
