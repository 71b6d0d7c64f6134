"""The embedded default: a `distributed.LocalCluster` whose worker processes each run one agent."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from pathlib import Path

from hpwf._reach import serve_or_report
from hpwf.agent import serve_in_child
from hpwf.backends._base import Backend

if TYPE_CHECKING:
    from distributed import Client, LocalCluster


# Without a dashboard a Dask scheduler still serves HTTP (health, metrics), by default on port
# 8787, warning "Port 8787 is already in use" when another user's cluster has it: a free port on
# the loopback interface instead. HPWF_DASK_DASHBOARD=ADDRESS (e.g. ":8787") asks for the dashboard.
QUIET_HTTP_ADDRESS = "127.0.0.1:0"
DASHBOARD_ENV = "HPWF_DASK_DASHBOARD"


class LocalBackend(Backend):
    """One single-threaded Dask worker process per slot; a killed worker is restarted by its nanny
    and Dask starts its agent again.

    Example:
        >>> backend = LocalBackend(workers=2)
        >>> backend.slots
        2
    """

    name = "local"
    starts_slowly = True  # the cluster's processes start while the store opens and trials are asked

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._cluster: LocalCluster | None = None
        self._client: Client | None = None
        self._futures: list = []

    @property
    def slots(self) -> int:
        return self.workers

    def start(self, address: tuple[str, int], authkey: bytes) -> None:
        from distributed import Client, LocalCluster

        asked = os.environ.get(DASHBOARD_ENV)  # Dask's dashboard only when asked for
        self._cluster = LocalCluster(
            n_workers=self.workers, threads_per_worker=1, processes=True,
            dashboard_address=asked or None, silence_logs=logging.ERROR,
            scheduler_kwargs={} if asked else {"dashboard_address": QUIET_HTTP_ADDRESS},
        )
        self._client = Client(self._cluster)
        self._futures = submit_agents(self._client, address, authkey, self.workers, "local")

    def failure(self, live: int, seen: int) -> str | None:
        return agents_failure(self._futures)

    def close(self, exit_code: int = 0) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None


def submit_agents(client, address: tuple[str, int], authkey: bytes, count: int, prefix: str,  # type: ignore[no-untyped-def]
                  reports: Path | None = None) -> list:
    """Start ``count`` agents as long-running Dask tasks, one per worker where possible.

    An agent that cannot reach the coordinator leaves a report in ``reports`` (`hpwf._reach`).
    """
    workers = list(client.scheduler_info()["workers"]) or [None]
    run = authkey.hex()[:8]  # keys unique per run: a shared cluster may still know an older run's agents
    futures = []
    for i in range(count):
        where = workers[i % len(workers)]
        futures.append(client.submit(
            serve_in_child, serve_or_report, address, authkey, f"{prefix}-{i}", reports=reports,
            key=f"hpwf-agent-{prefix}-{i}-{run}",
            pure=False, workers=[where] if where else None, allow_other_workers=True,
        ))
    return futures


def agents_failure(futures: list) -> str | None:  # type: ignore[type-arg]
    """A message once every agent task has ended in error (e.g. Dask's KilledWorker)."""
    if not futures or not all(f.done() for f in futures):
        return None
    errors = [f.exception() for f in futures if f.status == "error"]
    if len(errors) < len(futures):
        return None
    return f"all {len(futures)} agents failed; last error: {type(errors[-1]).__name__}: {errors[-1]}"
