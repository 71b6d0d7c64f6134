"""Dask cluster backends: an existing scheduler (``--scheduler ADDRESS``) or dask-mpi.

One agent per worker thread, started as a long-lived Dask task; trials of several ranks are
launched by their first agent (``mpirun -np K`` on that worker's node).

A ``tls://`` scheduler is reached with the user's certificates (Dask's config or explicit
paths); a plain ``tcp://`` one works but draws a one-line warning. dask-mpi runs with TLS on a
certificate made for the job and handed to its ranks over MPI.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from hpwf.backends._base import Backend
from hpwf.wire import INTERFACE_ENV, choose
from hpwf.backends._dask_security import (
    LOOPBACK_HTTP, NO_HTTP_PAGES, is_plain, plain_warning, remove_key_file, temporary_pem, tls_config,
    user_security, write_key_file,
)
from hpwf.backends.local import agents_failure, submit_agents
from hpwf.errors import ConfigError

if TYPE_CHECKING:
    from distributed.security import Security

    from hpwf.wire import Address


WORKERS_WAIT_S = 120.0


class DaskBackend(Backend):
    """Agents on the workers of a running Dask cluster.

    Example::

        backend = DaskBackend(scheduler="tls://10.0.0.5:8786", tls_ca_file="ca.pem",
                              tls_cert="me.pem", tls_key="me.key")
        hpwf.run("workflows/quickstart.py", backend=backend)
    """

    name = "dask"

    def __init__(self, scheduler: str | None = None, client: Any = None, timeout: float | None = None,
                 interface: str | None = None, *, security: Security | None = None, tls_ca_file: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None, key_dir: str | Path | None = None) -> None:
        """Connect to the scheduler.

        Args:
            scheduler: its address; ``tls://`` needs certificates (``security``, the ``tls_*``
                paths, or Dask's config keys ``distributed.comm.tls.*``).
            client: an existing ``distributed.Client`` instead of ``scheduler``.
            timeout: seconds to reach the scheduler (default: Dask's ``comm.timeouts.connect``).
            interface: the network interface agents reach the coordinator by (default: loopback
                when the scheduler and workers are all on this host, else the one on the route to them).
            key_dir: a private directory the workers' hosts share, for the hub key file (see
                `hpwf.backends._dask_security`); default ``$HPWF_KEY_DIR`` or ``~/.hpwf/keys``.
        """
        from distributed import Client

        if client is None and scheduler and not is_plain(scheduler) and security is None:
            security = user_security(tls_ca_file, tls_cert, tls_key)
        try:
            self._client = client or Client(scheduler, security=security, **({"timeout": timeout} if timeout else {}))
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"--scheduler {scheduler}: cannot reach the Dask scheduler: {exc}") from None
        if is_plain(self._client.scheduler.address):
            from hpwf.progress import say

            say(plain_warning(self._client.scheduler.address))
        self._owns_client = client is None
        self._futures: list[Any] = []
        self.key_dir = key_dir
        self._key_file: Path | None = None
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

    def start(self, address: Address, authkey: bytes) -> None:
        self._key_file = write_key_file(authkey, address, self.key_dir)
        self._futures = submit_agents(self._client, address, self._key_file, self._slots, "dask", self.report_dir)

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
        remove_key_file(self._key_file)
        self._key_file = None


def dask_mpi_backend(interface: str | None = None) -> DaskBackend:
    """Under ``mpirun -np N``: rank 0 runs the scheduler, rank 1 this coordinator, the rest workers.

    Rank 0 makes a certificate for the job and sends it to the other ranks over MPI; every Dask
    connection of the job then needs it (TLS both ways). ``dask_mpi.initialize`` returns on
    rank 1 only; the other ranks serve until the run ends. ``interface`` (else ``HPWF_INTERFACE``,
    else ``HPWF_DASK_INTERFACE``) is used by Dask's scheduler and workers as well as by the
    coordinator.
    """
    import dask
    import dask_mpi
    from distributed import Client
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    cert, key = world.bcast(temporary_pem() if world.Get_rank() == 0 else None, root=0)
    dask.config.set({**tls_config(cert, key), **NO_HTTP_PAGES})  # this process is the job's rank: for good
    interface = interface or os.environ.get(INTERFACE_ENV) or os.environ.get("HPWF_DASK_INTERFACE")
    dask_mpi.initialize(nthreads=1, dashboard=False, dashboard_address=LOOPBACK_HTTP, protocol="tls",
                        interface=interface)
    client = Client()
    workers = world.Get_size() - 2
    try:  # every worker rank, not just the first to register (on other nodes they come later)
        client.wait_for_workers(max(workers, 1), timeout=WORKERS_WAIT_S)
    except TimeoutError:
        from hpwf.progress import say

        say(f"[hpwf] only {len(client.scheduler_info()['workers'])} of {workers} dask-mpi workers "
            f"registered within {WORKERS_WAIT_S:.0f} s; the run goes on with them")
    backend = DaskBackend(client=client, interface=interface)
    backend.name = "dask-mpi"
    return backend
