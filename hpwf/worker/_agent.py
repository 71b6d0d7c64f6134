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
import io
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
from typing import IO, Any, Callable

from hpwf.rundir import TRACEBACK, trial_folder, write_atomically, write_result
from hpwf.wire import (
    Abort, Address, Assign, Done, Heartbeat, Hello, Reply, Setup, Stop, UNREACHABLE_EXIT, Used, connect,
    connect_or_report)
from hpwf.rundir import TRACEBACK, trial_folder, write_atomically, write_result
from hpwf.wire import Abort, Address, Assign, Done, Heartbeat, Hello, Reply, Setup, Stop, Used, connect
from hpwf.worker._threads import apply_threads, set_torch_threads
from hpwf.workflow import Group, Trial, TrialPaused, is_pruned

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
        self.run_dir = Path(setup.run_dir)
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
                self.setup, self.run_dir, self.threads = task, Path(task.run_dir), apply_threads(task.threads)
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


def run_trial(
    objective: Callable[[Trial], Any],
    task: Assign,
    run_dir: Path,
    request: Callable[[Any], Any],
    group: Group = Group(),
    share: Callable[[Any], Any] = lambda value: value,
    n_objectives: int = 1,
) -> Done:
    """Run ``objective`` on one trial; everything it prints goes to the trial's ``log.txt``.

    Rank 0 of a group makes the trial's result durable (`write_result`) and returns it; the
    other ranks return a "member" `Done`.
    """
    from hpwf.workflow import parallel

    folder = trial_folder(run_dir, task.number)  # made when the trial first writes into it
    trial = Trial(
        task.number, task.params, task.distributions, seed=task.seed, folder=folder,
        request=request, group=group, share=share, ticket=task.ticket, run_dir=run_dir,
    )
    trial.user_attrs.update(task.attrs or {})
    start = time.time()
    state, values, error = "fail", None, None
    log_name = "log.txt" if group.rank == 0 else f"log.rank{group.rank}.txt"
    with LazyLog(folder / log_name) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            values = _as_values(objective(trial), n_objectives)
            state = "complete"
        except TrialPaused:  # its state is saved: a scheduler resumes it later
            state = "paused"
        except BaseException as exc:  # noqa: BLE001 - a trial must never take its agent down
            if is_pruned(exc):  # Optuna's TrialPruned, without importing Optuna here
                state = "pruned"
            else:
                error = traceback.format_exc()
                log.write(error)
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
        finally:
            parallel.shutdown()
    duration = time.time() - start
    if group.rank != 0:
        return Done(task.ticket, "member", None, error, duration)
    if error:
        write_atomically(folder / TRACEBACK, error)
    metrics = trial.flush_metrics()  # rows no file holds go with the result
    write_result(run_dir, task.number, state.upper(), values, trial.params, duration, trial.plain_distributions, metrics)
    return Done(task.ticket, state, values, error, duration, used=trial.take_used())


