"""One rank of a launched group (``python -m hpwf.worker._group_rank``, started by `_launched`):
rank 0 connects to the coordinator and carries the trial's requests; every rank trains."""

from __future__ import annotations

import base64
import os
import pickle
import sys
from pathlib import Path

from hpwf.worker._launched import ENV


def main() -> int:
    """One rank of a launched group."""
    from mpi4py import MPI

    from hpwf.wire import connect
    from hpwf.worker._agent import Agent
    from hpwf.worker._threads import apply_threads
    from hpwf.worker._trial_run import _resolve_objective, run_trial
    from hpwf.workflow import Group

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
