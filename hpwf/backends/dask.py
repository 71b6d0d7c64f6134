"""Dask cluster backends: an existing scheduler (``--scheduler ADDRESS``) or dask-mpi.

One agent per worker thread, started as a long-lived Dask task; trials of several ranks are
launched by their first agent (``mpirun -np K`` on that worker's node).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from hpwf._netif import INTERFACE_ENV, choose
from hpwf.backends._base import Backend
from hpwf.backends.local import agents_failure, submit_agents
from hpwf.errors import ConfigError


WORKERS_WAIT_S = 120.0


class DaskBackend(Backend):
    """Agents on the workers of a running Dask cluster.

    Example::

        backend = DaskBackend(scheduler="tcp://10.0.0.5:8786")
        hpwf.run("workflows/quickstart.py", backend=backend)
    """

    name = "dask"

    def __init__(self, scheduler: str | None = None, client: Any = None, timeout: float | None = None,
                 interface: str | None = None) -> None:
        """``timeout``: seconds to reach the scheduler (default: Dask's ``comm.timeouts.connect``).
        ``interface``: the network interface agents reach the coordinator by (default: loopback when
        the scheduler and workers are all on this host, else the one on the route to them)."""
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
        hosts = [urlparse(a).hostname or "" for a in [*workers, self._client.scheduler.address]]
        endpoint = choose([h for h in hosts if h], interface)
        self.listen_host, self.advertise_host = endpoint.listen, endpoint.advertise

    @property
    def slots(self) -> int:
        return self._slots

    def start(self, address: tuple[str, int], authkey: bytes) -> None:
        self._futures = submit_agents(self._client, address, authkey, self._slots, "dask", self.report_dir)

    def failure(self, live: int, seen: int) -> str | None:
        return self.check_unreachable() or agents_failure(self._futures)

    def close(self, exit_code: int = 0) -> None:
        # Agents have been told to stop. Releasing their futures is enough: cancelling them can
        # block for long after a worker died (the scheduler is busy rescheduling its tasks).
        self._futures = []
        self.check_unreachable()  # reports that came after the run's last look
        if self._owns_client and self._client is not None:
            self._client.close(timeout=10)
            self._client = None


def dask_mpi_backend(interface: str | None = None) -> DaskBackend:
    """Under ``mpirun -np N``: rank 0 runs the scheduler, rank 1 this coordinator, the rest workers.

    ``dask_mpi.initialize`` returns on rank 1 only; the other ranks serve until the run ends.
    ``interface`` (else ``HPWF_INTERFACE``, else ``HPWF_DASK_INTERFACE``) is used by Dask's
    scheduler and workers as well as by the coordinator.
    """
    import dask_mpi
    from distributed import Client

    from mpi4py import MPI

    from hpwf.backends.local import DASHBOARD_ENV, QUIET_HTTP_ADDRESS

    interface = interface or os.environ.get(INTERFACE_ENV) or os.environ.get("HPWF_DASK_INTERFACE")
    asked = os.environ.get(DASHBOARD_ENV)
    dask_mpi.initialize(nthreads=1, dashboard=bool(asked), dashboard_address=asked or QUIET_HTTP_ADDRESS,
                        interface=interface)
    client = Client()
    workers = MPI.COMM_WORLD.Get_size() - 2
    try:  # every worker rank, not just the first to register (on other nodes they come later)
        client.wait_for_workers(max(workers, 1), timeout=WORKERS_WAIT_S)
    except TimeoutError:
        from hpwf.progress import say

        say(f"[hpwf] only {len(client.scheduler_info()['workers'])} of {workers} dask-mpi workers "
            f"registered within {WORKERS_WAIT_S:.0f} s; the run goes on with them")
    backend = DaskBackend(client=client, interface=interface)
    backend.name = "dask-mpi"
    return backend
