"""Dask cluster backends: an existing scheduler (``--scheduler ADDRESS``) or dask-mpi.

One agent per worker thread, started as a long-lived Dask task; trials of several ranks are
launched by their first agent (``mpirun -np K`` on that worker's node).
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlparse

from hpwf.backends._base import Backend
from hpwf.backends.local import agents_failure, submit_agents
from hpwf.errors import ConfigError


class DaskBackend(Backend):
    """Agents on the workers of a running Dask cluster.

    Example::

        backend = DaskBackend(scheduler="tcp://10.0.0.5:8786")
        hpwf.run("workflows/quickstart.py", backend=backend)
    """

    name = "dask"

    def __init__(self, scheduler: str | None = None, client: Any = None, timeout: float | None = None) -> None:
        """``timeout``: seconds to reach the scheduler (default: Dask's ``comm.timeouts.connect``)."""
        from distributed import Client

        try:
            self._client = client or Client(scheduler, **({"timeout": timeout} if timeout else {}))
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"--scheduler {scheduler}: cannot reach the Dask scheduler: {exc}") from None
        self._owns_client = client is None
        self._futures: list[Any] = []
        workers = self._client.scheduler_info()["workers"]
        self._slots = sum(w.get("nthreads", 1) for w in workers.values())
        if not self._slots:
            self._client.wait_for_workers(1, timeout=timeout or 60)
            workers = self._client.scheduler_info()["workers"]
            self._slots = sum(w.get("nthreads", 1) for w in workers.values())
        host = urlparse(self._client.scheduler.address).hostname or "127.0.0.1"
        if host in ("127.0.0.1", "localhost"):
            self.listen_host = "127.0.0.1"
        else:
            self.listen_host, self.advertise_host = "0.0.0.0", os.environ.get("HPWF_ADVERTISE") or _route_to(host)

    @property
    def slots(self) -> int:
        return self._slots

    def start(self, address: tuple[str, int], authkey: bytes) -> None:
        self._futures = submit_agents(self._client, address, authkey, self._slots, "dask")

    def failure(self, live: int, seen: int) -> str | None:
        return agents_failure(self._futures)

    def close(self, exit_code: int = 0) -> None:
        # Agents have been told to stop. Releasing their futures is enough: cancelling them can
        # block for long after a worker died (the scheduler is busy rescheduling its tasks).
        self._futures = []
        if self._owns_client and self._client is not None:
            self._client.close(timeout=10)
            self._client = None


def dask_mpi_backend() -> DaskBackend:
    """Under ``mpirun -np N``: rank 0 runs the scheduler, rank 1 this coordinator, the rest workers.

    ``dask_mpi.initialize`` returns on rank 1 only; the other ranks serve until the run ends.
    """
    import dask_mpi
    from distributed import Client

    from hpwf.backends.local import DASHBOARD_ENV, QUIET_HTTP_ADDRESS

    asked = os.environ.get(DASHBOARD_ENV)
    dask_mpi.initialize(nthreads=1, dashboard=bool(asked), dashboard_address=asked or QUIET_HTTP_ADDRESS,
                        interface=os.environ.get("HPWF_DASK_INTERFACE"))
    backend = DaskBackend(client=Client())
    backend.name = "dask-mpi"
    return backend


def _route_to(host: str) -> str:
    """This machine's address on the interface that reaches ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, 9))
            return s.getsockname()[0]
        except OSError:
            return socket.gethostname()
