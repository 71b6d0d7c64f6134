"""What the phases of a run share: the hub, the backend, the agents (in the ledger) and a clock.

A `Session` outlives its phases (the search, then the ensemble): agents connect once and serve
every phase. It polls the agents' connections with one long-lived selector, so receiving a
message costs the same with 16 agents or 4,096.
"""

from __future__ import annotations

import selectors
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from hpwf.backends import Backend
from hpwf.engine.ledger import AgentRecord, AgentState, Ledger
from hpwf.wire import Hub, Stop, send_quietly


class Clock(Protocol):
    """The engine's time: ``now()`` for intervals (monotonic), ``wall()`` for timestamps in the store."""

    def now(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


@dataclass
class Budget:
    """When to stop asking: ``n_trials`` finished (COMPLETE/PRUNED), ``timeout`` seconds overall."""

    n_trials: int | None
    timeout: float | None
    max_failures: int
    elapsed_before: float = 0.0  # seconds spent by earlier sessions of this run


@dataclass
class Counts:
    """What a phase finished, for the budget, the progress line and the summary."""

    complete: int = 0
    pruned: int = 0
    fail: int = 0
    fail_here: int = 0  # failures in this session (for max_failures)
    best_value: float | None = None
    best_number: int | None = None
    best_params: dict[str, Any] = field(default_factory=dict)

    @property
    def finished_ok(self) -> int:
        return self.complete + self.pruned


class Session:
    """The hub, the backend, the agents and the poller; a context manager around a run's phases."""

    def __init__(self, backend: Backend, clock: Clock | None = None, hub_factory: Callable[[], Any] | None = None) -> None:
        self.backend = backend
        self.clock: Clock = clock or SystemClock()
        self.ledger = Ledger(self.clock.now)
        self.hub: Any = None
        self._hub_factory = hub_factory or (lambda: Hub(backend.listen_host, backend.advertise_host))
        self._selector = selectors.DefaultSelector()
        self.agents_seen = 0
        self.busy_ended = 0.0  # busy seconds of agents that are gone
        self.heartbeat = 0.0  # the longest heartbeat any phase asked for (agents may still use it)
        self._starter: threading.Thread | None = None
        self.start_error: BaseException | None = None

    def __enter__(self) -> Session:
        self.hub = self._hub_factory()
        if hasattr(self.hub, "expect"):  # known agents first (a simulated hub has no slots)
            self.hub.expect(self.backend.agent_hosts)
        self._selector.register(self.hub.wake_fd, selectors.EVENT_READ, None)
        if self.backend.starts_slowly:  # the store opens and the first trials are asked meanwhile
            self._starter = threading.Thread(target=self._start, name="hpwf-backend-start", daemon=True)
            self._starter.start()
        else:
            self.backend.start(self.hub.address, self.hub.authkey)
        return self

    def _start(self) -> None:
        try:
            self.backend.start(self.hub.address, self.hub.authkey)
        except BaseException as exc:  # noqa: BLE001 - raised in the loop by `check_started`
            self.start_error = exc

    def check_started(self) -> None:
        """Raise what starting the backend in the background raised, in the caller's thread."""
        if self.start_error is not None:
            error, self.start_error = self.start_error, None
            raise error

    def __exit__(self, *exc: object) -> None:
        for agent in self.ledger.agents_in(*AgentState):
            send_quietly(agent.conn, Stop("done"))
            self.drop(agent.conn)
        if self._starter is not None:
            self._starter.join()
        self.backend.close()
        if self.hub is not None:
            self.hub.close()
        self._selector.close()

    def busy_seconds(self) -> float:
        """Rank-seconds agents spent busy so far in this session (gone agents included)."""
        now = self.clock.now()
        return self.busy_ended + sum(a.busy_total + (now - a.busy_since if a.state == AgentState.BUSY else 0.0)
                                     for a in self.ledger.agents.values())

    # --- connections -------------------------------------------------------------------------
    def accept(self) -> list[AgentRecord]:
        """Agents whose connections the hub accepted since the last call."""
        new = []
        for conn in self.hub.take_new():
            self.watch(conn)
            new.append(self.ledger.add_agent(conn))
        return new

    def watch(self, conn: Any) -> None:
        self._selector.register(conn.fileno(), selectors.EVENT_READ, conn)

    def drop(self, conn: Any) -> None:
        """Stop polling ``conn`` and close it."""
        try:
            self._selector.unregister(conn.fileno())
        except (KeyError, ValueError, OSError):
            pass
        conn.close()

    def poll(self, timeout: float) -> list[Any]:
        """Connections with something to read (or that closed); wakes early on a new connection."""
        ready = []
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                self.hub.clear_wake()
            else:
                ready.append(key.data)
        return ready
