"""The trial side: an agent connects to the coordinator and runs the trials it is handed.

Every backend starts agents (a Dask task, an MPI rank, a Slurm task); they all run `serve`.
A reader thread takes every message from the coordinator, so that an `Abort`, or the
coordinator going away, ends a rank even while it is stuck in a collective.

The agent contract: an agent sends `Hello` once, then a `Heartbeat` every ``heartbeat_s``
whatever it does (idle, running a trial, holding a reserved rank), so the coordinator can tell
a live agent from a lost one at any time. A trial's leader appends the trial's result to its results log
(`hpwf.rundir._trialdir`) before it sends `Done`: a result the coordinator has not stored yet is
never lost.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from hpwf.wire import (
    Abort, Address, Assign, Done, Heartbeat, Hello, Reply, Setup, Stop, UNREACHABLE_EXIT, Used, connect,
    connect_or_report)
from hpwf.worker._threads import apply_threads, set_torch_threads
from hpwf.worker._trial_run import _resolve_objective, run_trial
from hpwf.workflow import Group

ABORT_EXIT = 75  # exit status of a rank that gave up a trial it could not finish
SETUP_TIMEOUT_S = 120
STOP_GRACE_S = 120.0  # an MPI rank still running a failed trial when the run ends waits this long for it


class Agent:
    """One agent: a connection, the workflow's objective, and the trials it is handed."""

    def __init__(self, conn: Connection, name: str, rank: int | None = None, world: Any = None,
                 attach: int | None = None, address: Address | None = None, authkey: bytes = b"") -> None:
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
        self.run_dir = _held(setup)
        self.threads = apply_threads(setup.threads)  # before the workflow imports torch or numpy
        self.objective = _resolve_objective(setup)
        self._replies: queue.SimpleQueue[Reply] = queue.SimpleQueue()
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.current: int | None = None  # the ticket of the trial this agent runs
        self.number: int | None = None  # that trial's number
        self._send_lock = threading.Lock()
        self._idle = threading.Event()  # set while no trial runs
        self._idle.set()
        threading.Thread(target=self._read, name="hpwf-agent-reader", daemon=True).start()
        threading.Thread(target=self._beat, name="hpwf-agent-heartbeat", daemon=True).start()

    def send(self, message: Any) -> None:
        with self._send_lock:  # the heartbeat thread sends too
            self.conn.send(message)

    def _beat(self) -> None:
        """Prove this agent alive every heartbeat, idle or busy (reserved ranks are idle here)."""
        while True:
            time.sleep(self.setup.heartbeat_s)
            try:
                self.send(Heartbeat(self.current))
            except (OSError, ValueError):
                return

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                self._tasks.put(Stop("the coordinator went away"))
                if self.current is not None:
                    self._end_trial_left_behind(f"the coordinator went away during trial {self.number}")
                return
            if isinstance(message, Stop) and self.current is not None and self.world is not None:
                self._tasks.put(message)
                self._end_trial_left_behind(f"the run ended during trial {self.number}")
                return
            if isinstance(message, Reply):
                self._replies.put(message)
            elif isinstance(message, Abort):
                if message.ticket == self.current:
                    _give_up(f"trial {self.number} aborted: {message.reason}")
            else:
                self._tasks.put(message)

    def _end_trial_left_behind(self, reason: str) -> None:
        """The run is over while this agent still runs a trial (one the coordinator failed, e.g.
        past its timeout). An MPI rank lets it finish, up to `STOP_GRACE_S`, and then exits 0 with
        the job: its process ending early would end every rank, and mpirun's exit status with it."""
        if self.world is None or not self._idle.wait(STOP_GRACE_S):
            _give_up(reason)

    def serve(self) -> int:
        """Run trials until the coordinator says stop (or goes away); return trials run."""
        count = 0
        while True:
            task = self._tasks.get()
            if isinstance(task, Stop):
                return count
            if isinstance(task, Setup):  # the run moves to its next phase (e.g. the ensemble)
                self.setup, self.run_dir, self.threads = task, _held(task), apply_threads(task.threads)
                self.objective = _resolve_objective(task)
            if isinstance(task, Assign):
                self._idle.clear()
                self.current, self.number = task.ticket, task.number
                done = self.run(task)
                self.current = self.number = None
                self._idle.set()
                with contextlib.suppress(OSError, ValueError):  # the coordinator may be gone
                    self.send(done)
                count += 1

    def run(self, task: Assign) -> Done:
        """Run one trial: alone, on an MPI group of agents, or on ranks launched for it."""
        if task.ranks > 1 and not task.group:
            from hpwf.worker._launched import run_launched_group

            return run_launched_group(self, task)
        set_torch_threads(self.threads)  # an objective may have changed it
        if not task.group:
            return run_trial(self.objective, task, self.run_dir, self.request, n_objectives=self.setup.n_objectives)
        comm = self.world.Create_group(self.world.group.Incl(list(task.group)), tag=task.ticket % 32767)
        try:
            return run_trial(self.objective, task, self.run_dir, self.request,
                             Group(comm.Get_rank(), comm.Get_size(), comm), lambda v: comm.bcast(v, root=0),
                             n_objectives=self.setup.n_objectives)
        finally:
            comm.Free()

    def request(self, message: Any) -> Any:
        """Send a message and wait for its `Reply` (a `Used` gets none)."""
        self.send(message)
        if isinstance(message, Used):
            return None
        value = self._replies.get().value
        if isinstance(value, BaseException):
            raise value
        return value


