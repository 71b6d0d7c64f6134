"""Backends: where agents run. Each fills the small contract in `_base.Backend`."""

from __future__ import annotations

from hpwf.backends._base import Backend
from hpwf.errors import ConfigError

BACKENDS = ("local", "mpi")


def make_backend(name: str, *, workers: int | None = None) -> Backend:
    """The backend called ``name`` on the command line."""
    if name == "local":
        from hpwf.backends.local import LocalBackend

        return LocalBackend(workers=workers)
    if name == "mpi":
        from hpwf.backends.mpi import MPIBackend

        return MPIBackend()
    raise ConfigError(f"--backend: unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")


__all__ = ["Backend", "BACKENDS", "make_backend"]
