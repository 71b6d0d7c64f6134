"""After the MPI job of agents ended: start it again on the hosts that still answer (MPICH's Hydra).

A node that dies takes the whole MPI job down, and a job started again on the same host list
would fail to launch on the dead node every time. Before a restart, every host named by the
``mpirun`` command line or ``HYDRA_HOST_FILE`` is probed with the same launcher
(``mpirun -hosts HOST -np 1 true``, all at once); the job then starts with the hosts that
answered and the ranks Hydra had placed on them.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from hpwf.wire import HOSTFILE_FLAGS, HOSTS_FLAGS, job_slots

PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Shrunk:
    """The launcher without its lost hosts: extra arguments, the ranks left, the hosts lost."""

    args: list[str]
    ranks: int
    lost: list[str]


def ranks_per_host(slots: Sequence[tuple[str, int]], np: int) -> dict[str, int]:
    """Where Hydra puts ``np`` ranks: each host's slots in turn, cycling while ranks are left.

    Example:
        >>> ranks_per_host([("a", 2), ("b", 1)], 5)
        {'a': 4, 'b': 1}
    """
    counts = {host: 0 for host, _ in slots}
    left = np
    while left > 0 and slots:
        for host, n in slots:
            take = min(n, left)
            counts[host] += take
            left -= take
            if not left:
                break
    return counts


def without_hosts(launcher: Sequence[str]) -> list[str]:
    """``launcher`` without its ``-hosts``/``-f`` arguments (replaced by those of `shrink`)."""
    out: list[str] = []
    skip = False
    for arg in launcher:
        if skip:
            skip = False
        elif arg in HOSTS_FLAGS or arg in HOSTFILE_FLAGS:
            skip = True
        else:
            out.append(arg)
    return out


def hosts_answering(launcher: Sequence[str], hosts: Sequence[str], env: Mapping[str, str] | None = None,
                    timeout: float = PROBE_TIMEOUT_S) -> list[str]:
    """The ``hosts`` on which ``launcher -hosts HOST -np 1 true`` succeeds within ``timeout``."""
    base = without_hosts(launcher)
    probes = {host: subprocess.Popen([*base, "-hosts", host, "-np", "1", "true"], env=dict(env or os.environ),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              for host in hosts}
    deadline = time.monotonic() + timeout
    answering = []
    for host, probe in probes.items():
        try:
            if probe.wait(timeout=max(deadline - time.monotonic(), 0.1)) == 0:
                answering.append(host)
        except subprocess.TimeoutExpired:
            probe.kill()
            probe.wait()
    return answering


def shrink(launcher: Sequence[str], np: int, env: Mapping[str, str] | None = None) -> Shrunk | None:
    """The launcher's hosts that still answer and the ranks they held; ``None`` when every host
    answers, none does, or the command names fewer than two hosts."""
    slots = job_slots(launcher, env)
    if len(slots) < 2:
        return None
    alive = set(hosts_answering(launcher, [host for host, _ in slots], env))
    lost = [host for host, _ in slots if host not in alive]
    if not lost or not alive:
        return None
    placed = ranks_per_host(slots, np)
    kept = [(host, n) for host, n in slots if host in alive]
    ranks = sum(placed[host] for host, _ in kept)
    return Shrunk(["-hosts", ",".join(f"{host}:{n}" for host, n in kept)], ranks, lost)