class LazyLog(io.TextIOBase):
    """A trial's log file, created (with its folder) at the first character written to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def _open(self) -> IO[str]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", buffering=1)
        return self._file

    def write(self, text: str) -> int:
        return self._open().write(text) if text else 0

    def fileno(self) -> int:  # a library that writes to the descriptor gets the real file
        return self._open().fileno()

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        super().close()
        if self._file is not None:
            self._file.close()


def _as_values(result: Any, n_objectives: int = 1) -> list[float]:
    """The objective's return value as floats, checked against the study's objectives."""
    if result is None:
        raise TypeError("objective returned None; return a float (or a tuple for several directions)")
    many = isinstance(result, (list, tuple))
    if n_objectives == 1 and many and len(result) != 1:
        raise ValueError(f"the objective returned {len(result)} values; the study has one direction")
    values = [float(v) for v in result] if many else [float(result)]
    if len(values) != n_objectives:
        raise ValueError(f"the objective returned {len(values)} value(s); the study has {n_objectives} directions")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ValueError(f"the objective returned a non-finite value: {bad[0]}")
    return values


def _resolve_objective(setup: Setup) -> Callable[[Trial], Any]:
    if setup.workflow_path:
        from hpwf.workflow import checked_elsewhere, load

        with checked_elsewhere():  # the coordinator checked the file: no Optuna sampler made here
            workflow = load(setup.workflow_path)
        if setup.entry == "ensemble":
            from hpwf.workflow import MemberObjective

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


CHILD_ENV = "HPWF_AGENT_CHILD"
QUICK_EXIT_S = 5.0  # a child that ends sooner than this, three times in a row, is not restarted


def serve_or_report(address: Address, authkey: bytes, name: str, rank: int | None = None,
                    world: Any = None, reports: Path | None = None) -> int:
    """`hpwf.worker._agent.serve`, except that an agent that cannot connect reports it and exits quietly."""
    conn = connect_or_report(address, authkey, name, rank, reports)
    if conn is None:
        return UNREACHABLE_EXIT
    return run_agent(conn, address, authkey, name, rank, world)


def run_agent(conn: Any, address: Address, authkey: bytes, name: str, rank: int | None = None,
              world: Any = None) -> int:
    """Run trials over an open connection to the coordinator until told to stop."""
    return serve_on(conn, address, authkey, name, rank, world)


def serve_in_child(target: Callable[..., Any], *args: Any, child_env: dict[str, str] | None = None,
                   **kwargs: Any) -> int:
    """Run ``target(*args)`` (`serve`, or a function that calls it) in a child process, started
    again whenever it ends abnormally.

    For agents that live inside a Dask worker: a trial that is aborted (a lost peer, a
    timeout) ends its agent process with `ABORT_EXIT`; in a child, that leaves the Dask worker
    alive, so a long search never exhausts Dask's ``allowed-failures`` and loses its slots.
    Returns how many children ran. ``target`` (a module-level function) and its arguments reach
    the child pickled in its environment (readable by this user only); ``child_env`` adds to that
    environment (e.g. `hpwf.worker._threads.AGENTS_ENV`).
    """
    import base64
    import pickle
    import subprocess

    from hpwf.worker._start import child_pythonpath, python_command

    env = {**os.environ, **(child_env or {}), CHILD_ENV: base64.b64encode(pickle.dumps((target, args, kwargs))).decode(),
           "PYTHONPATH": child_pythonpath()}
    runs, quick = 0, 0
    while True:
        start = time.time()
        with subprocess.Popen(python_command("hpwf.worker._agent"), env=env, stdin=subprocess.DEVNULL,
                              preexec_fn=_die_with_parent) as child:
            with _CHILDREN_LOCK:
                _CHILDREN.add(child)
            try:
                code = child.wait()
            finally:
                with _CHILDREN_LOCK:
                    _CHILDREN.discard(child)
        runs += 1
        if code == 0 or _STOPPING.is_set():  # told to stop, the coordinator is gone, or `end_children`
            return runs
        quick = quick + 1 if time.time() - start < QUICK_EXIT_S else 0
        if quick >= 3:
            raise RuntimeError(f"the agent process exited {code} three times within {QUICK_EXIT_S:g} s of starting")


_CHILDREN: set[Any] = set()  # the agent processes `serve_in_child` runs in this process
_CHILDREN_LOCK = threading.Lock()
_STOPPING = threading.Event()


def allow_children() -> None:
    """`serve_in_child` may start agents again (a new run in this process)."""
    _STOPPING.clear()


def end_children(grace_s: float = 2.0) -> None:
    """End the agent processes this process started, for good (the local backend's close).

    An agent still connecting (its run ended before it arrived) would otherwise keep the Dask
    worker thread that waits for it, and so the cluster's close, for its whole connect timeout.
    """
    _STOPPING.set()
    with _CHILDREN_LOCK:
        children = list(_CHILDREN)
    for child in children:
        child.terminate()
    deadline = time.time() + grace_s
    for child in children:
        with contextlib.suppress(Exception):
            child.wait(max(0.0, deadline - time.time()))
        if child.poll() is None:
            child.kill()


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the Dask worker that started it goes (Linux)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child_main() -> int:
    import base64
    import pickle

    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the coordinator, which stops us
    target, args, kwargs = pickle.loads(base64.b64decode(os.environ.pop(CHILD_ENV)))
    try:
        target(*args, **kwargs)
    except (OSError, EOFError):
        return 0  # the coordinator is gone: nothing left to serve
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
