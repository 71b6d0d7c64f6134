"""The embedded default: a `distributed.LocalCluster` whose worker threads each keep one agent running.

The cluster speaks TLS with a certificate made for this run and kept in memory: a process of
another user (or any process without the certificate) that connects to the scheduler, a nanny
or a worker is refused before it can send a task. Dask's HTTP pages are off.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from hpwf.agent import serve_in_child
from hpwf.backends._base import Backend
from hpwf.backends._dask_security import (
    LOOPBACK_HTTP, NO_HTTP_PAGES, remove_key_file, serve_with_key_file, write_key_file,
)

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

    from hpwf._channel import Address


class LocalBackend(Backend):
    """Dask worker processes, at most one per core, with a thread per slot; each slot's agent
    runs in a light child process (no Optuna, no Dask) that the task starts again after an
    abort. So 16 slots on 2 cores start 2 Dask processes, not 16. A killed worker is restarted
    by its nanny and Dask starts its agents again. Without a dashboard, Dask's (emptied) HTTP server sits on a free loopback
    port, so another user's cluster on port 8787 brings no warning.

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
        self._key_file: Path | None = None

    @property
    def slots(self) -> int:
        return self.workers

    def start(self, address: Address, authkey: bytes) -> None:
        import dask
        from distributed import Client, LocalCluster
        from distributed.security import Security

        processes = min(self.workers, os.cpu_count() or 1)
        with dask.config.set(NO_HTTP_PAGES):  # the nannies hand this config on to their workers
            self._cluster = LocalCluster(
                n_workers=processes, threads_per_worker=-(-self.workers // processes), processes=True, host="127.0.0.1",
                security=Security.temporary(), dashboard_address=None,
                scheduler_kwargs={"dashboard_address": LOOPBACK_HTTP}, silence_logs=logging.ERROR,
            )
        self._client = Client(self._cluster)
        self._key_file = write_key_file(authkey, address)
        self._futures = submit_agents(self._client, address, self._key_file, self.workers, "local",
                                      self.report_dir)

    def failure(self, live: int, seen: int) -> str | None:
        return agents_failure(self._futures)

    def close(self, exit_code: int = 0) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None
        remove_key_file(self._key_file)
        self._key_file = None


def submit_agents(client, address: Address, key_file: Path, count: int, prefix: str,  # type: ignore[no-untyped-def]
                  reports: Path | None = None, in_child: bool = True) -> list:
    """Start ``count`` agents as long-running Dask tasks, one per worker where possible.

    A task carries the hub's address and the path of the key file, never the key itself. An
    agent that cannot reach the coordinator leaves a report in ``reports`` (`hpwf._reach`).
    ``in_child``: the agent runs in a child of the worker, started again after an abort, so the
    worker lives and Dask's ``allowed-failures`` is never used up.
    """
    workers = list(client.scheduler_info()["workers"]) or [None]
    run = secrets.token_hex(4)  # keys unique per run: a shared cluster may still know an older run's agents
    futures = []
    for i in range(count):
        where = workers[i % len(workers)]
        body = (serve_in_child, serve_with_key_file) if in_child else (serve_with_key_file,)
        futures.append(client.submit(
            *body, address, str(key_file), f"{prefix}-{i}", reports=reports,
            key=f"hpwf-agent-{prefix}-{i}-{run}",
            pure=False, workers=[where] if where else None, allow_other_workers=where is not None,
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
