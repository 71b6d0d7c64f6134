"""The trial side: an agent connects to the coordinator and runs the trials it is handed.

Every backend starts agents (a Dask task, an MPI rank, a Slurm task); they all run `serve`.
A reader thread takes every message from the coordinator, so that an `Abort`, or the
coordinator going away, ends a rank even while it is stuck in a collective.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import socket
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

from hpwf._channel import connect
from hpwf._protocol import Abort, Assign, Done, Heartbeat, Hello, Reply, Setup, Stop
from hpwf.trial import Group, Trial, TrialPruned

ABORT_EXIT = 75  # exit status of a rank that gave up a trial it could not finish
SETUP_TIMEOUT_S = 120


class Agent:
    """One agent: a connection, the workflow's objective, and the trials it is handed."""

    def __init__(self, conn: Connection, name: str, rank: int | None = None, world: Any = None,
                 attach: int | None = None, address: tuple[str, int] | None = None, authkey: bytes = b"") -> None:
        self.conn = conn
        self.address, self.authkey = address, authkey  # handed on to ranks launched for a trial
        self.name = name
        self.world = world  # mpi4py COMM_WORLD when the agent is an MPI rank
        conn.send(Hello(name, socket.gethostname(), os.getpid(), rank, attach))
        if not conn.poll(SETUP_TIMEOUT_S):
            raise TimeoutError(f"the coordinator did not answer within {SETUP_TIMEOUT_S} s")
        setup = conn.recv()
        if not isinstance(setup, Setup):
            raise RuntimeError(f"expected Setup from the coordinator, got {setup!r}")
        self.setup = setup
        self.run_dir = Path(setup.run_dir)
        self.objective = _resolve_objective(setup)
        self._replies: queue.SimpleQueue[Reply] = queue.SimpleQueue()
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.current: int | None = None
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read, name="hpwf-agent-reader", daemon=True).start()
        threading.Thread(target=self._beat, name="hpwf-agent-heartbeat", daemon=True).start()

    def send(self, message: Any) -> None:
        with self._send_lock:  # the heartbeat thread sends too
            self.conn.send(message)

    def _beat(self) -> None:
        while True:
            time.sleep(self.setup.heartbeat_s)
            number = self.current
            if number is not None:
                try:
                    self.send(Heartbeat(number))
                except OSError:
                    return

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                if self.current is not None:
                    _give_up(f"the coordinator went away during trial {self.current}")
                self._tasks.put(Stop("the coordinator went away"))
                return
            if isinstance(message, Reply):
                self._replies.put(message)
            elif isinstance(message, Abort):
                if message.number == self.current:
                    _give_up(f"trial {message.number} aborted: {message.reason}")
            else:
                self._tasks.put(message)

    def serve(self) -> int:
        """Run trials until the coordinator says stop (or goes away); return trials run."""
        count = 0
        while True:
            task = self._tasks.get()
            if isinstance(task, Stop):
                return count
            if isinstance(task, Setup):  # the run moves to its next phase (e.g. the ensemble)
                self.setup, self.run_dir, self.objective = task, Path(task.run_dir), _resolve_objective(task)
            if isinstance(task, Assign):
                self.current = task.number
                done = self.run(task)
                self.current = None
                self.send(done)
                count += 1

    def run(self, task: Assign) -> Done:
        """Run one trial: alone, on an MPI group of agents, or on ranks launched for it."""
        if task.ranks > 1 and not task.group:
            from hpwf.backends._launch import run_launched_group

            return run_launched_group(self, task)
        if not task.group:
            return run_trial(self.objective, task, self.run_dir, self.request)
        comm = self.world.Create_group(self.world.group.Incl(list(task.group)), tag=task.number % 32767)
        try:
            return run_trial(self.objective, task, self.run_dir, self.request,
                             Group(comm.Get_rank(), comm.Get_size(), comm), lambda v: comm.bcast(v, root=0))
        finally:
            comm.Free()

    def request(self, message: Any) -> Any:
        """Send a message and wait for its `Reply`."""
        self.send(message)
        value = self._replies.get().value
        if isinstance(value, BaseException):
            raise value
        return value


def run_trial(
    objective: Callable[[Trial], Any],
    task: Assign,
    run_dir: Path,
    request: Callable[[Any], Any],
    group: Group = Group(),
    share: Callable[[Any], Any] = lambda value: value,
) -> Done:
    """Run ``objective`` on one trial; everything it prints goes to the trial's ``log.txt``.

    Rank 0 of a group returns the result; the other ranks return a "member" `Done`.
    """
    from hpwf import parallel

    folder = trial_folder(run_dir, task.number)
    folder.mkdir(parents=True, exist_ok=True)
    trial = Trial(
        task.number, task.params, task.distributions, seed=task.seed, folder=folder,
        request=request, group=group, share=share,
    )
    trial.user_attrs.update(task.attrs or {})
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
        finally:
            parallel.shutdown()
    duration = time.time() - start
    if group.rank != 0:
        return Done(task.number, "member", None, error, duration)
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

        workflow = load(setup.workflow_path)
        if setup.entry == "ensemble":
            from hpwf.ensemble import MemberObjective

            assert workflow.ensemble is not None
            return MemberObjective(workflow.ensemble.train)
        assert workflow.objective is not None  # a search phase runs only when the file has one
        return workflow.objective
    import cloudpickle

    assert setup.objective_pickle is not None
    return cloudpickle.loads(setup.objective_pickle)


def _give_up(reason: str) -> None:
    """End this process at once: its trial cannot finish (a peer died, or it was aborted)."""
    from hpwf.progress import write_quietly

    if sys.__stderr__ is not None:
        write_quietly(sys.__stderr__, f"[hpwf agent pid {os.getpid()}] {reason}; exiting\n")
    os._exit(ABORT_EXIT)


def serve(address: tuple[str, int], authkey: bytes, name: str, rank: int | None = None, world: Any = None) -> int:
    """Connect to the coordinator at ``address`` and run trials until told to stop."""
    agent = Agent(connect(address, authkey), name, rank, world, address=address, authkey=authkey)
    try:
        return agent.serve()
    finally:
        agent.conn.close()