def _give_up(reason: str) -> None:
    """End this process at once: its trial cannot finish (a peer died, or it was aborted)."""
    from hpwf.progress import write_quietly

    if sys.__stderr__ is not None:
        write_quietly(sys.__stderr__, f"[hpwf agent pid {os.getpid()}] {reason}; exiting\n")
    os._exit(ABORT_EXIT)


def serve(address: Address, authkey: bytes, name: str, rank: int | None = None, world: Any = None) -> int:
    """Connect to the coordinator at ``address`` and run trials until told to stop."""
    return serve_on(connect(address, authkey), address, authkey, name, rank, world)


def serve_on(conn: Connection, address: Address, authkey: bytes, name: str, rank: int | None = None,
             world: Any = None) -> int:
    """Run trials over an open connection until told to stop; return how many.

    A coordinator that finished before this agent said hello (a resumed run with nothing left
    to do) closes the connection: that is a normal end, not an error (exit 0 under MPI).
    """
    try:
        agent = Agent(conn, name, rank, world, address=address, authkey=authkey)
    except (EOFError, ConnectionError):
        conn.close()
        return 0
    try:
        return agent.serve()
    finally:
        agent.conn.close()


def serve_or_report(address: Address, authkey: bytes, name: str, rank: int | None = None,
                    world: Any = None, reports: Path | None = None) -> int:
    """`hpwf.worker._agent.serve`, except that an agent that cannot connect reports it and exits quietly."""
    from hpwf.rundir import held_folder

    conn = connect_or_report(address, authkey, name, rank, held_folder(reports) if reports is not None else None)
    if conn is None:
        return UNREACHABLE_EXIT
    return run_agent(conn, address, authkey, name, rank, world)


def run_agent(conn: Any, address: Address, authkey: bytes, name: str, rank: int | None = None,
              world: Any = None) -> int:
    """Run trials over an open connection to the coordinator until told to stop."""
    return serve_on(conn, address, authkey, name, rank, world)


def _held(setup: Setup) -> Path:
    """The run directory of ``setup``, held from now on (`hpwf.rundir.hold_run_dir`): this
    process's files of the run are reached through one descriptor of it, checked once."""
    from hpwf.rundir import hold_run_dir

    run_dir = Path(setup.run_dir)
    if run_dir.is_dir():
        hold_run_dir(run_dir)
    return run_dir
