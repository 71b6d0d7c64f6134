"""Who may read and write a run directory: its owner only by default, or its group when shared.

- A run directory is created ``0700`` (files ``0600``): on a shared login node no one else can
  read the study, the trial folders or ``run.json``. With ``shared_group`` it is ``2750``
  (files ``0640``): the group of the directory it sits in (a project directory) may read,
  never write. The process runs under the matching umask (`run_umask`), so that every file
  the run and its agents create follows.
- Whoever can write ``run.json`` (or the folder holding it) chooses the workflow file that
  ``hpwf resume`` and every Slurm requeue run. `check_trusted` refuses a run directory owned by
  someone else or writable by others (exit 2).
- Files are replaced through a fresh temporary file in the same folder (`atomic_writer`), and
  lock files are opened without following symbolic links, so a planted link cannot redirect a
  write.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "run"
    >>> make_run_dir(folder)
    >>> oct(folder.stat().st_mode & 0o7777)
    '0o700'
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import secrets
import stat
from pathlib import Path
from typing import IO, Iterator

from hpwf.errors import ConfigError
from hpwf.rundir._safe_open import hold_run_dir, new_file_mode, open_fd, parent_of

PRIVATE_UMASK, SHARED_UMASK = 0o077, 0o027
PRIVATE_DIR, SHARED_DIR = 0o700, 0o2750  # setgid: files and folders inside keep the directory's group
RUN_FILE = "run.json"


def is_shared(folder: Path) -> bool:
    """Whether ``folder`` is shared with its group (group may read and enter it). Only a folder
    of this user's counts: the mode of someone else's folder says nothing about our files."""
    try:
        st = folder.stat()
    except OSError:
        return False
    return st.st_uid == os.geteuid() and st.st_mode & 0o050 == 0o050


@contextlib.contextmanager
def run_umask(shared: bool = False) -> Iterator[None]:
    """Run the body under umask ``077`` (``027`` when ``shared``); the old umask comes back after.

    Processes started meanwhile (Dask workers, MPI ranks, launched groups) keep it.
    """
    old = os.umask(SHARED_UMASK if shared else PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def make_run_dir(folder: Path, shared: bool = False) -> None:
    """Create the run directory ``0700`` (``2750`` with ``shared``); an existing one must be trusted.

    A shared directory takes the group of the folder it is created in, when the user is a
    member of it (a project directory).

    Raises:
        ConfigError: it cannot be created, or it exists and is someone else's or writable by others.
    """
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        check_parents(folder)
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            check_trusted(folder)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:  # the folder we made (or checked), through one descriptor: a swap in between is seen
            st = os.fstat(fd)
            if st.st_uid != os.geteuid():
                raise ConfigError(f"--run-dir {folder}: replaced by {_user(st.st_uid)}'s folder while it was made")
            if shared:  # the project directory's group, where the system lets us (a member, or root)
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, -1, folder.parent.stat().st_gid)
            os.fchmod(fd, SHARED_DIR if shared else PRIVATE_DIR)
        finally:
            os.close(fd)
        hold_run_dir(folder, fresh=True)  # every file of the run from here on: `hpwf.rundir._safe_open`
    except OSError as exc:
        problem = "is a symbolic link; hpwf does not follow it" if exc.errno == errno.ELOOP else exc.strerror or exc
        raise ConfigError(f"--run-dir {folder}: cannot create: {problem}") from None


def check_parents(folder: Path) -> None:
    """Refuse a run directory inside a folder (or a folder above it) another user can write:
    whoever can write the folder can swap the run directory for one of her own. A sticky folder
    of this user's or root's (``/tmp``) is fine: there no one can move another's entries.

    Raises:
        ConfigError: ``"<folder>: <who> can write <ancestor> ..."``.
    """
    ancestor = Path(os.path.realpath(folder.parent))
    for place in (ancestor, *ancestor.parents):
        try:
            st = place.stat()
        except OSError:
            continue
        others = st.st_uid not in (os.geteuid(), 0) or st.st_mode & 0o022
        if not others or (st.st_mode & stat.S_ISVTX and st.st_uid in (os.geteuid(), 0)):
            continue
        who = (f"{_user(st.st_uid)}" if st.st_uid not in (os.geteuid(), 0)
               else "anyone" if st.st_mode & 0o002 else "its group")
        raise ConfigError(f"{folder}: {who} can write {place} (mode {stat.S_IMODE(st.st_mode):04o}), and so swap "
                          "the run directory for one of their own; put the run in a folder only you can write")


def check_trusted(path: Path) -> None:
    """Refuse ``path`` unless this user owns it and no one else can write it.

    Raises:
        ConfigError: ``"<path>: owned by <user> ..."`` or ``"<path>: others can write it ..."``.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{path}: cannot check who may write it: {exc.strerror or exc}") from None
    why = "whoever can write a run directory chooses the code that `hpwf resume` (and a requeued job) runs"
    if st.st_uid != os.geteuid():
        raise ConfigError(f"{path}: owned by {_user(st.st_uid)}, not by you; {why}: copy the run into a "
                          "folder of your own")
    if st.st_mode & 0o022:
        who = "anyone" if st.st_mode & 0o002 else "its group"
        raise ConfigError(f"{path}: {who} can write it (mode {stat.S_IMODE(st.st_mode):04o}); {why}: check it, "
                          f"then `chmod go-w {path}`")


