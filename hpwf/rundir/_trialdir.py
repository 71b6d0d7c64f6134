"""A trial's folder and its durable result.

Trial folders are sharded, ``RUN_DIR/trials/SSS/NNNNN`` with ``SSS = NNNNN // 1000``, so no
directory holds more than 1,000 entries; a run written before (``RUN_DIR/trials/NNNNN``) keeps
its folders where they are (`trial_folder` finds them). A folder is made only when something
is written into it: the trial's own files (``trial.folder``), its printed output (``log.txt``;
other ranks ``log.rankR.txt``), named metrics (``metrics.csv``), ``traceback.txt`` (a failed
trial), ``launch.log`` (a launched group's ``mpirun`` output), ``failure.txt`` (the
coordinator's reason for a failure it decided). A trial that writes nothing creates no file.

The outcome of every trial is durable *before* the coordinator hears of it, so a result
survives the coordinator (a resume tells it instead of training the trial again): each agent
process appends one JSON line per trial to its own results log,
``RUN_DIR/results/HOST/PID.jsonl`` (one file per agent process, not per trial). A trial that
has a folder also gets ``params.json`` and ``result.json`` there, as before.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from hpwf.rundir._perms import atomic_writer
from hpwf.rundir._safe_open import is_dir, open_fd, open_file, read_file
from hpwf.wire import to_json

RESULT = "result.json"
PARAMS = "params.json"
TRACEBACK = "traceback.txt"
FAILURE = "failure.txt"
LAUNCH_LOG = "launch.log"
METRICS = "metrics.csv"
RESULTS_DIR = "results"
SHARD = 1000  # trial folders per directory


def trial_folder(run_dir: Path, number: int) -> Path:
    """Where trial ``number`` keeps its files: ``trials/SSS/NNNNN`` (or ``trials/NNNNN`` in a run
    written by an older hpwf, when that folder exists). Nothing is created here."""
    if _old_layout(run_dir):
        old = run_dir / "trials" / f"{number:05d}"
        if is_dir(old):
            return old
    return run_dir / "trials" / f"{number // SHARD:03d}" / f"{number:05d}"


_OLD: dict[Path, bool] = {}


def _old_layout(run_dir: Path) -> bool:
    """Whether ``run_dir/trials`` holds folders of the unsharded layout (looked at once per process)."""
    if run_dir not in _OLD:
        try:
            with os.scandir(run_dir / "trials") as entries:
                _OLD[run_dir] = any(len(e.name) > 3 for e in entries)
        except OSError:
            return False  # no trial folder yet: a run written now never gets old-layout folders
    return _OLD[run_dir]


def trial_folders(run_dir: Path) -> list[Path]:
    """Every trial folder that exists, in both layouts (for tools and tests)."""
    root = run_dir / "trials"
    if not root.is_dir():
        return []
    out = []
    for entry in root.iterdir():
        if len(entry.name) == 3 and entry.name.isdigit():
            out += [p for p in entry.iterdir() if p.is_dir()]
        elif entry.is_dir():
            out.append(entry)
    return sorted(out, key=lambda p: int(p.name))


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` through a fresh temporary file (`hpwf.rundir._perms.atomic_writer`).

    Written and closed by the agent's own process, the file outlives the coordinator, its
    process or its node (a shared file system has it once it is closed); no ``fsync``, which
    would cost every trial a disk flush.
    """
    with atomic_writer(path) as f:
        f.write(text.encode("utf-8"))


