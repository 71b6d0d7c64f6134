"""A snapshot of Optuna's journal replay, so that opening a large journal skips most of it.

Opening a journal replays every record into trial objects (about 10 s at 10^5 trials). Optuna
has a snapshot mechanism for this (`optuna.storages.journal.BaseJournalSnapshot`: a pickled
replay result, then only the records after it are replayed), but it pickles the whole replay
every 100 trials a process creates, O(n^2) over a run, and only its Redis backend has one.
Here the coordinator saves one snapshot when a phase ends (`save_snapshot`), beside the
journal (``<journal>.snapshot``, written atomically), with the record number and byte offset it
covers and a hash of the bytes just before that offset. `open_journal` restores it through
Optuna's own restore path when it still describes the journal's beginning (same bytes there,
same Optuna version, a file only this user could have written), and replays the records after
it; anything else falls back to the full replay. The journal stays the only record of the
study: a missing, stale or broken snapshot only costs the time of a full replay.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import pickle
import signal
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from hpwf.progress import say
from hpwf.rundir._perms import atomic_writer
from hpwf.rundir._safe_open import open_fd, open_file

if TYPE_CHECKING:  # (Optuna is imported where used: importing `hpwf.rundir` stays light)
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from hpwf.rundir._journal_store import RunJournal

_TAIL = 4096  # bytes before the covered offset whose hash must match


def snapshot_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".snapshot")


def open_journal(path: Path, backend: JournalFileBackend) -> RunJournal:
    """A `RunJournal` of ``backend`` (the file at ``path``), restored from its snapshot where
    one is valid. The storage keeps ``backend`` itself, never asked for snapshots after."""
    from hpwf.rundir._journal_store import RunJournal

    with _no_gc():  # 10^5 trial objects made at once: the cyclic collector would run over them again and again
        snapshot = _valid_snapshot(path)
        if snapshot is None:
            return RunJournal(backend, path)
        log_number, offset, pickled = snapshot
        backend._log_number_offset[log_number] = offset  # read on from there, not from the start
        try:
            storage = RunJournal(_restoring(backend, pickled), path, log_number)
        except Exception:  # noqa: BLE001 - a snapshot Optuna cannot restore: the full replay
            return RunJournal(backend, path)
    storage._backend = backend  # Optuna pickles its replay every 100 trials for a snapshot backend
    return storage


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector off (reference counting still frees) while the replay's
    objects are made; back as it was after, with the objects made so far frozen (`gc.freeze`:
    they live as long as the store, and later collections need not walk them)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.freeze()
            gc.enable()


def save_snapshot(storage: Any, path: Path) -> bool:
    """Write the snapshot of ``storage`` (a `JournalStorage` of the journal at ``path``); False
    where it cannot (another storage, a record not yet read)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from hpwf.rundir._journal_store import RunJournal

    if not isinstance(storage, optuna.storages.JournalStorage) or not isinstance(storage._backend, JournalFileBackend):
        return False
    with storage._thread_lock:
        storage._sync_with_backend()
        log_number = storage._replay_result.log_number_read
        offset = storage._backend._log_number_offset.get(log_number)
        if offset is None:
            return False
        pickled = pickle.dumps(storage._replay_result, protocol=pickle.HIGHEST_PROTOCOL)
    if isinstance(storage, RunJournal):
        storage.snapshot_records = log_number
    header = {"format": 1, "optuna": optuna.__version__, "log_number": log_number, "offset": offset,
              "tail_sha256": _tail_hash(path, offset)}
    with atomic_writer(snapshot_path(path), 0o600) as f:  # (through the held run directory)
        f.write(json.dumps(header).encode() + b"\n")
        f.write(pickled)
        f.flush()
        os.fsync(f.fileno())
    return True


def save_journal_snapshot(study: optuna.Study, path: Path | None) -> None:
    """`save_snapshot` of ``study``'s store where it is the journal at ``path`` (``None``:
    another store); a failed write only says so (the journal is whole)."""
    if path is not None:
        try:
            save_snapshot(study._storage, path)
        except OSError as exc:
            say(f"hpwf: {path}: no replay snapshot ({exc.strerror or exc}); the next open replays the journal")


