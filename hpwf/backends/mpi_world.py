"""`--backend mpi`: under `mpirun`/`srun`, rank 0 coordinates and every other rank of the job is an
agent (groups are communicators split from COMM_WORLD); ranks are never ended while the job goes on."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from hpwf.backends._base import Backend
from hpwf.backends.mpi import ARRIVAL_TAG, ARRIVAL_WAIT_S, SETTLE_S, _any_source, _leave_stop_signals_to_the_coordinator
from hpwf.errors import ConfigError
from hpwf.rundir import held_folder
from hpwf.wire import Announcing, UNREACHABLE_EXIT, choose, connect_or_report
from hpwf.worker import run_agent

if TYPE_CHECKING:
    from hpwf.wire import Address


class MPIBackend(Backend):
    """Every rank constructs it; rank 0 then runs the coordinator and the others `serve_rank`.

    Example (every rank of ``mpirun -np 5 python -m hpwf run wf.py --backend mpi``)::

        backend = MPIBackend()
        if backend.rank != 0:
            sys.exit(backend.serve_rank())
    """

    name = "mpi"
    group_mode = "mpi"

    def __init__(self, comm: Any = None, interface: str | None = None) -> None:
        """``interface``: the network interface agents reach rank 0 by (default: `hpwf.wire._netif.choose`)."""
        try:
            from mpi4py import MPI
        except ImportError as exc:  # pragma: no cover - mpi4py is part of the install
            raise ConfigError(f"--backend mpi needs mpi4py: {exc}") from None
        self.comm = comm or MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.hosts = self.comm.allgather(socket.gethostname())
        self._error: ConfigError | None = None
        if self.rank == 0:
            try:
                endpoint = choose(self.hosts, interface)
                self.listen_host, self.advertise_host = endpoint.listen, endpoint.advertise
            except ConfigError as exc:  # raised by `check`, so that every rank is released
                self._error = exc
        self._released = False
        self._started_at: float | None = None

    @property
    def slots(self) -> int:
        return self.size - 1

    def check(self) -> None:
        """Fail on rank 0 with a clear message when there is no rank to run trials."""
        if self._error is not None:
            raise self._error
        if self.size < 2:
            raise ConfigError("--backend mpi needs at least 2 ranks (rank 0 coordinates): mpirun -np N ...")

    def start(self, address: Address, authkey: bytes) -> None:
        """Release the ranks, then wait (up to ``ARRIVAL_WAIT_S``) until each has said hello to the
        coordinator or found it cannot: the first trials are then placed knowing every rank's host,
        so that a group is not split across nodes only because its node's ranks were slower."""
        self._release(("go", address, authkey, str(self.report_dir) if self.report_dir else None))
        self._started_at = time.time()
        pending, deadline = self.size - 1, time.monotonic() + ARRIVAL_WAIT_S
        while pending and time.monotonic() < deadline:
            if self.comm.Iprobe(source=_any_source(), tag=ARRIVAL_TAG):
                self.comm.recv(source=_any_source(), tag=ARRIVAL_TAG)
                pending -= 1
            else:
                time.sleep(0.005)
        time.sleep(SETTLE_S)

    def failure(self, live: int, seen: int) -> str | None:
        if self._started_at is None:
            return None
        lost = self.check_unreachable()
        if lost:
            return lost
        expected = self.slots - self.unreachable_agents
        if seen >= expected and live < expected:
            return f"{expected - live} of {expected} worker ranks are gone"
        if seen < expected and time.time() - self._started_at > 300:
            return f"only {seen} of {self.slots} worker ranks connected within 300 s"
        return None

    def release_unstarted(self) -> None:
        self._release(("exit", 0))

    def close(self, exit_code: int = 0) -> None:
        """Releases the waiting ranks if the run never started (they exit with ``exit_code``)."""
        self._release(("exit", exit_code or 1))
        self.check_unreachable()  # reports that came after the run's last look

    def _release(self, message: tuple[Any, ...]) -> None:
        if not self._released and self.rank == 0:
            self._released = True
            self.comm.bcast(message, root=0)

    def serve_rank(self) -> int:
        """Run as an agent until the coordinator stops (ranks other than 0)."""
        message = self.comm.bcast(None, root=0)
        if message[0] == "exit":
            return int(message[1])
        _, address, authkey, reports = message
        _leave_stop_signals_to_the_coordinator()
        name = f"rank-{self.rank}"
        conn = connect_or_report(address, authkey, name, self.rank, held_folder(Path(reports)) if reports else None)
        if conn is None:
            self.comm.send("unreachable", dest=0, tag=ARRIVAL_TAG)
            return UNREACHABLE_EXIT
        def hello() -> None:
            self.comm.send("hello", dest=0, tag=ARRIVAL_TAG)

        run_agent(Announcing(conn, hello), address, authkey, name, self.rank, self.comm)
        return 0
