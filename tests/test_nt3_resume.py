"""workflows/nt3_cnn.py pauses and resumes a 2-rank Horovod trial under a real mpirun (asha-resume).

tests/test_resume_schedulers.py covers 2-rank pause/resume with a tiny linear model; this runs the
shipped NT3 objective itself (Adam under Horovod's optimizer, dropout, shuffling), watched by
tests/workflows/nt3_resume.py: each rank logs its own model's checksum at pause, restore and end.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.resume_checks import events
from hpwf.rundir._trialdir import trial_folder

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EPOCHS, TRIALS = 4, 4


@pytest.mark.mpi
def test_nt3_resumes_a_two_rank_trial_from_its_checkpoint_under_mpirun(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "NT3_EPOCHS": str(EPOCHS), "NT3_TRIALS": str(TRIALS),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([str(BIN / "mpirun"), "-np", "3", sys.executable, "-m", "hpwf", "run",
                           "tests/workflows/nt3_resume.py", "--backend", "mpi", "--run-dir", str(run_dir), "--quiet"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lead, other = events(run_dir, 0), events(run_dir, 1)
    assert set(lead) == set(range(TRIALS)) == set(other)
    restores = 0
    for number, rows in lead.items():
        # every rank of the group holds the same weights at each pause, restore and end
        assert [(e["event"], e["step"], e["sha"]) for e in other[number]] == \
               [(e["event"], e["step"], e["sha"]) for e in rows], number
        for before, after, then in zip(rows, rows[1:], rows[2:] + [None]):
            if after["event"] == "restore":  # it continues from exactly its own last pause
                restores += 1
                assert before["event"] == "pause" and (before["step"], before["sha"]) == (after["step"], after["sha"])
                # and trains on: both ranks still agree after the restored Adam state and RNG were used
                assert then is not None and then["event"] in ("pause", "end") and then["step"] > after["step"]
        with (trial_folder(run_dir, number) / "metrics.csv").open() as f:
            steps = [int(row["step"]) for row in csv.DictReader(f)]
        assert steps == list(range(len(steps))), (number, steps)  # no epoch trained twice or skipped
        last = rows[-1]
        assert last["step"] == len(steps) and (last["event"] == "end") == (len(steps) == EPOCHS), (number, rows)
    assert restores >= 1, "no NT3 trial was paused and resumed"
