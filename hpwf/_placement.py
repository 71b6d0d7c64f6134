"""Which free agents train a trial of ``size`` ranks, and which waiting trial goes next."""

from __future__ import annotations

from collections import defaultdict
from typing import Hashable, Sequence, TypeVar

K = TypeVar("K", bound=Hashable)


def choose_agents(free: Sequence[tuple[K, str, int]], size: int) -> list[K] | None:
    """Pick ``size`` agents from ``free`` = [(key, host, rank)], fewest hosts first.

    Agents on one host are taken together when one host has enough; otherwise the hosts with
    the most free agents are combined. Within a host, lower ranks come first (the leader is the
    lowest). ``None`` when fewer than ``size`` are free.

    Example:
        >>> choose_agents([("a", "n1", 1), ("b", "n2", 2), ("c", "n2", 3)], 2)
        ['b', 'c']
    """
    if size > len(free):
        return None
    by_host: dict[str, list[tuple[int, K]]] = defaultdict(list)
    for key, host, rank in free:
        by_host[host].append((rank, key))
    fitting = [h for h, agents in by_host.items() if len(agents) >= size]
    if fitting:
        host = min(fitting, key=lambda h: (len(by_host[h]), h))  # the tightest fit keeps big blocks free
        return [key for _, key in sorted(by_host[host], key=lambda x: x[0])[:size]]
    chosen: list[tuple[int, K]] = []
    for host in sorted(by_host, key=lambda h: (-len(by_host[h]), h)):
        chosen.extend(sorted(by_host[host], key=lambda x: x[0]))
        if len(chosen) >= size:
            break
    return [key for _, key in chosen[:size]]


def next_fitting(sizes: Sequence[int], free: int, head_must_go_first: bool) -> int | None:
    """Index of the first waiting trial (by age) that fits in ``free`` ranks.

    When the oldest trial has waited too long (``head_must_go_first``), nothing may pass it.

    Example:
        >>> next_fitting([4, 1], free=2, head_must_go_first=False)
        1
        >>> next_fitting([4, 1], free=2, head_must_go_first=True) is None
        True
    """
    for i, size in enumerate(sizes):
        if size <= free:
            return i
        if head_must_go_first:
            return None
    return None
