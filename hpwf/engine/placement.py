"""Which free agents train a trial of ``size`` ranks, which waiting trial goes next, and when to ask."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")
RESERVE_AFTER_S = 30.0  # a waiting big trial that waited this long is placed before smaller ones


def choose_agents(free: Sequence[tuple[K, str, int]], size: int, one_host: bool = False) -> list[K] | None:
    """Pick ``size`` agents from ``free`` = [(key, host, rank)], fewest hosts first.

    Agents on one host are taken together when one host has enough; otherwise the hosts with
    the most free agents are combined. Within a host, lower ranks come first (the leader is the
    lowest). ``None`` when fewer than ``size`` are free (or, with ``one_host``, free on one host).

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
    if one_host:
        return None
    chosen: list[tuple[int, K]] = []
    for host in sorted(by_host, key=lambda h: (-len(by_host[h]), h)):
        chosen.extend(sorted(by_host[host], key=lambda x: x[0]))
        if len(chosen) >= size:
            break
    return [key for _, key in chosen[:size]]


def choose_from_hosts(idle: Mapping[str, Mapping[K, R]], size: int, rank: Callable[[R], int],
                      one_host: bool = False) -> list[R] | None:
    """`choose_agents` over idle agents already grouped by host: O(hosts) for one rank.

    Example:
        >>> choose_from_hosts({"n1": {"a": 1}, "n2": {"b": 2, "c": 3}}, 2, rank=lambda r: r)
        [2, 3]
    """
    if size == 1:  # the host with the fewest idle agents keeps bigger blocks free
        hosts = [h for h, agents in idle.items() if agents]
        if not hosts:
            return None
        return [next(iter(idle[min(hosts, key=lambda h: (len(idle[h]), h))].values()))]
    free = [(key, host, rank(record)) for host, agents in idle.items() for key, record in agents.items()]
    chosen = choose_agents(free, size, one_host)
    if chosen is None:
        return None
    where = {key: host for key, host, _ in free}
    return [idle[where[key]][key] for key in chosen]


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


def may_ask(free: int, smallest: int, waiting: int, agents: int) -> bool:
    """Whether to ask for one more trial: one of the ``smallest`` size could use the ``free``
    ranks, and fewer than one asked trial per agent is ``waiting`` for ranks.

    Example:
        >>> may_ask(free=2, smallest=1, waiting=2, agents=8)  # two big trials wait: ask a small one
        True
        >>> may_ask(free=1, smallest=2, waiting=0, agents=8)  # no trial could start now
        False
    """
    return free >= smallest and waiting < agents


def next_waiting(oldest_first: Iterable[Any], now: float, free: int) -> Any | None:
    """The oldest waiting trial that fits in ``free`` ranks; once the oldest has waited
    `RESERVE_AFTER_S`, only it (a big trial is not starved by smaller ones)."""
    for record in oldest_first:
        if record.size <= free:
            return record
        if now - record.since > RESERVE_AFTER_S:
            return None
    return None
