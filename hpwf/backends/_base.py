"""The backend contract: a backend only starts agents; the coordinator does everything else.

An agent is a process that runs `hpwf.worker._agent.serve(address, authkey, name)`: it connects back to
the coordinator, receives trials, and reports on them. A backend decides where agents run
(local Dask workers, a remote Dask cluster, MPI ranks, Slurm tasks) and how many there are.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

from hpwf.wire import Unreachable

if TYPE_CHECKING:
    from hpwf.wire import Address


class Backend(ABC):
    """Start agents, say how many to expect, say when they can no longer come, stop them.

    Attributes:
        name: the name used on the command line (``--backend NAME``).
        listen_host: the interface the coordinator listens on for agents.
        advertise_host: the host name agents use to reach it (``None``: ``listen_host``).
        report_dir: where agents that cannot reach the coordinator leave a one-line report
            (``RUN_DIR/agents``, on the shared file system); set by the engine before `start`.
        group_mode: how a trial of k ranks runs on k agents: "mpi" (the agents are ranks of one
            MPI job and split off a communicator) or "launch" (the first agent launches k ranks
            with ``mpirun`` while the others hold their slots).
        agent_hosts: the hosts this backend places agents on, as far as it knows them; a TCP
            hub lets their connections through first (`hpwf.wire.Hub.expect`).
    """

    name: str = "base"
    listen_host: str = "127.0.0.1"
    advertise_host: str | None = None
    group_mode: str = "launch"  # "mpi": agents are MPI ranks and form a trial's group themselves
    starts_slowly: bool = False  # True: `start` runs in a thread while the coordinator gets ready
    report_dir: Path | None = None
    agent_hosts: tuple[str, ...] = ()
    _unreachable: Unreachable | None = None

    @abstractmethod
    def start(self, address: Address, authkey: bytes) -> None:
        """Launch the agents; they connect to ``address`` with ``authkey``.

        Must not wait for the agents. A backend whose start takes seconds (a local Dask
        cluster) sets ``starts_slowly``: then `start` runs in a thread of its own, and `close`
        is called only after it returned. ``address`` is a Unix socket's path when
        ``listen_host`` is a loopback address (agents on this host only), else ``(host, port)``.
        ``authkey`` must reach agents only through channels no other user can read (MPI, the
        environment, a 0600 file): never in a command line or in a Dask task.
        """

    @property
    @abstractmethod
    def slots(self) -> int:
        """How many agents this backend runs at most (each runs one rank of one trial)."""

    def failure(self, live: int, seen: int) -> str | None:
        """Why no (more) agents will come, once that is certain; else ``None``.

        ``live`` agents are connected now; ``seen`` have connected since the start.
        """
        return None

    def check_unreachable(self) -> str | None:
        """Print each new report of agents that never connected (which rank, host, why) and the
        capacity left; once every agent has reported, the reason the run cannot go on."""
        if self.report_dir is None:
            return None
        if self._unreachable is None:
            self._unreachable = Unreachable(self.report_dir, self.slots)
        message = self._unreachable.check()
        if message:
            from hpwf.progress import say

            left = self.slots - self._unreachable.count
            say(f"[hpwf] {message}" + (f"; the run goes on with {left} of {self.slots} agents" if left > 0 else ""))
        if self._unreachable.all_lost:
            return f"no agent could reach the coordinator ({self._unreachable.count} reported in {self.report_dir})"
        return None

    @property
    def unreachable_agents(self) -> int:
        """Agents that reported they could not reach the coordinator (for the run's summary)."""
        return self._unreachable.count if self._unreachable else 0

    def heal(self, live: int) -> None:
        """Called every half second: restart agents that are gone, where the backend can."""

    def release_unstarted(self) -> None:
        """The run needed no agent (a resume whose budget is spent): let whatever waits for the
        start end normally. MPI ranks waiting for rank 0 exit 0."""

    def check(self) -> None:
        """Raise `ConfigError` before anything is written if this backend cannot run here."""

    @abstractmethod
    def close(self, exit_code: int = 0) -> None:
        """Stop everything the backend started; safe to call twice, and before `start`."""
