"""Helpers shared by the benchmarks: paths, timed subprocesses, scratch folders, study spans."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BIN = Path(PY).parent
MPIRUN = str(BIN / "mpirun") if (BIN / "mpirun").exists() else (shutil.which("mpirun") or "mpirun")
HOROVODRUN = str(BIN / "horovodrun") if (BIN / "horovodrun").exists() else (shutil.which("horovodrun") or "horovodrun")
KEEP = os.environ.get("HPWF_BENCH_KEEP") == "1"  # keep the scratch run directories for a look


def env(**extra: str) -> dict[str, str]:
    """The environment for child processes: the repo importable, the venv's tools first on PATH."""
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    pythonpath = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
    return {**os.environ, "PATH": path, "PYTHONPATH": pythonpath, **extra}


@contextlib.contextmanager
def scratch(name: str) -> Iterator[Path]:
    """A fresh folder for one benchmark's run directories, removed afterwards (unless KEEP)."""
    folder = Path(tempfile.mkdtemp(prefix=f"hpwf-bench-{name}-"))
    try:
        yield folder
    finally:
        if KEEP:
            print(f"[bench] kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def timed(command: Sequence[str], *, timeout: float = 600, extra_env: dict[str, str] | None = None,
          cwd: Path = ROOT) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``command``; return its wall time (start to exit) and the finished process.

    Raises RuntimeError with the tail of its output when it fails.
    """
    start = time.perf_counter()
    proc = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=env(**(extra_env or {})), stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n" + "\n".join(tail))
    return wall, proc


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def trial_span(run_dir: Path) -> float:
    """Seconds from the first trial's start (ask) to the last trial's end (tell), from the study."""
    import hpwf

    return span_of(hpwf.load_study(run_dir).get_trials(deepcopy=False))


def span_of(trials: Sequence[Any]) -> float:
    """Seconds from the earliest ``datetime_start`` to the latest ``datetime_complete``."""
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    return float((max(ends) - min(starts)).total_seconds())


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def rnd(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def show(command: Sequence[str], scratch_dir: Path | None = None) -> str:
    """A command as it can be read in RESULTS.md: repo-relative paths, $SCRATCH for the temp folder."""
    text = " ".join(str(c) for c in command)
    if scratch_dir is not None:
        text = text.replace(str(scratch_dir), "$SCRATCH")
    return text.replace(str(ROOT) + "/", "")


NOOP_WORKFLOW = """
import hpwf

search = hpwf.Search(direction="minimize", n_trials={n}, sampler="random", seed=0)


def objective(trial):
    return trial.suggest_float("x", 0, 1) + trial.suggest_float("y", 0, 1) + trial.suggest_float("z", 0, 1)
"""


def open_storage(kind: str, location: str) -> Any:
    """An Optuna storage of ``kind`` (journal, sqlite, memory) at ``location``, as a bare Optuna user opens it."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if kind == "journal":
        return optuna.storages.JournalStorage(JournalFileBackend(location, lock_obj=JournalFileOpenLock(location)))
    if kind == "sqlite":
        return optuna.storages.RDBStorage(location)
    return optuna.storages.InMemoryStorage()
