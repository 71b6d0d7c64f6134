"""The run directory: ``run.json`` (how the run was started), the study storage, a lock, trial folders."""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import optuna

from hpwf.rundir._perms import atomic_write, open_no_follow
from hpwf.secrets import redact
from hpwf.errors import ConfigError
from hpwf.progress import say

RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
DEFAULT_JOURNAL = "study.journal"


@dataclass
class RunRecord:
    """What ``run.json`` keeps so that ``hpwf resume`` and ``hpwf status`` need only the folder."""

    study_name: str
    storage: str | None  # None: the journal file in the run directory
    workflow: str | None  # absolute path, or None for a workflow given as Python objects
    backend: str = "local"
    options: dict[str, Any] = field(default_factory=dict)  # n_trials, timeout, seed, workers...
    created: float = field(default_factory=time.time)

    def save(self, run_dir: Path) -> None:
        """Write ``run.json`` (a storage URL never holds a password here: `hpwf.secrets`)."""
        _write_json(run_dir / RUN_FILE, asdict(self))

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord:
        path = run_dir / RUN_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{run_dir}: not an hpwf run directory (no {RUN_FILE})") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: unreadable: {exc}") from None
        return cls(**data)


def open_storage(url: str | None, run_dir: Path, read_only: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; ``None`` means a journal file in ``run_dir``.

    ``read_only`` (a reader such as ``hpwf status``): a journal file is read without taking its
    lock, so a reader never waits for (or holds up) the run that writes it.

    Accepted: ``sqlite:///...``, ``postgresql://...`` (any SQLAlchemy URL), ``journal:PATH`` or a
    path ending in ``.journal``/``.log`` (a journal file several processes can share), and
    ``memory`` (in-memory: fast, but nothing survives the process).
    """
    path = journal_path(url, run_dir)
    if path is not None:
        return journal_storage(path, cut=not read_only)
    assert url is not None  # (None is the run's own journal)
    if url == "memory":
        return optuna.storages.InMemoryStorage()
    if "://" not in url:
        raise ConfigError(f"storage {redact(url)!r}: not a storage URL (sqlite:///file.db, postgresql://..., journal:FILE, memory)")
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # SQLAlchemy raises many kinds
        first_line = (str(exc).splitlines() or [""])[0]
        raise ConfigError(redact(f"storage {url!r}: {type(exc).__name__}: {first_line}")) from None


def journal_path(url: str | None, run_dir: Path) -> Path | None:
    """The journal file a storage URL names (``None``: the run's own), or ``None`` for another store."""
    if url is None:
        return run_dir / DEFAULT_JOURNAL
    if url.startswith("journal:"):
        return Path(url.removeprefix("journal:").removeprefix("//"))
    if url.endswith((".journal", ".log")) and "://" not in url:
        return Path(url)
    return None


def journal_storage(path: Path, cut: bool = True) -> optuna.storages.JournalStorage:
    """A journal-file storage that several processes (and nodes) can share safely.

    ``cut``: first cut a torn last record off (under the journal's lock: writers only).
    """
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = JournalFileOpenLock(str(path))
    if cut and path.exists():
        cut_torn_tail(path, lock)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=lock))


def cut_torn_tail(path: Path, lock: Any) -> None:
    """Cut an incomplete last record off a journal file, under the journal's lock.

    A write that failed part-way (a full disk, a quota) leaves a record without its newline.
    Optuna skips it when reading, but the next append would be glued onto it, leaving a broken
    line in the middle that no reader can pass. The writer that failed never saw it stored.
    """
    lock.acquire()
    try:
        with open(path, "rb+") as f:
            end = f.seek(0, os.SEEK_END)
            pos = end
            while pos > 0:
                start = max(0, pos - 65536)
                f.seek(start)
                chunk = f.read(pos - start)
                if pos == end and chunk.endswith(b"\n"):
                    return
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    pos = start + newline + 1
                    break
                pos = start
            f.truncate(pos)
        say(f"hpwf: {path}: cut an incomplete last record ({end - pos} bytes) left by a failed write")
    finally:
        lock.release()


def load_study(run_dir: str | Path, read_only: bool = False) -> optuna.Study:
    """The run's study, as plain Optuna sees it (what optuna-dashboard reads too).

    ``read_only``: for readers (status, report), which take no lock (`open_storage`).
    """
    run_dir = Path(run_dir)
    record = RunRecord.load(run_dir)
    return optuna.load_study(study_name=record.study_name, storage=open_storage(record.storage, run_dir, read_only))


def read_study(run_dir: str | Path) -> optuna.Study:
    """The run's study for a reader (the report): a journal is read whole at once, without its
    lock (`hpwf.rundir._journal_read`); any other store through Optuna (`load_study`)."""
    from hpwf.rundir._journal_read import read_study as read_journal

    run_dir = Path(run_dir)
    record = RunRecord.load(run_dir)
    path = journal_path(record.storage, run_dir)
    study = read_journal(path, record.study_name) if path is not None and path.exists() else None
    return study if study is not None else load_study(run_dir, read_only=True)


def scan_study(run_dir: Path) -> dict[str, Any] | None:
    """`hpwf.rundir._journal_scan.scan` of the run's journal (no lock, no Optuna replay): counts,
    paused trials (marked, or with a durable PAUSED result) and the best trial; ``None`` for
    another store or a study only Optuna can read."""
    from hpwf.rundir._journal_scan import scan
    from hpwf.rundir._trialdir import read_result

    record = RunRecord.load(run_dir)
    path = journal_path(record.storage, run_dir)
    if path is None or not path.exists():
        return None
    found = scan(path, record.study_name)
    if found is None:
        return None
    for number in found["running"]:
        if number not in found["paused"] and number not in found["resumed"]:  # (resumed: its PAUSED result is stale)
            result = read_result(run_dir, number)
            if result and result.get("number") == number and result.get("state") == "PAUSED":
                found["paused"].append(number)
                found["counts"]["running"] -= 1
                found["counts"]["paused"] += 1
    return found


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


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """Atomically replace ``summary.json``."""
    _write_json(run_dir / SUMMARY_FILE, summary)


def read_summary(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: Any) -> None:
    """Replace ``path`` through a fresh temporary file; any URL's password is masked."""
    atomic_write(path, redact(json.dumps(data, indent=1, default=str)) + "\n")
