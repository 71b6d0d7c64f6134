"""The command line behind a pipe whose reader leaves early (``hpwf status RUN | head -1``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna

from hpwf.rundir._run import RunRecord, open_storage

ROOT = Path(__file__).resolve().parents[1]
PARAMS = 20000  # the status text lists the best params: ~300 kB, far more than a pipe (64 kB) and a reader's buffer hold


def a_run_with_a_long_status(run_dir: Path) -> None:
    run_dir.mkdir(mode=0o700)
    RunRecord(study_name="pipe", storage=None, workflow=None, options={"n_trials": 1}).save(run_dir)
    study = optuna.create_study(study_name="pipe", storage=open_storage(None, run_dir))
    names = [f"p{i:05d}" for i in range(PARAMS)]
    study.add_trial(optuna.trial.create_trial(
        params=dict.fromkeys(names, 0.5), distributions=dict.fromkeys(names, optuna.distributions.FloatDistribution(0, 1)),
        value=1.0))


def test_status_into_a_pipe_closed_after_the_first_line_ends_quietly(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    a_run_with_a_long_status(run_dir)
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "hpwf", "status", str(run_dir)], stdout=write_end,
                            stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        first = reader.readline()
    # the reader is gone while hpwf still has most of its output to write
    stderr = proc.communicate(timeout=120)[1].decode()
    assert first.startswith(b"study      pipe"), first
    assert stderr == "", stderr  # no BrokenPipeError traceback, no "Exception ignored" at exit
    assert proc.returncode == 128 + 13, proc.returncode  # as a Unix tool killed by SIGPIPE reports it
