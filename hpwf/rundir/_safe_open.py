"""Every file of a run directory opened relative to one descriptor of it (``openat``-style).

A process holds its run directory once (`hold_run_dir`: opened with ``O_NOFOLLOW``, checked to
be ours and writable by no one else); from then on each file under it (``run.json``,
``summary.json``, trial folders ``trials/SSS/NNNNN`` and their files, ``results/HOST/PID.jsonl``,
``dashboard.token``, ``pause.pt``) is reached from that descriptor, one component at a time,
each opened with ``O_NOFOLLOW``. So once held:

- a run directory renamed away and replaced (by whoever could write the folder above it) does
  not redirect a single write: they go on into the directory the run began in;
- a symbolic link planted anywhere under it (a folder or a file) is refused (``ELOOP``), never
  followed.

Optuna opens the journal by path, again for each write; it gets ``/proc/self/fd/N/NAME``, a
path that resolves through the held descriptor (Linux; elsewhere the plain path). A path under
no held run directory (a store the user named elsewhere, a run this process never held) is
opened by path, its last component with ``O_NOFOLLOW``.

A held directory that was deleted (a new run made at the same path) is held again, checked
anew; one that was moved away stays held, for the writes of the run. A command that starts
(``run``, ``resume``, ``status``, ...) holds afresh the directory its path names now, checked.

Example:
    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> hold_run_dir(run)
    >>> with open_file(run / "trials" / "000" / "00001" / "log.txt", "w", make_parents=True) as f:
    ...     _ = f.write("hello")
    >>> read_file(run / "trials" / "000" / "00001" / "log.txt")
    b'hello'
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from pathlib import Path
from typing import IO, Any, Iterator

from hpwf.errors import ConfigError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FLAGS = {"r": os.O_RDONLY, "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_APPEND | os.O_CREAT,
          "r+": os.O_RDWR, "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC, "a+": os.O_RDWR | os.O_APPEND | os.O_CREAT}
_MOST_HELD = 64  # a process that met more run directories (a test session) opens the oldest by path again
_held: dict[str, int] = {}  # absolute run directory -> its descriptor, oldest first
_pinned: set[int] = set()  # descriptors a /proc/self/fd path was handed out for: never closed
_lock = threading.Lock()


def _fresh_lock() -> None:
    global _lock
    _lock = threading.Lock()  # a forked child (the snapshot writer) has only the forking thread: not one holding it


os.register_at_fork(after_in_child=_fresh_lock)


def hold_run_dir(run_dir: Path, fresh: bool = False) -> None:
    """Open ``run_dir`` once for this process (again if ``fresh``, or if it was deleted).

    Raises:
        ConfigError: a link, not a directory, someone else's, or writable by others.
    """
    key = os.path.abspath(run_dir)
    with _lock:
        if not fresh and _current(key) is not None:
            return
        try:
            fd = os.open(key, _DIR)
        except OSError as exc:
            problem = "is a symbolic link; hpwf does not follow it" if exc.errno == errno.ELOOP else exc.strerror
            raise ConfigError(f"{run_dir}: {problem}") from None
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            os.close(fd)
            raise ConfigError(f"{run_dir}: not yours alone (uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})")
        _held.pop(key, None)  # (not closed: another thread of this process may be walking from it)
        _held[key] = fd
        while len(_held) > _MOST_HELD:
            _forget(next(k for k, v in _held.items() if v not in _pinned))


def _current(key: str) -> int | None:
    """The held descriptor of ``key`` (``_lock`` held), ``None`` when not held or deleted since."""
    fd = _held.get(key)
    if fd is None:
        return None
    if os.fstat(fd).st_nlink == 0:  # deleted: a new run may stand there now (hold it afresh)
        return None
    return fd  # (renamed away and replaced, the writes still go here: that is the point)


def _forget(key: str) -> None:
    fd = _held.pop(key, None)
    if fd is not None and fd not in _pinned:
        os.close(fd)


def _root_of(path: Path) -> tuple[int, tuple[str, ...]] | None:
    """The held run directory above ``path`` (its descriptor, re-held if deleted) and the rest of the path."""
    absolute = Path(os.path.abspath(path))
    with _lock:
        for above in absolute.parents:
            if str(above) in _held:
                fd = _current(str(above))
                break
        else:
            return None
    if fd is None:
        hold_run_dir(above)
        return _root_of(path)
    return fd, absolute.relative_to(above).parts


@contextlib.contextmanager
def parent_of(path: Path, make: bool = False) -> Iterator[tuple[int, str]]:
    """A descriptor of ``path``'s folder, reached from the held run directory without following a
    link (made, ``make``, where missing), and ``path``'s last name."""
    found = _root_of(path)
    if found is None:  # not under a held run directory: by path
        if make:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(Path(path).parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield fd, Path(path).name
        finally:
            os.close(fd)
        return
    root, parts = found
    if not parts:
        raise IsADirectoryError(errno.EISDIR, "the run directory itself", str(path))
    fd = root
    try:
        for name in parts[:-1]:
            try:
                step = os.open(name, _DIR, dir_fd=fd)
            except FileNotFoundError:
                if not make:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=fd)  # (the run's umask decides)
                step = os.open(name, _DIR, dir_fd=fd)
            if fd != root:
                os.close(fd)
            fd = step
        yield fd, parts[-1]
    finally:
        if fd != root:
            os.close(fd)


