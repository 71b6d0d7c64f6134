"""Commands that files written by an older hpwf still run after the house moved.

Slurm re-runs a requeued job's script as it was written into the run directory, so a job script
written before the move (tests/slurm/written_before_the_move/local.sh: what `hpwf submit` wrote with
site_configs/local.yaml, kept as that main wrote it) must still run, resume and hand a signal to
rank 0 (``python -m hpwf``, ``python -m hpwf.slurm signal-rank0``). A launched group started by an
older agent runs ``python -m hpwf.backends._launch``; ``from hpwf import parallel`` and
``hpwf.pbt_replay`` stay importable.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "slurm" / "written_before_the_move" / "local.sh"
VENV_BIN = Path(sys.executable).parent


def _old_script(tmp_path: Path, run_dir: Path) -> Path:
    """The golden script with its example paths pointed at this checkout and a temporary run dir."""
    text = GOLDEN.read_text()
    assert "-m hpwf.slurm signal-rank0" in text and '-m hpwf "${hpwf_args[@]}"' in text
    text = (text.replace("/home/user/project/.venv/bin/python", sys.executable)
            .replace("/home/user/project/workflows/toy.py", str(ROOT / "tests" / "workflows" / "toy.py"))
            .replace("/home/user/project", str(ROOT))
            .replace("/scratch/user/runs/toy", str(run_dir)))
    script = tmp_path / "job.sh"
    script.write_text(text)
    return script


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**env, "PATH": f"{VENV_BIN}:{env.get('PATH', '')}", "PYTHONPATH": path, **extra}


@pytest.mark.mpi
def test_a_job_script_written_before_the_move_stops_on_usr1_and_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    script = _old_script(tmp_path, run_dir)
    job = subprocess.Popen(["bash", str(script)], env=_env(TOY_SLEEP="0.5", TOY_EPOCHS="4"), cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / "summary.json").exists() and time.monotonic() < deadline:
        time.sleep(0.5)  # the coordinator writes its summary once trials run
    assert job.poll() is None, job.communicate()[0]
    job.send_signal(signal.SIGUSR1)  # the walltime warning: the script's trap calls `python -m hpwf.slurm`
    out, _ = job.communicate(timeout=180)
    assert "SIGUSR1: stopping the run" in out, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "interrupted by SIGUSR1", out

    again = subprocess.run(["bash", str(script)], env=_env(), cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)  # a requeued job: run.json is there, so the script resumes
    assert again.returncode == 0, again.stdout + again.stderr
    assert "hpwf resume" in again.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] is None and summary["complete"] + summary["pruned"] == 12


def test_the_old_launched_group_command_runs_a_group_rank(tmp_path: Path) -> None:
    """``python -m hpwf.backends._launch`` is still a rank of a launched group: given a trial whose
    coordinator is gone, it tries to reach it (and fails saying so), as the new module does."""
    payload = base64.b64encode(pickle.dumps((("127.0.0.1", 9), b"k" * 32, None))).decode()
    done = subprocess.run([sys.executable, "-m", "hpwf.backends._launch"], env=_env(HPWF_LAUNCHED_TRIAL=payload),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "hpwf/worker/_group_rank.py" in done.stderr and "ConnectionRefusedError" in done.stderr, done.stderr


def test_old_import_paths_still_work() -> None:
    code = ("from hpwf import parallel; import hpwf.workflow.parallel as p; assert parallel is p; "
            "from hpwf.pbt_replay import replay; import hpwf; assert replay is hpwf.replay")
    done = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
