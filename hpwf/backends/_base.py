"""The backend contract: a backend only starts agents; the coordinator does everything else.

An agent is a process that runs `hpwf.agent.serve(address, authkey, name)`: it connects back to
the coordinator, receives trials, and reports on them. A backend decides where agents run
(local Dask workers, a remote Dask cluster, MPI ranks, Slurm tasks) and how many there are.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class Backend(ABC):
    """Start agents, say how many to expect, say when they can no longer come, stop them.

    Attributes:
        name: the name used on the command line (``--backend NAME``).
        listen_host: the interface the coordinator listens on for agents.
        advertise_host: the host name agents use to reach it (``None``: ``listen_host``).
    """

    name: str = "base"
    listen_host: str = "127.0.0.1"
    advertise_host: str | None = None

    @abstractmethod
    def start(self, address: tuple[str, int], authkey: bytes) -> None:
        """Launch the agents; they connect to ``address`` with ``authkey``. Must not block."""

    @property
    @abstractmethod
    def slots(self) -> int:
        """How many agents this backend runs at most (each runs one rank of one trial)."""

    def failure(self) -> str | None:
        """Why no (more) agents will connect, once that is certain; else ``None``."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Stop everything the backend started. Called once, also after errors."""
