"""An in-process hub, agents and clock for the engine's unit tests: fast and deterministic.

Messages are pickled on the way, as on the real wire, so a test can also send bytes that do not
unpickle. `FakeSession.poll` never sleeps: it advances the fake clock by its timeout instead.
"""

from __future__ import annotations

import pickle
from collections import deque
from pathlib import Path
from typing import Any

import optuna

from hpwf.wire._dists import float_dist
from hpwf.wire._protocol import Assign, Done, DoneState, Heartbeat, Hello, Report, Setup, Stop, Suggest
from hpwf.backends import Backend
from hpwf.engine import Budget, Coordinator, Session


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1.7e9 + self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class End:
    """One end of an in-memory connection."""

    def __init__(self) -> None:
        self.inbox: deque[bytes] = deque()
        self.peer: End | None = None
        self.closed = False

    def send(self, message: Any) -> None:
        self.send_bytes(pickle.dumps(message))

    def send_bytes(self, data: bytes) -> None:
        if self.closed or self.peer is None or self.peer.closed:
            raise BrokenPipeError("closed")
        self.peer.inbox.append(data)

    def recv(self) -> Any:
        if not self.inbox:
            raise EOFError("closed")
        return pickle.loads(self.inbox.popleft())

    def take(self) -> list[Any]:
        """As `hpwf.wire._framed.Framed.take`: here one message at a time."""
        return [self.recv()]

    def readable(self) -> bool:
        return bool(self.inbox) or (self.peer is not None and self.peer.closed)

    def close(self) -> None:
        self.closed = True

    def fileno(self) -> int:
        return id(self)


def pipe() -> tuple[End, End]:
    a, b = End(), End()
    a.peer, b.peer = b, a
    return a, b


class FakeHub:
    address = ("fake", 0)
    authkey = b"k"

    def __init__(self) -> None:
        self.new: list[End] = []

    def take_new(self) -> list[End]:
        new, self.new = self.new, []
        return new

    def close(self) -> None:
        pass


class FakeSession(Session):
    """A `Session` over `FakeHub`: no sockets, no threads, no sleeping."""

    def __init__(self, backend: Backend, clock: FakeClock) -> None:
        super().__init__(backend, clock=clock, hub_factory=FakeHub)
        self.clock: FakeClock = clock
        self.watched: dict[int, End] = {}

    def __enter__(self) -> FakeSession:
        self.hub = FakeHub()
        self.backend.start(self.hub.address, self.hub.authkey)
        return self

    def __exit__(self, *exc: object) -> None:
        for agent in list(self.ledger.agents.values()):
            agent.conn.close()

    def watch(self, conn: Any) -> None:
        self.watched[conn.fileno()] = conn

    def drop(self, conn: Any) -> None:
        self.watched.pop(conn.fileno(), None)
        conn.close()

    def poll(self, timeout: float) -> list[Any]:
        ready = [c for c in self.watched.values() if c.readable()]
        if not ready:
            self.clock.advance(timeout)
        return ready

    def connect(self, name: str, rank: int | None = None, host: str = "h1", attach: int | None = None) -> FakeAgent:
        ours, theirs = pipe()
        self.hub.new.append(ours)
        agent = FakeAgent(theirs, name)
        theirs.send(Hello(name, host, 1, rank, attach))
        return agent


class FakeAgent:
    """The agent side, driven by the test."""

    def __init__(self, end: End, name: str) -> None:
        self.end = end
        self.name = name
        self.setup: Setup | None = None
        self.stopped = False

    def messages(self) -> list[Any]:
        out = []
        while self.end.inbox:
            message = self.end.recv()
            if isinstance(message, Setup):
                self.setup = message
            elif isinstance(message, Stop):
                self.stopped = True
            out.append(message)
        return out

    def assigns(self) -> list[Assign]:
        return [m for m in self.messages() if isinstance(m, Assign)]

    def beat(self, ticket: int | None = None) -> None:
        self.end.send(Heartbeat(ticket))

    def finish(self, task: Assign, value: float = 1.0, state: str = "complete") -> None:
        self.end.send(Done(task.ticket, state, [value] if state == "complete" else None, None, 0.01))

    def suggest(self, ticket: int, name: str = "x") -> None:
        self.end.send(Suggest(ticket, name, float_dist(0, 1, None, False)))

    def report(self, ticket: int, value: float, step: int) -> None:
        self.end.send(Report(ticket, step, value))

    def pause(self, task: Assign) -> None:
        self.end.send(Done(task.ticket, DoneState.PAUSED, None, None, 0.01))


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, slots: int, group_mode: str = "launch") -> None:
        self._slots = slots
        self.group_mode = group_mode

    @property
    def slots(self) -> int:
        return self._slots

    def start(self, address: tuple[str, int], authkey: bytes) -> None:
        pass

    def close(self, exit_code: int = 0) -> None:
        pass


def coordinator(session: FakeSession, tmp: Path, n_trials: int = 4, directions: int = 1, **options: Any) -> Coordinator:
    """A coordinator on a fresh in-memory study, joined to ``session``."""
    tmp.mkdir(parents=True, exist_ok=True)
    study = options.pop("study", None) or optuna.create_study(directions=["minimize"] * directions,
                                sampler=optuna.samplers.RandomSampler(seed=0), pruner=options.pop("pruner", None))
    setup = Setup(str(tmp), None, None, heartbeat_s=options.get("heartbeat", 10.0), n_objectives=directions)
    budget = Budget(n_trials=n_trials, timeout=options.pop("timeout", None), max_failures=options.pop("max_failures", 100))
    make_scheduler = options.pop("scheduler", None)  # a function of the study
    c = Coordinator(study, session.backend, setup, tmp, budget, run_id="run-a", seed=0,
                    scheduler=make_scheduler(study) if make_scheduler else None, **options)
    c.begin(session)
    return c


def turn(c: Coordinator, times: int = 1, timeout: float = 0.25) -> None:
    for _ in range(times):
        c.step(timeout)