class ResultsLog:
    """One agent process's append-only results log, ``RUN_DIR/results/HOST/PID.jsonl``.

    Each record is one ``write`` of one line on a file opened ``O_APPEND``; the file is created
    at the first result (not per trial). A torn last line (a process killed mid-write) is
    ended before the next record, and readers skip it.
    """

    def __init__(self, run_dir: Path) -> None:
        host = socket.gethostname().split(".")[0] or "host"
        self.path = run_dir / RESULTS_DIR / host / f"{os.getpid()}.jsonl"
        self._fd: int | None = None

    def append(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            self._fd = open_fd(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, None, make_parents=True)
            size = os.fstat(self._fd).st_size
            if size and os.pread(self._fd, 1, size - 1) != b"\n":
                os.write(self._fd, b"\n")
        os.write(self._fd, (json.dumps(record, default=str, separators=(",", ":")) + "\n").encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_LOGS: dict[tuple[Path, int], ResultsLog] = {}


def close_results_logs(under: Path) -> None:
    """Close this process's results logs of the runs at or below ``under`` (done with them)."""
    for key in [k for k in _LOGS if k[0] == under or under in k[0].parents]:
        _LOGS.pop(key).close()


def results_log(run_dir: Path) -> ResultsLog:
    """This process's results log for ``run_dir`` (opened once per process)."""
    key = (run_dir, os.getpid())
    if key not in _LOGS:
        _LOGS[key] = ResultsLog(run_dir)
    return _LOGS[key]


def write_result(run_dir: Path, number: int, state: str, values: list[float] | None,
                 params: dict[str, Any], duration: float, distributions: dict[str, Any] | None = None,
                 metrics: list[dict[str, Any]] | None = None) -> None:
    """The trial's outcome (``state``: COMPLETE, PRUNED, PAUSED or FAIL), durable before it is reported.

    Appended to this process's results log; also ``result.json`` (and ``params.json``) in the
    trial's folder when the trial has one. ``distributions`` (`hpwf.wire._dists` tuples) are
    kept as Optuna's JSON so a resume can record the parameters; ``metrics``: the rows of a
    ``metrics.csv`` the trial had no folder for (its reports' steps, values and times).
    """
    record: dict[str, Any] = {"number": number, "state": state, "values": values, "params": params,
                              "duration_s": round(duration, 3), "at": time.time()}
    if distributions:
        record["distributions"] = {k: to_json(d) for k, d in distributions.items()}
    if metrics:
        record["metrics"] = metrics
    results_log(run_dir).append(record)
    folder = trial_folder(run_dir, number)
    if is_dir(folder):
        write_atomically(folder / PARAMS, json.dumps(params, indent=1, default=str))
        write_atomically(folder / RESULT, json.dumps(record, indent=1, default=str) + "\n")


def read_result(run_dir: Path, number: int) -> dict[str, Any] | None:
    """Trial ``number``'s durable outcome (COMPLETE, PRUNED, FAIL, or PAUSED: its checkpoint is saved
    and a scheduler resumes it) from its folder's ``result.json``, else the last record for it in the
    results logs; ``None`` when it has none."""
    folder = trial_folder(run_dir, number)
    try:
        data = json.loads(read_file(folder / RESULT))
    except (OSError, ValueError):
        data = durable_results(run_dir).get(number)
    ok = isinstance(data, dict) and data.get("state") in ("COMPLETE", "PRUNED", "FAIL", "PAUSED")
    return data if ok else None


class _Index:
    """What `durable_results` read of a run's results logs: how far into each, and the records."""

    def __init__(self) -> None:
        self.read_to: dict[str, int] = {}  # log -> bytes read (up to its last complete line)
        self.found: dict[int, dict[str, Any]] = {}


_INDEX: dict[Path, _Index] = {}


def durable_results(run_dir: Path) -> dict[int, dict[str, Any]]:
    """Every trial's last record in the run's results logs: number -> record. Only what the logs
    gained since the last call is read (a failure's check costs its new lines, not the run's)."""
    root = run_dir / RESULTS_DIR
    files = sorted(root.glob("*/*.jsonl")) if root.is_dir() else []
    sizes = {str(p): p.stat().st_size for p in files}
    index = _INDEX.get(run_dir)
    if index is None or any(sizes.get(p, -1) < n for p, n in index.read_to.items()):
        index = _INDEX[run_dir] = _Index()  # a log shrank or went: read them all again
    found = index.found
    for path in files:
        start = index.read_to.get(str(path), 0)
        if sizes[str(path)] == start:
            continue
        with open_file(path, "rb") as f:
            f.seek(start)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written is read once it is whole
        for line in data[:end].splitlines():
            try:
                record = json.loads(line)
                number = int(record["number"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn line
            if number not in found or record.get("at", 0) >= found[number].get("at", 0):
                found[number] = record  # the latest attempt (a paused trial resumes under its number)
        index.read_to[str(path)] = start + end
    return found
