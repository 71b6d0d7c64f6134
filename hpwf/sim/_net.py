"""A simulated network and clock for the engine: in-memory connections, virtual time, events.

Single-threaded and deterministic: nothing sleeps, nothing depends on object ids or wall time.
A connection carries bytes: each message as the real wire frame (`hpwf.wire.encode`), read back
by the real framing (`hpwf.wire.Frames`), so a peer may send half a frame (`SimConn.send_bytes`).
A `SimSession` is a real `hpwf.engine.Session` whose hub and poller are this network: while the
coordinator waits in ``poll``, virtual time jumps to the next event (a message arriving, an
agent's heartbeat, a trial ending) and the event runs.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any, Callable

from hpwf.backends import Backend
from hpwf.engine.ledger import Ledger
from hpwf.engine.session import Session
from hpwf.wire import Frames, encode


class SimClock:
    """Virtual time: ``now`` and ``wall`` only move when the simulation moves them."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1.7e9 + self.t


class Events:
    """A queue of callbacks at virtual times (ties keep the order they were added in)."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def at(self, when: float, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (max(when, self.clock.t), self._seq, action))

    def after(self, delay: float, action: Callable[[], None]) -> None:
        self.at(self.clock.t + delay, action)

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def run_due(self) -> int:
        """Run every event due by now (including those they add for now); how many ran."""
        ran = 0
        while self._heap and self._heap[0][0] <= self.clock.t:
            _, _, action = heapq.heappop(self._heap)
            action()
            ran += 1
        return ran


class WouldBlock(BaseException):
    """A read of a connection with nothing to read: a real socket would block the coordinator."""


class SimConn:
    """One end of a simulated connection. Messages travel as wire frames and arrive after the
    link's delay; one link keeps its order (as TCP does)."""

    def __init__(self, events: Events, number: int) -> None:
        self.events = events
        self.number = number
        self.peer: SimConn | None = None
        self.inbox: deque[bytes] = deque()
        self.frames = Frames()
        self.closed = False
        self.delay: Callable[[], float] = lambda: 0.0
        self.on_message: Callable[[], None] | None = None  # the agent side: run when a message arrives
        self._last_arrival = 0.0

    def fileno(self) -> int:
        if self.closed:
            raise OSError("closed")
        return self.number

    def send(self, message: Any) -> None:
        self.send_bytes(encode(message))

    def send_bytes(self, data: bytes) -> None:
        """``data`` as written to the socket: whole frames, or a frame's first bytes only."""
        if self.closed or self.peer is None or self.peer.closed:
            raise BrokenPipeError("closed")
        peer = self.peer
        arrival = max(self.events.clock.t + self.delay(), self._last_arrival)  # in order on one link
        self._last_arrival = arrival

        def arrive() -> None:
            if not peer.closed:
                peer.inbox.append(data)
                if peer.on_message is not None:
                    peer.on_message()
        self.events.at(arrival, arrive)

    def take(self) -> list[Any]:
        """As `hpwf.wire._framed.Framed.take`: the messages complete in what arrived (a partial
        frame stays buffered); EOFError once the peer closed and nothing is left; `WouldBlock`
        for a read with nothing to read (the engine must never make one)."""
        if not self.inbox:
            if self.peer is not None and self.peer.closed or self.closed:
                raise EOFError("closed")
            raise WouldBlock(f"connection {self.number}: a read with nothing to read")
        chunk = b"".join(self.inbox)
        self.inbox.clear()
        return self.frames.feed(chunk)

    def readable(self) -> bool:
        return bool(self.inbox) or (self.peer is not None and self.peer.closed and not self.closed)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        peer = self.peer
        if peer is not None and not peer.closed and peer.on_message is not None:
            self.events.after(0.0, peer.on_message)  # the peer sees the hang-up


class SimHub:
    address = ("sim", 0)
    authkey = b"sim"

    def __init__(self) -> None:
        self.new: list[SimConn] = []
        self.closed = False

    def take_new(self) -> list[SimConn]:
        new, self.new = self.new, []
        return new

    def close(self) -> None:
        self.closed = True
        for conn in self.take_new():
            conn.close()


class SimBackend(Backend):
    """Says how many agents to expect; the simulation starts them itself."""

    name = "sim"

    def __init__(self, slots: int, group_mode: str = "launch") -> None:
        self._slots = slots
        self.group_mode = group_mode

    @property
    def slots(self) -> int:
        return self._slots

    def start(self, address: Any, authkey: bytes) -> None:
        pass

    def failure(self, live: int, seen: int) -> str | None:
        """As `hpwf.backends.mpi_world.MPIBackend`: MPI ranks that are gone never come back."""
        if self.group_mode == "mpi" and seen >= self._slots and live < self._slots:
            return f"{self._slots - live} of {self._slots} worker ranks are gone"
        return None

    def close(self, exit_code: int = 0) -> None:
        pass


class SimSession(Session):
    """A `Session` over the simulated network: ``poll`` advances virtual time to the next event.

    Its ledger is ``ledger`` (a `hpwf.engine.ledger.Ledger`, or a subclass that watches it). A
    connection marks itself ready when something arrives, so a poll costs the same with 4 agents
    or 4,096.
    """

    def __init__(self, backend: Backend, clock: SimClock, events: Events, ledger: Ledger | None = None) -> None:
        super().__init__(backend, clock=clock, hub_factory=SimHub)
        self.clock: SimClock = clock
        self.events = events
        self.watched: dict[int, SimConn] = {}
        self._ready: dict[int, SimConn] = {}  # connections that may have something to read
        if ledger is not None:
            self.ledger = ledger

    def __enter__(self) -> SimSession:
        self.hub = SimHub()
        return self

    def __exit__(self, *exc: object) -> None:
        from hpwf.wire import Stop, send_quietly

        for agent in list(self.ledger.agents.values()):
            send_quietly(agent.conn, Stop("done"))
            self.drop(agent.conn)
        self.hub.close()
        self.events.run_due()
        self.release()

    def release(self) -> None:
        """Close the poller (the simulated hub and connections hold no descriptor)."""
        self._selector.close()

    def watch(self, conn: Any) -> None:
        self.watched[conn.number] = conn
        conn.on_message = lambda: self._ready.setdefault(conn.number, conn)
        if conn.readable():
            self._ready[conn.number] = conn

    def drop(self, conn: Any) -> None:
        self.watched.pop(conn.number, None)
        self._ready.pop(conn.number, None)
        conn.close()

    def _readable(self) -> list[SimConn]:
        self._ready = {n: c for n, c in self._ready.items() if c.readable() and n in self.watched}
        return list(self._ready.values())

    def poll(self, timeout: float) -> list[Any]:
        self.events.run_due()
        ready = self._readable()
        if ready:
            return ready
        deadline = self.clock.t + timeout
        while True:
            nxt = self.events.next_time()
            if nxt is None or nxt > deadline:
                self.clock.t = deadline
                self.events.run_due()
                break
            self.clock.t = nxt
            self.events.run_due()
            if self._readable() or self.hub.new:
                break
        return self._readable()
