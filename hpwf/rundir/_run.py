"""The run directory: ``run.json`` (how the run was started), the study storage, ``summary.json``
(its lock: `hpwf.rundir._lock`)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpwf.errors import ConfigError
from hpwf.progress import say
from hpwf.rundir._perms import RUN_FILE, atomic_write
from hpwf.rundir._safe_open import is_file, make_folder, open_file, read_file, store_path
from hpwf.secrets import redact

if TYPE_CHECKING:
    import optuna

SUMMARY_FILE = "summary.json"
DEFAULT_JOURNAL = "study.journal"
SNAPSHOT_SHARE = 0.5  # a reader opens a journal from its snapshot when this share of it is covered


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
            data = json.loads(read_file(path))
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
    ``memory`` (in-memory: fast, but nothing survives the process). ``read_only``: a journal is
    read without ever taking (or breaking) its writers' lock, e.g. by `hpwf status` of a live run.
    """
    import optuna

    path = journal_path(url, run_dir)
    if path is not None:
        return journal_storage(path, read_only)
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


def journal_storage(path: Path, read_only: bool = False) -> optuna.storages.JournalStorage:
    """A journal-file storage that several processes (and nodes) can share safely.

    Optuna reads a journal without its lock; ``read_only`` also never writes, so it never
    takes the lock (a write raises `ReadOnlyJournal`).
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    from hpwf.rundir._snapshot import open_journal

    if read_only:
        if not is_file(path):
            raise ConfigError(f"{path}: no such journal")
        return open_journal(path, JournalFileBackend(store_path(path), lock_obj=_no_lock()))
    make_folder(path.parent)
    lock = JournalFileOpenLock(store_path(path))  # (through the held run directory: `_safe_open`)
    if is_file(path):
        cut_torn_tail(path, lock)
    return open_journal(path, JournalFileBackend(store_path(path), lock_obj=lock))


class ReadOnlyJournal(RuntimeError):
    """A write to a journal opened read-only."""


def _no_lock() -> Any:
    """The lock of a read-only journal: taking it is a bug (a reader never writes)."""
    from optuna.storages.journal._file import BaseJournalFileLock

    class NoLock(BaseJournalFileLock):
        def acquire(self) -> bool:
            raise ReadOnlyJournal("this journal is open read-only (hpwf status): no write, so no lock")

        def release(self) -> None:
            pass

    return NoLock()


def cut_torn_tail(path: Path, lock: Any) -> None:
    """Cut an incomplete last record off a journal file, under the journal's lock.

    A write that failed part-way (a full disk, a quota) leaves a record without its newline.
    Optuna skips it when reading, but the next append would be glued onto it, leaving a broken
    line in the middle that no reader can pass. The writer that failed never saw it stored.
    """
    lock.acquire()
    try:
        with open_file(path, "rb+") as f:
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

    ``read_only``: never take the journal's lock (safe beside a live run; see `journal_storage`).
    """
    import optuna

    run_dir = Path(run_dir)
    record = RunRecord.load(run_dir)
    return optuna.load_study(study_name=record.study_name, storage=open_storage(record.storage, run_dir, read_only))


def check_run_store(run_dir: Path, storage: str | None = None, root: Path | None = None) -> tuple[RunRecord, str | None]:
    """The run's record and store URL for a command that only reads (``status``, ``report``,
    ``dashboard``), checked before anything is opened.

    The run directory must pass `check_run_trusted` (as for ``resume``). A store file named by
    ``run.json`` (journal, SQLite) is opened only inside the run directory (``root``, for a
    sub-run: the run above it) and only if it exists; ``storage`` (given on the command line by
    the user) opens any store. No store is created.

    Raises:
        ConfigError: one line: an untrusted run directory, a store outside it, a missing store.
    """
    from hpwf.rundir._perms import check_run_trusted

    check_run_trusted(run_dir)
    record = RunRecord.load(run_dir)
    url = storage or record.storage
    if url == "memory":
        raise ConfigError(f"{run_dir}: the run kept its study in memory; nothing is left to show")
    path = store_file(url, run_dir)
    if path is not None:
        inside = Path(os.path.realpath(root or run_dir))
        if storage is None and inside not in Path(os.path.realpath(path)).parents:
            raise ConfigError(f"{run_dir / RUN_FILE}: names a store outside the run directory ({redact(str(url))}); "
                              f"if it is yours, pass --storage {redact(str(url))}")
        if not path.is_file():
            raise ConfigError(f"{run_dir}: no study store at {path}")
    return record, url


