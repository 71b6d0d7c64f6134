"""The run directory's lock: one live coordinator per run."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from hpwf.errors import ConfigError
from hpwf.rundir._perms import open_no_follow


class RunLock:
    """An exclusive lock on a run directory: one live coordinator per run."""

    def __init__(self, run_dir: Path) -> None:
        self._path = run_dir / ".lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self._file = open_no_follow(self._path)
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            self._file = None
            raise ConfigError(f"{self._path.parent}: already in use by {holder}") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()}")
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
