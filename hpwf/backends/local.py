"""The embedded default: a `distributed.LocalCluster` whose worker processes each run one agent."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from hpwf.agent import serve
from hpwf.backends._base import Backend

if TYPE_CHECKING:
    from distributed import Client, LocalCluster


class LocalBackend(Backend):
    """One single-threaded Dask worker process per slot; a killed worker is restarted by its nanny
    and Dask starts its agent again.

    Example:
        >>> backend = LocalBackend(workers=2)
        >>> backend.slots
        2
    """

    name = "local"

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

        self._cluster = LocalCluster(
            n_workers=self.workers, threads_per_worker=1, processes=True,
            dashboard_address=None, silence_logs=logging.ERROR,
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


def submit_agents(client, address: tuple[str, int], authkey: bytes, count: int, prefix: str) -> list:  # type: ignore[no-untyped-def]
    """Start ``count`` agents as long-running Dask tasks, one per worker where possible."""
    workers = list(client.scheduler_info()["workers"]) or [None]
    run = authkey.hex()[:8]  # keys unique per run: a shared cluster may still know an older run's agents
    futures = []
    for i in range(count):
        where = workers[i % len(workers)]
        futures.append(client.submit(
            serve, address, authkey, f"{prefix}-{i}", key=f"hpwf-agent-{prefix}-{i}-{run}",
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