def open_run_store(run_dir: Path, storage: str | None = None, root: Path | None = None,
                   read_only: bool = True) -> tuple[RunRecord, optuna.storages.BaseStorage]:
    """`check_run_store`, then the store, opened ``read_only`` by default: a reader never takes
    nor breaks a live run's journal lock (a torn last record is skipped, the next writer cuts it)."""
    record, url = check_run_store(run_dir, storage, root)
    return record, open_storage(url, run_dir, read_only=read_only)


def store_file(url: str | None, run_dir: Path) -> Path | None:
    """The file a storage URL keeps its study in (journal, SQLite), or None (a database server)."""
    journal = journal_path(url, run_dir)
    if journal is not None or url is None:
        return journal
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///").split("?", 1)[0] or ":memory:")
    return None


def open_run_study(run_dir: Path, storage: str | None = None, root: Path | None = None) -> optuna.Study:
    """The run's study through `open_run_store`; a study no longer in the store is one line too."""
    import optuna

    record, store = open_run_store(run_dir, storage, root)
    try:
        return optuna.load_study(study_name=record.study_name, storage=store)
    except KeyError:
        raise ConfigError(f"{run_dir}: study {record.study_name!r} is not in its store (deleted?)") from None


def read_study(run_dir: str | Path) -> optuna.Study:
    """The run's study for a reader (the report), without the journal's lock: from the replay
    snapshot and the journal's tail where a snapshot covers most of it (unpickling is several
    times faster than decoding the records), else the journal read whole at once
    (`hpwf.rundir._journal_read`); any other store through Optuna (`load_study`)."""
    from hpwf.rundir._journal_read import read_study as read_journal
    from hpwf.rundir._snapshot import snapshot_share

    run_dir = Path(run_dir)
    record = RunRecord.load(run_dir)
    path = journal_path(record.storage, run_dir)
    if path is not None and is_file(path) and snapshot_share(path) >= SNAPSHOT_SHARE:
        path = None  # Optuna's load, restored from the snapshot
    study = read_journal(path, record.study_name) if path is not None and is_file(path) else None
    if study is not None:
        return study
    try:
        return load_study(run_dir, read_only=True)
    except KeyError:
        raise ConfigError(f"{run_dir}: study {record.study_name!r} is not in its store (deleted?)") from None


def scan_study(run_dir: Path) -> dict[str, Any] | None:
    """`hpwf.rundir._journal_scan.scan` of the run's journal (no lock, no Optuna replay): counts,
    paused trials (marked, or with a durable PAUSED result) and the best trial; ``None`` for
    another store or a study only Optuna can read."""
    from hpwf.rundir._journal_scan import scan
    from hpwf.rundir._trialdir import read_result

    record = RunRecord.load(run_dir)
    path = journal_path(record.storage, run_dir)
    if path is None or not is_file(path):
        return None
    found = scan(path, record.study_name)  # (``None`` for PBT: its best is among its final segments)
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


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """Atomically replace ``summary.json``."""
    _write_json(run_dir / SUMMARY_FILE, summary)


def read_summary(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads(read_file(run_dir / SUMMARY_FILE))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: Any) -> None:
    """Replace ``path`` through a fresh temporary file; any URL's password is masked."""
    atomic_write(path, redact(json.dumps(data, indent=1, default=str)) + "\n")