class SnapshotKeeper:
    """Keeps a running journal's snapshot fresh, so that a coordinator killed mid-run resumes by
    replaying only the journal's tail.

    `tick` (from the coordinator's housekeeping) starts a new snapshot once the journal holds
    `GROWTH` more records than the last one covers (and at least `MIN_RECORDS` more): a forked
    child pickles the replay and writes it (`save_snapshot`), while the coordinator pays only
    the fork (milliseconds at 10^5 trials, against about a second of pickling). Over a run the
    children pickle about 1/GROWTH + 1 times the final replay; a killed coordinator's resume
    replays at most about GROWTH of the journal. One child at a time; `close` waits for it.
    Where a fork is not safe (no ``os.fork``, or MPI initialised in this process) nothing is
    kept during the run (the snapshot at the phase's end still is)."""

    GROWTH = 0.1
    MIN_RECORDS = 10_000
    CLOSE_S = 120.0

    def __init__(self, storage: Any) -> None:
        from hpwf.rundir._journal_store import RunJournal

        safe = hasattr(os, "fork") and "mpi4py.MPI" not in sys.modules
        self.storage = storage if isinstance(storage, RunJournal) and storage.path is not None and safe else None
        self.child: int | None = None
        self.written = 0  # snapshots the children wrote

    def tick(self) -> None:
        if self.child is not None and not self._reaped(os.WNOHANG):
            return
        storage = self.storage
        if storage is None:
            return
        covered, records = storage.snapshot_records, storage.records
        if records - covered >= max(self.MIN_RECORDS, self.GROWTH * covered):
            storage.snapshot_records = records
            self.child = self._fork(storage)

    def close(self) -> None:
        """Wait for the child writing a snapshot (at most `CLOSE_S`; then it is killed: a
        snapshot half written is never renamed into place)."""
        deadline = time.monotonic() + self.CLOSE_S
        while self.child is not None and not self._reaped(os.WNOHANG):
            if time.monotonic() > deadline:
                os.kill(self.child, signal.SIGKILL)
                self._reaped(0)
                break
            time.sleep(0.01)

    def _reaped(self, flags: int) -> bool:
        assert self.child is not None
        pid, status = os.waitpid(self.child, flags)
        if pid == 0:
            return False
        self.child = None
        self.written += os.waitstatus_to_exitcode(status) == 0
        return True

    def _fork(self, storage: RunJournal) -> int:
        with storage._thread_lock:  # the replay is copied between two of its updates
            pid = os.fork()
        if pid == 0:  # the child: write the snapshot and leave at once (no atexit, no flush of the parent's buffers)
            code = 1
            try:
                code = 0 if storage.path is not None and save_snapshot(storage, storage.path) else 1
            finally:
                os._exit(code)
        return pid


def snapshot_share(path: Path) -> float:
    """The share of the journal at ``path`` (its bytes) that a valid snapshot covers; 0.0 for none
    (the pickle itself is not read)."""
    found = _valid_snapshot(path, pickled=False)
    if found is None:
        return 0.0
    size = _owner_and_size(path)[1]
    return found[1] / size if size else 1.0


def _valid_snapshot(path: Path, pickled: bool = True) -> tuple[int, int, bytes] | None:
    """(record number, byte offset, pickled replay: unless ``pickled`` is false) of the snapshot
    beside ``path`` if it still describes the journal's beginning and only this user could have
    written it; else ``None``."""
    import optuna

    try:
        journal_uid, journal_size = _owner_and_size(path)
        fd = open_fd(snapshot_path(path), os.O_RDONLY)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or \
                journal_uid != os.getuid():
            return None  # a pickle is code: only one of our own
        try:
            header = json.loads(f.readline())
            log_number, offset = int(header["log_number"]), int(header["offset"])
        except (ValueError, KeyError, TypeError):
            return None
        if header.get("format") != 1 or header.get("optuna") != optuna.__version__ or \
                journal_size < offset or header.get("tail_sha256") != _tail_hash(path, offset):
            return None
        return log_number, offset, f.read() if pickled else b""


def _owner_and_size(path: Path) -> tuple[int, int]:
    fd = open_fd(path, os.O_RDONLY)
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    return info.st_uid, info.st_size


def _tail_hash(path: Path, offset: int) -> str:
    with open_file(path, "rb") as f:
        f.seek(max(0, offset - _TAIL))
        tail = f.read(offset - max(0, offset - _TAIL))
    return hashlib.sha256(tail).hexdigest() if tail.endswith(b"\n") or offset == 0 else "torn"


def _restoring(backend: JournalFileBackend, pickled: bytes) -> Any:
    """``backend`` with one snapshot to give, for `JournalStorage.__init__` only."""
    from optuna.storages.journal import BaseJournalBackend
    from optuna.storages.journal._base import BaseJournalSnapshot

    class Restoring(BaseJournalBackend, BaseJournalSnapshot):
        def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
            return iter(backend.read_logs(log_number_from))

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            backend.append_logs(logs)

        def save_snapshot(self, snapshot: bytes) -> None:
            pass

        def load_snapshot(self) -> bytes | None:
            return pickled

    return Restoring()
