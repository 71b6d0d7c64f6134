"""The MPI backend: under ``mpirun``/``srun``, rank 0 coordinates and every other rank is an agent.

A trial of k ranks runs on k agents that split a communicator off ``COMM_WORLD`` for it
(``Comm.Create_group``, collective over those k ranks only) and init Horovod on it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpwf.backends._base import Backend
from hpwf.rundir import held_folder
from hpwf.wire import (
    Announcing, REPORT_DIR_ENV, UNREACHABLE_EXIT, arrivals, choose, connect_or_report, job_hosts, mark_arrival)
from hpwf.worker import run_agent

if TYPE_CHECKING:
    from hpwf.wire import Address


ARRIVAL_TAG = 7351  # worker rank -> rank 0: "my hello is sent" (or "I cannot connect")
ARRIVAL_WAIT_S = 30.0
# A hello sent is not yet a hello received: on a loaded host the network stack may deliver it
# later. The engine should hold multi-rank placement until every expected agent is ready; until
# it does, this grace period makes a split group rare, not impossible.
SETTLE_S = 0.5


def _any_source() -> int:
    from mpi4py import MPI

    return int(MPI.ANY_SOURCE)


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

    def __init__(self, ranks: int | None = None, launcher: list[str] | None = None, max_restarts: int = 3,
                 interface: str | None = None) -> None:
        """``interface``: the network interface agents reach the coordinator by (default: loopback
        when the job's hosts are all this one, else the one on the route to them; `hpwf.wire._netif`)."""
        from hpwf.worker import mpirun

        self.ranks = ranks or os.cpu_count() or 1
        self.launcher = launcher or [mpirun()]
        hosts = job_hosts(self.launcher)
        self.agent_hosts = tuple(hosts) or ("127.0.0.1",)  # none named: the ranks run here
        endpoint = choose(hosts, interface)
        self.listen_host, self.advertise_host = endpoint.listen, endpoint.advertise
        self.max_restarts = max_restarts
        self._restarts = 0
        self._launches = 0
        self._launch_id = ""
        self._proc: Any = None
        self._address: Address = ("127.0.0.1", 0)
        self._authkey = b""

    @property
    def slots(self) -> int:
        return self.ranks

    def start(self, address: Address, authkey: bytes) -> None:
        self._address, self._authkey = address, authkey
        self._launch()

    def _wait_for_arrivals(self) -> None:
        """Up to ``ARRIVAL_WAIT_S``, until every rank of this launch has said hello (or reported it
        cannot): trials are then placed knowing every rank's host. A group formed while its node's
        ranks were still connecting would span nodes, and its ranks, given back together, would
        keep forming that group."""
        if self.report_dir is None:
            return
        deadline = time.monotonic() + ARRIVAL_WAIT_S
        while time.monotonic() < deadline and self._proc is not None and self._proc.poll() is None:
            if arrivals(self.report_dir, self._launch_id) >= self.ranks:
                time.sleep(SETTLE_S)
                return
            time.sleep(0.05)

    def _launch(self) -> None:
        import subprocess
        import sys

        from hpwf.worker import child_pythonpath

        env = {**os.environ, AUTH_ENV: self._authkey.hex(), "PYTHONPATH": child_pythonpath()}
        self._launches += 1
        self._launch_id = f"{os.getpid()}.{self._launches}"
        if self.report_dir is not None:
            env[REPORT_DIR_ENV] = str(self.report_dir)
            env[LAUNCH_ENV] = self._launch_id
        self._proc = subprocess.Popen(self.command(), env=env, stdin=subprocess.DEVNULL)
        self._wait_for_arrivals()

    def command(self) -> list[str]:
        """The agents' MPI job. Its command line holds no secret (anyone may read it with ``ps``):
        the hub's key travels in the environment (``HPWF_AUTHKEY``)."""
        import sys

        flags = ["-disable-auto-cleanup"] if _is_hydra(self.launcher[0]) else []
        from hpwf.wire import format_address

        from hpwf.worker import python_command

        return [*self.launcher, *flags, "-np", str(self.ranks),
                *python_command("hpwf.backends.mpi", format_address(self._address))]

    def heal(self, live: int) -> None:
        """A rank that dies inside a collective ends the whole MPI job (MPI has no way back):
        once every agent is gone, start a new job, up to ``max_restarts`` times."""
        if self.check_unreachable():
            return  # no agent can reach the coordinator: a new job would not either
        if self._proc is not None and self._proc.poll() is not None and live == 0 \
                and self._restarts < self.max_restarts:
            self._restarts += 1
            from hpwf.progress import say

            say(f"[hpwf] the MPI job of agents ended (exit {self._proc.returncode}); "
                f"starting it again ({self._restarts}/{self.max_restarts})")
            if _is_hydra(self.launcher[0]):
                self._drop_lost_hosts()
            self._launch()

    def _drop_lost_hosts(self) -> None:
        """A node that died would make every new job fail to launch: leave out the hosts that no
        longer answer (`hpwf.backends._relaunch`), with the ranks they held."""
        from hpwf.backends._relaunch import shrink, without_hosts
        from hpwf.progress import say

        shrunk = shrink(self.launcher, self.ranks)
        if shrunk is None:
            return
        say(f"[hpwf] {', '.join(shrunk.lost)} no longer answer{'s' if len(shrunk.lost) == 1 else ''}: "
            f"the job starts on the other hosts with {shrunk.ranks} of {self.ranks} ranks")
        self.launcher = [*without_hosts(self.launcher), *shrunk.args]
        self.ranks = shrunk.ranks

    def failure(self, live: int, seen: int) -> str | None:
        lost = self.check_unreachable()
        if lost:
            return lost
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
        self.check_unreachable()  # reports that came after the run's last look


AUTH_ENV = "HPWF_AUTHKEY"
LAUNCH_ENV = "HPWF_LAUNCH_ID"  # which launch of the job of agents a rank belongs to (arrival marks)


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

    from hpwf.wire import parse_address

    world = MPI.COMM_WORLD
    _leave_stop_signals_to_the_coordinator()
    reports = held_folder(Path(os.environ[REPORT_DIR_ENV])) if os.environ.get(REPORT_DIR_ENV) else None
    launch, rank = os.environ.get(LAUNCH_ENV, ""), world.Get_rank()
    address, authkey, name = parse_address(argv[0]), bytes.fromhex(os.environ[AUTH_ENV]), f"rank-{rank}"

    def arrived() -> None:
        if reports is not None and launch:
            mark_arrival(reports, launch, name)

    conn = connect_or_report(address, authkey, name, rank, reports)
    if conn is None:
        arrived()
        return UNREACHABLE_EXIT
    run_agent(Announcing(conn, arrived), address, authkey, name, rank, world)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