def open_fd(path: Path, flags: int, mode: int | None = 0o666, make_parents: bool = False) -> int:
    """``os.open(path, flags | O_NOFOLLOW | O_CLOEXEC, mode)``, reached through `parent_of`;
    ``mode`` None: `new_file_mode` of the folder."""
    with parent_of(path, make_parents) as (folder, name):
        mode = new_file_mode(folder) if mode is None else mode
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=folder)


def new_file_mode(folder: int) -> int:
    """``0640`` in a group-shared folder (``folder``: its descriptor) of this user's, else ``0600``:
    the mode of someone else's folder says nothing about our files."""
    st = os.fstat(folder)
    return 0o640 if st.st_uid == os.geteuid() and st.st_mode & 0o050 == 0o050 else 0o600


def open_file(path: Path, how: str = "r", mode: int = 0o666, make_parents: bool = False, **kwargs: Any) -> IO[Any]:
    """Like ``open(path, how)`` (``how``: r, w, a, r+, w+, a+, each with b or not), through `open_fd`."""
    fd = open_fd(path, _FLAGS[how.replace("b", "")], mode, make_parents)
    return os.fdopen(fd, how, **kwargs)


def read_file(path: Path) -> bytes:
    with open_file(path, "rb") as f:
        return bytes(f.read())


def make_folder(path: Path) -> None:
    """``path.mkdir(parents=True, exist_ok=True)``, each folder made and entered without following a link."""
    with parent_of(path / "_", make=True):
        pass


def is_file(path: Path) -> bool:
    """Whether ``path`` is a regular file, looked up through `parent_of` (a link is not)."""
    try:
        with parent_of(path) as (folder, name):
            return stat.S_ISREG(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return False


def is_dir(path: Path) -> bool:
    try:
        with parent_of(path / "_"):
            return True
    except OSError:
        return False


def store_path(path: Path) -> str:
    """A path for Optuna that resolves through the held run directory (``/proc/self/fd/N/...``),
    so its journal writes follow the run directory as held; the plain path elsewhere."""
    found = _root_of(path)
    if found is None or not os.path.isdir(f"/proc/self/fd/{found[0]}"):
        return str(path)
    with _lock:
        _pinned.add(found[0])
    return os.path.join(f"/proc/self/fd/{found[0]}", *found[1])


def held_folder(folder: Path) -> Path:
    """``folder`` (under a run directory: ``RUN_DIR/agents``) as a path through that run directory
    held by this process (``/proc/self/fd/N/...``; `hold_run_dir` first if no run directory above
    it is held yet), for code below this layer that writes by path (an agent's arrival mark and
    unreachable report): a run directory swapped after it was checked cannot redirect those
    writes. The plain path where the run directory cannot be held (not ours alone, not there)."""
    try:
        if _root_of(folder) is None:
            hold_run_dir(folder.parent)
    except (ConfigError, OSError):
        return folder
    return Path(store_path(folder))

