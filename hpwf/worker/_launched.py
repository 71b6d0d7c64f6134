"""Trials of several ranks on backends whose agents are not MPI ranks (local, Dask).

The trial's first agent runs ``mpirun -np K python -m hpwf.worker._group_rank``; the K ranks
train the trial with Horovod on their ``MPI.COMM_WORLD``, and their rank 0 connects to the
coordinator to carry the trial's requests. The other K-1 agents hold their slots meanwhile.
"""

from __future__ import annotations

import base64
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hpwf.wire import Assign, Done, DoneState

if TYPE_CHECKING:
    from hpwf.worker._agent import Agent

ENV = "HPWF_LAUNCHED_TRIAL"
_OUTER_MPI_VARS = ("PMI_", "PMIX_", "HYDRA_", "MPI_LOCAL", "OMPI_", "SLURM_STEP", "I_MPI_")


def mpirun() -> str:
    """The venv's ``mpirun`` (the mpich wheel puts it beside Python), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpirun"
    return str(beside) if beside.exists() else (shutil.which("mpirun") or "mpirun")


def group_command(ranks: int) -> list[str]:
    """The launched group's command line. It holds no secret (anyone may read it with ``ps``):
    the hub's address, key and the trial travel in the ranks' environment (`ENV`)."""
    from hpwf.worker._start import python_command

    return [mpirun(), "-np", str(ranks), *python_command("hpwf.worker._group_rank")]


def run_launched_group(agent: Agent, task: Assign) -> Done:
    """Launch the trial's ranks and wait for them; the result reaches the coordinator directly."""
    from hpwf.rundir import hold_run_dir, open_file, read_file, trial_folder

    hold_run_dir(agent.run_dir)
    folder = trial_folder(agent.run_dir, task.number)
    payload = base64.b64encode(pickle.dumps((agent.address, agent.authkey, task))).decode()
    command = group_command(task.ranks)
    from hpwf.worker._start import child_pythonpath

    env = {k: v for k, v in os.environ.items() if not k.startswith(_OUTER_MPI_VARS)}  # not the agent's own job
    env["PYTHONPATH"] = child_pythonpath()
    with open_file(folder / "launch.log", "ab", make_parents=True) as log:
        proc = subprocess.run(command, env={**env, ENV: payload}, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode == 0:
        return Done(task.ticket, DoneState.MEMBER)
    tail = read_file(folder / "launch.log").decode(errors="replace").strip().splitlines()[-5:]
    return Done(task.ticket, DoneState.FAIL, error=f"{' '.join(command[:3])} exited {proc.returncode}: " + " | ".join(tail))
