"""Backends: where agents run. Each fills the small contract in `_base.Backend` (when agents
connect, what ``close`` guarantees); `REGISTRY` maps a ``--backend`` name to its class, imported
only when chosen. May import: `hpwf.wire`, `hpwf.worker`, `hpwf.workflow`, `hpwf.rundir`,
`hpwf.slurm` (site configs); never the engine.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hpwf.backends._base import Backend
from hpwf.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    """One backend: ``target`` ("module:callable") and how command-line options become its arguments.

    ``takes`` maps an option to (keyword, conversion); ``needs`` names an option it cannot do without.
    """

    target: str
    takes: dict[str, tuple[str, Callable[[Any], Any]]] = field(default_factory=dict)
    needs: tuple[str, str] | None = None  # (option, the error when it is missing)


def _same(value: Any) -> Any:
    return value


REGISTRY: dict[str, Entry] = {
    "local": Entry("hpwf.backends.local:LocalBackend", {"workers": ("workers", _same)}),
    "mpi": Entry("hpwf.backends.mpi_world:MPIBackend", {"interface": ("interface", _same)}),
    "mpirun": Entry("hpwf.backends.mpi:MPIJobBackend", {"workers": ("ranks", _same), "interface": ("interface", _same)}),
    "dask": Entry("hpwf.backends.dask:DaskBackend", {"scheduler": ("scheduler", _same), "interface": ("interface", _same)},
                  needs=("scheduler", "--backend dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")),
    "dask-mpi": Entry("hpwf.backends.dask:dask_mpi_backend", {"interface": ("interface", _same)}),
    "dask-slurm": Entry("hpwf.backends.dask_slurm:DaskSlurmBackend",
                        {"site": ("site", _same), "workers": ("workers", _same),
                         "run_dir": ("log_directory", lambda run_dir: Path(run_dir) / "workers")},
                        needs=("site", "--backend dask-slurm needs --site SITE.yaml (the worker jobs' shape)")),
}
BACKENDS = tuple(REGISTRY)
_STRICT = ("scheduler", "site")  # options that mean nothing to other backends: an error there


def make_backend(name: str, *, workers: int | None = None, scheduler: str | None = None,
                 interface: str | None = None, site: str | Path | None = None,
                 run_dir: str | Path | None = None) -> Backend:
    """The backend called ``name`` on the command line.

    local: a Dask cluster of ``workers`` slots in this process. mpi: under mpirun/srun, rank 0
    coordinates. mpirun: hpwf starts ``mpirun -np workers`` agents. dask: the cluster at
    ``scheduler``. dask-mpi: under mpirun, dask-mpi's scheduler/client/workers split.
    dask-slurm: Dask workers as Slurm jobs sized from the ``site`` config (their logs in
    ``run_dir/workers``). ``interface``: the network interface agents on other hosts reach the
    coordinator by (local agents use loopback).

    Example:
        >>> make_backend("dask")
        Traceback (most recent call last):
        ...
        hpwf.errors.ConfigError: --backend dask needs --scheduler ADDRESS (e.g. tcp://host:8786)
    """
    given = {"workers": workers, "scheduler": scheduler, "interface": interface, "site": site, "run_dir": run_dir}
    entry = REGISTRY.get(name)
    if entry is None:
        raise ConfigError(f"--backend: unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    for option in _STRICT:
        if given[option] and option not in entry.takes:
            users = [n for n, e in REGISTRY.items() if option in e.takes]
            raise ConfigError(f"--{option} only goes with --backend {' or '.join(users)}, not {name!r}")
    if entry.needs and not given[entry.needs[0]]:
        raise ConfigError(entry.needs[1])
    module, _, attr = entry.target.partition(":")
    build = getattr(importlib.import_module(module), attr)
    kwargs = {key: convert(given[option]) for option, (key, convert) in entry.takes.items() if given[option] is not None}
    return build(**kwargs)  # type: ignore[no-any-return]


__all__ = ["BACKENDS", "REGISTRY", "Backend", "Entry", "make_backend"]