def check_run_trusted(run_dir: Path) -> None:
    """`check_trusted` on a run directory, its ``run.json`` and its ensemble sub-run's, and
    `check_parents` on the folders above it."""
    check_parents(run_dir)
    for path in (run_dir, run_dir / RUN_FILE, run_dir / "ensemble", run_dir / "ensemble" / RUN_FILE):
        check_trusted(path)
    if run_dir.is_dir():  # the one the path names now (checked just above), not one held before
        hold_run_dir(run_dir, fresh=True)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int | None = None) -> Iterator[IO[bytes]]:
    """A binary file that replaces ``path`` when the block ends without an error.

    It is a fresh file (a new random name, ``O_EXCL``) in the same folder, reached through the
    run directory's descriptor (`hpwf.rundir._safe_open`), made ``mode`` (default: ``0600``, or
    ``0640`` in a group-shared folder of ours), so a link planted at a fixed ``.tmp`` name, or a
    folder swapped on the way, cannot redirect the write.
    """
    with parent_of(path) as (folder, name):
        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder)
        try:
            os.fchmod(fd, new_file_mode(folder) if mode is None else mode)
            with os.fdopen(fd, "wb") as f:
                yield f
            os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
            raise


def atomic_write(path: Path, data: str | bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` (text is UTF-8) through `atomic_writer`."""
    with atomic_writer(path, mode) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def open_no_follow(path: Path) -> IO[str]:
    """Open (create ``0600``) a file for reading and writing; a symbolic link there is refused.

    Raises:
        ConfigError: ``path`` is a symbolic link (or cannot be opened).
    """
    try:
        fd = open_fd(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        problem = "is a symbolic link; hpwf does not follow it" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
        raise ConfigError(f"{path}: {problem}") from None
    return os.fdopen(fd, "r+")


def read_private(path: Path) -> bytes:
    """The bytes of a file of this user's that no one else can write, read through one descriptor
    opened without following a symbolic link (a checkpoint to load, say), reached through the run
    directory's descriptor where the run directory is held.

    Raises:
        ConfigError: a link, not a regular file, someone else's, or writable by others.
    """
    try:
        fd = open_fd(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        problem = "is a symbolic link; hpwf does not follow it" if exc.errno == errno.ELOOP else exc.strerror or exc
        raise ConfigError(f"{path}: {problem}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: not a regular file")
        if st.st_uid != os.geteuid():
            raise ConfigError(f"{path}: owned by {_user(st.st_uid)}, not by you; not loaded")
        if st.st_mode & 0o022:
            raise ConfigError(f"{path}: others can write it (mode {stat.S_IMODE(st.st_mode):04o}); not loaded")
        return f.read()


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
