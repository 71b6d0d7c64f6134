"""The trial side: an agent connects to the coordinator and runs the trials it is handed.

Every backend starts agents (a Dask task, an MPI rank, a Slurm task); they all run `serve`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
import traceback
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

from hpwf._channel import connect
from hpwf._protocol import Assign, Done, Hello, Reply, Setup, Stop
from hpwf.trial import Group, Trial, TrialPruned


class Agent:
    """One agent: a connection, the workflow's objective, and a queue of assigned trials."""

    def __init__(self, conn: Connection, name: str, rank: int | None = None) -> None:
        self.conn = conn
        self.name = name
        self.rank = rank
        self._inbox: deque[Any] = deque()
        self._stopping = False
        conn.send(Hello(name, socket.gethostname(), os.getpid(), rank))
        setup = conn.recv()
        if not isinstance(setup, Setup):
            raise RuntimeError(f"expected Setup from the coordinator, got {setup!r}")
        self.run_dir = Path(setup.run_dir)
        self.objective = _resolve_objective(setup)

    def serve(self) -> int:
        """Run trials until the coordinator says stop (or goes away); return trials run."""
        count = 0
        while not self._stopping:
            try:
                message = self._inbox.popleft() if self._inbox else self.conn.recv()
            except (EOFError, OSError):
                break
            if isinstance(message, Stop):
                break
            if isinstance(message, Assign):
                self.conn.send(run_trial(self.objective, message, self.run_dir, self.request))
                count += 1
        return count

    def request(self, message: Any) -> Any:
        """Send a message and wait for its `Reply`, keeping other messages for later."""
        self.conn.send(message)
        while True:
            answer = self.conn.recv()
            if isinstance(answer, Reply):
                if isinstance(answer.value, BaseException):
                    raise answer.value
                return answer.value
            if isinstance(answer, Stop):
                self._stopping = True
            else:
                self._inbox.append(answer)


def run_trial(
    objective: Callable[[Trial], Any],
    task: Assign,
    run_dir: Path,
    request: Callable[[Any], Any],
    group: Group = Group(),
    share: Callable[[Any], Any] = lambda value: value,
) -> Done:
    """Run ``objective`` on one trial; everything it prints goes to the trial's ``log.txt``."""
    folder = trial_folder(run_dir, task.number)
    folder.mkdir(parents=True, exist_ok=True)
    trial = Trial(
        task.number, task.params, task.distributions, seed=task.seed, folder=folder,
        request=request, group=group, share=share,
    )
    start = time.time()
    state, values, error = "fail", None, None
    log_name = "log.txt" if group.rank == 0 else f"log.rank{group.rank}.txt"
    with open(folder / log_name, "a", buffering=1) as log, \
            contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            values = _as_values(objective(trial))
            state = "complete"
        except TrialPruned:
            state = "pruned"
        except BaseException as exc:  # noqa: BLE001 - a trial must never take its agent down
            error = traceback.format_exc()
            log.write(error)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
    duration = time.time() - start
    if group.rank == 0:
        if error:
            (folder / "traceback.txt").write_text(error)
        (folder / "params.json").write_text(json.dumps(trial.params, indent=1, default=str))
    return Done(task.number, state, values, error, duration)


def trial_folder(run_dir: Path, number: int) -> Path:
    """Where trial ``number`` keeps its params, log, metrics and traceback."""
    return run_dir / "trials" / f"{number:05d}"


def _as_values(result: Any) -> list[float]:
    values = [float(v) for v in result] if isinstance(result, (list, tuple)) else [float(result)]
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ValueError(f"the objective returned a non-finite value: {bad[0]}")
    return values


def _resolve_objective(setup: Setup) -> Callable[[Trial], Any]:
    if setup.workflow_path:
        from hpwf.workflow import load

        return load(setup.workflow_path).objective
    import cloudpickle

    assert setup.objective_pickle is not None
    return cloudpickle.loads(setup.objective_pickle)


def serve(address: tuple[str, int], authkey: bytes, name: str, rank: int | None = None) -> int:
    """Connect to the coordinator at ``address`` and run trials until told to stop."""
    agent = Agent(connect(address, authkey), name, rank)
    try:
        return agent.serve()
    finally:
        agent.conn.close()
