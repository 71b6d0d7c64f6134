"""A trial's folder, ``RUN_DIR/trials/NNNNN``: its file names and who writes each one.

Written by the trial's agent (rank 0 unless named): ``params.json``, ``log.txt`` (other ranks:
``log.rankR.txt``), ``metrics.csv``, ``traceback.txt`` (a failed trial), ``launch.log`` (a
launched group's ``mpirun`` output) and, last, ``result.json``: the trial's outcome, written
atomically *before* the coordinator hears of it, so a result survives the coordinator (a resume
tells it instead of training the trial again). Written by the coordinator: ``failure.txt``, the
reason for a failure it decided (a lost rank, a timeout, an interrupted run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hpwf.rundir._perms import atomic_writer
from hpwf.wire import to_json

RESULT = "result.json"
PARAMS = "params.json"
TRACEBACK = "traceback.txt"
FAILURE = "failure.txt"
LAUNCH_LOG = "launch.log"
METRICS = "metrics.csv"


def trial_folder(run_dir: Path, number: int) -> Path:
    """Where trial ``number`` keeps its params, log, metrics and result."""
    return run_dir / "trials" / f"{number:05d}"


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` through a fresh temporary file (`hpwf.rundir._perms.atomic_writer`).

    Written and closed by the agent's own process, the file outlives the coordinator, its
    process or its node (a shared file system has it once it is closed); no ``fsync``, which
    would cost every trial a disk flush.
    """
    with atomic_writer(path) as f:
        f.write(text.encode("utf-8"))


def write_result(folder: Path, number: int, state: str, values: list[float] | None,
                 params: dict[str, Any], duration: float, distributions: dict[str, Any] | None = None) -> None:
    """The trial's outcome (``state``: COMPLETE, PRUNED or FAIL), durable before it is reported.

    ``distributions`` (`hpwf.wire._dists` tuples) are kept as Optuna's JSON so a resume can record
    the parameters.
    """
    record: dict[str, Any] = {"number": number, "state": state, "values": values, "params": params,
                              "duration_s": round(duration, 3)}
    if distributions:
        record["distributions"] = {k: to_json(d) for k, d in distributions.items()}
    write_atomically(folder / RESULT, json.dumps(record, indent=1, default=str) + "\n")


def read_result(folder: Path) -> dict[str, Any] | None:
    """A trial's durable outcome (COMPLETE, PRUNED, FAIL, or PAUSED: its checkpoint is saved and a
    scheduler resumes it), or ``None`` when it has none (or it is unreadable)."""
    try:
        data = json.loads((folder / RESULT).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("state") in ("COMPLETE", "PRUNED", "FAIL", "PAUSED") else None

