"""The embedded default: a `distributed.LocalCluster` in the coordinator's process, whose
worker threads each keep one agent process running.

The cluster talks over ``inproc://`` (memory, no socket), so there is no Dask port for another
user to probe; Dask's HTTP pages are off and its (empty) HTTP server listens on a free loopback
port. Dask's scratch space is a fresh private folder (`private_scratch`), removed at close. Agents are separate processes, light (no Optuna, no Dask), and reach the coordinator's hub
with the key in a file only this user can read.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from hpwf.backends._base import Backend
from hpwf.worker import AGENTS_ENV, allow_children, end_children, private_scratch, serve_in_child
from hpwf.backends._dask_security import (
    LOOPBACK_HTTP, NO_HTTP_PAGES, remove_key_file, serve_with_key_file, write_key_file,
)

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

    from hpwf.wire import Address


class LocalBackend(Backend):
    """A thread of the in-process Dask worker per slot; each slot's agent runs in a child
    process that the thread starts again after an abort, and that dies with the coordinator.
    Start-up is one interpreter per slot importing only hpwf's agent (`bench agent_weight`).

    Example:
        >>> backend = LocalBackend(workers=2)
        >>> backend.slots
        2
    """

    name = "local"
    starts_slowly = True  # the agents start while the store opens and trials are asked

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._cluster: LocalCluster | None = None
        self._client: Client | None = None
        self._futures: list = []
        self._key_file: Path | None = None
        self._scratch: str | None = None

    @property
    def slots(self) -> int:
        return self.workers

    def start(self, address: Address, authkey: bytes) -> None:
        import dask
        from distributed import Client, LocalCluster

        allow_children()
        self._scratch = private_scratch("hpwf-dask-")  # not the shared dask-scratch-space
        with dask.config.set({**NO_HTTP_PAGES, "temporary-directory": self._scratch}):
            self._cluster = LocalCluster(
                n_workers=1, threads_per_worker=self.workers, processes=False, protocol="inproc://",
                dashboard_address=None, scheduler_kwargs={"dashboard_address": LOOPBACK_HTTP},
                worker_dashboard_address=LOOPBACK_HTTP, local_directory=self._scratch,
                silence_logs=logging.ERROR,
            )
        self._client = Client(self._cluster)
        self._key_file = write_key_file(authkey, address)
        self._futures = submit_agents(self._client, address, self._key_file, self.workers, "local",
                                      self.report_dir)

    def failure(self, live: int, seen: int) -> str | None:
        return agents_failure(self._futures)

    def close(self, exit_code: int = 0) -> None:
        end_children()  # the worker threads wait for them: the cluster closes once they are gone
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None
        remove_key_file(self._key_file)
        self._key_file = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def submit_agents(client, address: Address, key_file: Path, count: int, prefix: str,  # type: ignore[no-untyped-def]
                  reports: Path | None = None, in_child: bool = True) -> list:
    """Start ``count`` agents as long-running Dask tasks, one per worker where possible.

    A task carries the hub's address and the path of the key file, never the key itself. An
    agent that cannot reach the coordinator leaves a report in ``reports`` (`hpwf.wire._reach`).
    ``in_child``: the agent runs in a child of the worker, started again after an abort, so the
    worker lives and Dask's ``allowed-failures`` is never used up.
    """
    info = client.scheduler_info()["workers"]
    workers = list(info) or [None]
    run = secrets.token_hex(4)  # keys unique per run: a shared cluster may still know an older run's agents
    places = [workers[i % len(workers)] for i in range(count)]
    hosts = [info[w].get("host") if w else None for w in places]
    futures = []
    for i, where in enumerate(places):
        body = (serve_in_child, serve_with_key_file) if in_child else (serve_with_key_file,)
        # the agents this host runs share its cores (`hpwf.worker._threads`)
        extra = {"child_env": {AGENTS_ENV: str(hosts.count(hosts[i]))}} if in_child else {}
        futures.append(client.submit(
            *body, address, str(key_file), f"{prefix}-{i}", reports=reports, **extra,
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
