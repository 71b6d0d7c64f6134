"""Trials of several ranks on backends whose agents are not MPI ranks (local, Dask).

The trial's first agent runs ``mpirun -np K python -m hpwf.worker._launched``; the K ranks
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

from hpwf.wire._protocol import Assign, Done

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
    return [mpirun(), "-np", str(ranks), sys.executable, "-m", "hpwf.worker._launched"]


def run_launched_group(agent: Agent, task: Assign) -> Done:
    """Launch the trial's ranks and wait for them; the result reaches the coordinator directly."""
    from hpwf.rundir._trialdir import trial_folder

    folder = trial_folder(agent.run_dir, task.number)
    folder.mkdir(parents=True, exist_ok=True)
    payload = base64.b64encode(pickle.dumps((agent.address, agent.authkey, task))).decode()
    command = group_command(task.ranks)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OUTER_MPI_VARS)}  # not the agent's own job
    with open(folder / "launch.log", "ab") as log:
        proc = subprocess.run(command, env={**env, ENV: payload}, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode == 0:
        return Done(task.ticket, "member")
    tail = (folder / "launch.log").read_text(errors="replace").strip().splitlines()[-5:]
    return Done(task.ticket, "fail", error=f"{' '.join(command[:3])} exited {proc.returncode}: " + " | ".join(tail))


def main() -> int:
    """One rank of a launched group."""
    from mpi4py import MPI

    from hpwf.wire._channel import connect
    from hpwf.worker._agent import Agent, _resolve_objective, run_trial
    from hpwf.worker._threads import apply_threads
    from hpwf.workflow._trial import Group

    address, authkey, task = pickle.loads(base64.b64decode(os.environ[ENV]))
    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    agent = Agent(connect(address, authkey), f"trial-{task.number}-rank-0", 0, attach=task.ticket,
                  address=address, authkey=authkey) if rank == 0 else None
    setup = world.bcast(agent.setup if agent else None, root=0)
    if not agent:
        apply_threads(setup.threads)  # rank 0's agent did so before loading the workflow
    objective = agent.objective if agent else _resolve_objective(setup)
    if agent:
        agent.current, agent.number = task.ticket, task.number
    done = run_trial(
        objective, task, Path(setup.run_dir), agent.request if agent else _no_requests,
        Group(rank, world.Get_size(), world), lambda v: world.bcast(v, root=0), n_objectives=setup.n_objectives,
    )
    if agent:
        agent.send(done)
        agent.conn.close()
    return 0


def _no_requests(message: object) -> object:
    raise RuntimeError("only rank 0 of a group talks to the coordinator")


if __name__ == "__main__":
    sys.exit(main())
