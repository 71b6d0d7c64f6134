"""Temporary files of the agents: a fresh private folder of their own, wherever they run.

An agent on a Dask worker that hpwf did not start (``--backend dask``, ``dask-mpi``) lives in a
process whose temporary directory and Dask local directory someone else chose. The agent's
processes (and the trials they run, and anything those start) get ``TMPDIR`` (and Dask's
``temporary-directory``) pointing at a folder the agent makes itself (`private_scratch`):
mode 0700, a new name (never a folder that existed), in a place no other user can move it
from. What hpwf cannot change is the worker's own folder (Dask's spill files, its locks): an
agent says so in one warning line when another user could replace it (`worker_folder_warning`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hpwf.errors import ConfigError
from hpwf.rundir import check_parents


def private_scratch(prefix: str = "hpwf-") -> str:
    """A fresh folder only this user can enter (``mkdtemp``: mode 0700, a new name), in the first of
    the temporary directory (``$TMPDIR``), ``/tmp`` and ``~/.hpwf/tmp`` that no other user can
    write (or that is sticky and ours or root's), so no one can swap it.

    Raises:
        ConfigError: none of them will do.
    """
    home = Path.home() / ".hpwf" / "tmp"
    for base in (Path(tempfile.gettempdir()), Path("/tmp"), home):
        try:
            if base == home:
                base.mkdir(mode=0o700, parents=True, exist_ok=True)
            check_parents(base / "scratch")  # base and every folder above it
            return tempfile.mkdtemp(prefix=prefix, dir=base)
        except (ConfigError, OSError):
            continue
    raise ConfigError(f"no private place for temporary files: {tempfile.gettempdir()}, /tmp and {home} "
                      "can all be written by other users")


def worker_folder_warning() -> str | None:
    """One line when the Dask worker this runs in keeps its own files where another user could
    replace them; ``None`` outside a Dask worker, or when its folder is safe."""
    try:
        from distributed import get_worker

        folder = Path(get_worker().local_directory)
    except (ImportError, ValueError, AttributeError):
        return None
    try:
        check_parents(folder / "x")
    except ConfigError as exc:
        why = str(exc).split(", and so")[0].removeprefix(f"{folder / 'x'}: ")
        return (f"[hpwf] warning: this Dask worker's local directory {folder} is not private ({why}); hpwf's "
                "agents use a private folder of their own, but the worker's files there are beyond hpwf: start "
                "workers with --local-directory in a folder only you can write (README: Security)")
    return None
