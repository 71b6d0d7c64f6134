"""The MPI backend: under ``mpirun``/``srun``, rank 0 coordinates and every other rank is an agent.

A trial of k ranks runs on k agents that split a communicator off ``COMM_WORLD`` for it
(``Comm.Create_group``, collective over those k ranks only) and init Horovod on it.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any

from hpwf.backends._base import Backend
from hpwf.errors import ConfigError

if TYPE_CHECKING:
    from hpwf._channel import Address


class MPIBackend(Backend):
    """Every rank constructs it; rank 0 then runs the coordinator and the others `serve_rank`.

    Example (every rank of ``mpirun -np 5 python -m hpwf run wf.py --backend mpi``)::

        backend = MPIBackend()
        if backend.rank != 0:
            sys.exit(backend.serve_rank())
    """

    name = "mpi"
    group_mode = "mpi"

    def __init__(self, comm: Any = None) -> None:
        try:
            from mpi4py import MPI
        except ImportError as exc:  # pragma: no cover - mpi4py is part of the install
            raise ConfigError(f"--backend mpi needs mpi4py: {exc}") from None
        self.comm = comm or MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        hosts = self.comm.allgather(socket.gethostname())
        one_host = len(set(hosts)) == 1
        self.listen_host = "127.0.0.1" if one_host else "0.0.0.0"
        self.advertise_host = os.environ.get("HPWF_ADVERTISE") or ("127.0.0.1" if one_host else hosts[0])
        self.hosts = hosts
        self._released = False
        self._started_at: float | None = None

    @property
    def slots(self) -> int:
        return self.size - 1

    def check(self) -> None:
        """Fail on rank 0 with a clear message when there is no rank to run trials."""
        if self.size < 2:
            raise ConfigError("--backend mpi needs at least 2 ranks (rank 0 coordinates): mpirun -np N ...")

    def start(self, address: Address, authkey: bytes) -> None:
        self._release(("go", address, authkey))
        self._started_at = time.time()

    def failure(self, live: int, seen: int) -> str | None:
        if self._started_at is None:
            return None
        if seen >= self.slots and live < self.slots:
            return f"{self.slots - live} of {self.slots} worker ranks are gone"
        if seen < self.slots and time.time() - self._started_at > 300:
            return f"only {seen} of {self.slots} worker ranks connected within 300 s"
        return None

    def close(self, exit_code: int = 0) -> None:
        """Releases the waiting ranks if the run never started (they exit with ``exit_code``)."""
        self._release(("exit", exit_code or 1))

    def _release(self, message: tuple[Any, ...]) -> None:
        if not self._released and self.rank == 0:
            self._released = True
            self.comm.bcast(message, root=0)

    def serve_rank(self) -> int:
        """Run as an agent until the coordinator stops (ranks other than 0)."""
        from hpwf.agent import serve

        message = self.comm.bcast(None, root=0)
        if message[0] == "exit":
            return int(message[1])
        _, address, authkey = message
        _leave_stop_signals_to_the_coordinator()
        serve(address, authkey, f"rank-{self.rank}", self.rank, self.comm)
        return 0


class MPIJobBackend(Backend):
    """hpwf launches ``mpirun -np N`` itself; all N ranks are agents, the coordinator stays outside.

    A rank that dies outside a collective does not end the job (MPICH's ``-disable-auto-cleanup``):
    the coordinator fails its trial and goes on with the ranks that are left. One that dies inside
    a collective ends the job (MPICH aborts it): the coordinator fails the trials that ran on it
    and starts the job again (`heal`).

    Example:
        >>> MPIJobBackend(ranks=4).slots
        4
    """

    name = "mpirun"
    group_mode = "mpi"

    def __init__(self, ranks: int | None = None, launcher: list[str] | None = None, max_restarts: int = 3) -> None:
        from hpwf.backends._launch import mpirun

        self.ranks = ranks or os.cpu_count() or 1
        self.launcher = launcher or [mpirun()]
        self.max_restarts = max_restarts
        self._restarts = 0
        self._proc: Any = None
        self._address: Address = ("127.0.0.1", 0)
        self._authkey = b""

    @property
    def slots(self) -> int:
        return self.ranks

    def start(self, address: Address, authkey: bytes) -> None:
        self._address, self._authkey = address, authkey
        self._launch()

    def _launch(self) -> None:
        import subprocess
        import sys

        from hpwf._channel import format_address

        flags = ["-disable-auto-cleanup"] if _is_hydra(self.launcher[0]) else []
        env = {**os.environ, AUTH_ENV: self._authkey.hex(), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        command = [*self.launcher, *flags, "-np", str(self.ranks), sys.executable, "-m", "hpwf.backends.mpi",
                   format_address(self._address)]
        self._proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)

    def heal(self, live: int) -> None:
        """A rank that dies inside a collective ends the whole MPI job (MPI has no way back):
        once every agent is gone, start a new job, up to ``max_restarts`` times."""
        if self._proc is not None and self._proc.poll() is not None and live == 0 \
                and self._restarts < self.max_restarts:
            self._restarts += 1
            from hpwf.progress import say

            say(f"[hpwf] the MPI job of agents ended (exit {self._proc.returncode}); "
                f"starting it again ({self._restarts}/{self.max_restarts})")
            self._launch()

    def failure(self, live: int, seen: int) -> str | None:
        if self._proc is not None and self._proc.poll() is not None and live == 0 \
                and self._restarts >= self.max_restarts:
            return f"the MPI job of agents ended with exit code {self._proc.returncode} ({self._restarts} restarts)"
        return None

    def close(self, exit_code: int = 0) -> None:
        import subprocess

        if self._proc is None:
            return
        try:
            self._proc.wait(timeout=30)  # agents exit once the coordinator says stop
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None


AUTH_ENV = "HPWF_AUTHKEY"


def _leave_stop_signals_to_the_coordinator() -> None:
    """Launchers (srun on preemption, mpirun on Ctrl-C) signal every rank. An agent that died of
    it would lose its trial's place; instead the coordinator fails and re-queues the running
    trials, then stops the agents (an agent whose coordinator is gone exits by itself)."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


def _is_hydra(launcher: str) -> bool:
    import subprocess

    try:
        out = subprocess.run([launcher, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "HYDRA" in out


def main(argv: list[str]) -> int:
    """A rank of a job started by `MPIJobBackend`: ``python -m hpwf.backends.mpi HOST:PORT|unix:PATH``."""
    from mpi4py import MPI

    from hpwf._channel import parse_address
    from hpwf.agent import serve

    world = MPI.COMM_WORLD
    _leave_stop_signals_to_the_coordinator()
    serve(parse_address(argv[0]), bytes.fromhex(os.environ[AUTH_ENV]),  # type: ignore[arg-type]
          f"rank-{world.Get_rank()}", world.Get_rank(), world)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
