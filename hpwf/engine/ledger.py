"""The trial ledger: every trial and every agent is in exactly one state, changed in one place.

A trial here is one attempt of an Optuna trial, keyed by a ticket that is unique in the
session (so a late message from the search can never land on an ensemble member with the
same trial number). `Ledger.move` and `Ledger.move_agent` are the only functions that change
a state; they reject moves the life cycle does not allow. Each state keeps its own
insertion-ordered set, so counts, the waiting queue and the free agents cost O(1).

Trial life: ASKED -> WAITING (too big for the free ranks) -> PLACED (sent to agents; back to
WAITING if none could be reached) -> RUNNING (a message of it arrived) -> DONE (its result is
durable in its folder, not yet in the store) -> TOLD. Any live state may end FAILED; a failed
trial queued to run again is REQUEUED. A scheduler may pause a RUNNING trial (PAUSED: its checkpoint saved, its agents
free); it waits again (WAITING, under a new ticket: `reticket`) or ends (DONE: pruned, or a
PBT segment told complete). A resume adopts trials the last run left paused (ASKED -> PAUSED).

Agent life: CONNECTING (accepted, no Hello yet) -> IDLE <-> BUSY (runs a rank of a trial) /
RESERVED (holds a rank for a trial whose other ranks still run); LOST (gone) and RETIRED (its
group lost a rank: it may be stuck in a collective, so it gets no more work) are final.
"""

from __future__ import annotations

import enum
import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator


class IllegalTransition(RuntimeError):
    """A state change the life cycle does not allow: a bug in the engine, never the user's."""


class TrialState(enum.Enum):
    ASKED = "asked"
    WAITING = "waiting"
    PLACED = "placed"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    TOLD = "told"
    FAILED = "failed"
    REQUEUED = "requeued"


class AgentState(enum.Enum):
    CONNECTING = "connecting"
    IDLE = "idle"
    BUSY = "busy"
    RESERVED = "reserved"
    LOST = "lost"
    RETIRED = "retired"


T, A = TrialState, AgentState
LIVE = frozenset({T.ASKED, T.WAITING, T.PLACED, T.RUNNING, T.PAUSED})
TRIAL_MOVES: dict[TrialState, frozenset[TrialState]] = {
    T.ASKED: frozenset({T.WAITING, T.PLACED, T.FAILED, T.PAUSED}),
    T.WAITING: frozenset({T.PLACED, T.FAILED, T.REQUEUED}),
    T.PLACED: frozenset({T.RUNNING, T.DONE, T.FAILED, T.REQUEUED, T.WAITING}),
    T.RUNNING: frozenset({T.DONE, T.FAILED, T.REQUEUED, T.PAUSED}),
    T.PAUSED: frozenset({T.WAITING, T.DONE, T.FAILED, T.REQUEUED}),
    T.DONE: frozenset({T.TOLD, T.FAILED}),
    T.FAILED: frozenset({T.REQUEUED}),
    T.TOLD: frozenset(),
    T.REQUEUED: frozenset(),
}
AGENT_MOVES: dict[AgentState, frozenset[AgentState]] = {
    A.CONNECTING: frozenset({A.IDLE, A.LOST}),
    A.IDLE: frozenset({A.BUSY, A.RESERVED, A.LOST, A.RETIRED}),
    A.BUSY: frozenset({A.IDLE, A.RESERVED, A.LOST, A.RETIRED}),
    A.RESERVED: frozenset({A.IDLE, A.BUSY, A.LOST, A.RETIRED}),
    A.LOST: frozenset(),
    A.RETIRED: frozenset({A.LOST}),
}


@dataclass(eq=False)
class AgentRecord:
    """One connected agent. ``ticket`` is the trial it holds a rank for (BUSY or RESERVED)."""

    conn: Any  # the hub's connection object; the key of the agent
    state: AgentState = AgentState.CONNECTING
    name: str = "?"
    host: str = "?"
    pid: int = 0
    rank: int = 0
    ticket: int | None = None
    last_seen: float = 0.0  # the engine clock when it last proved alive (any message)
    busy_since: float = 0.0
    busy_total: float = 0.0

    def where(self) -> str:
        return f"rank {self.rank} ({self.name}, host {self.host}, pid {self.pid})"


@dataclass(eq=False)
class TrialRecord:
    """One attempt of an Optuna trial in this session."""

    ticket: int
    trial: Any  # the coordinator's optuna.Trial
    size: int  # ranks it trains on
    state: TrialState = TrialState.ASKED
    since: float = 0.0  # the engine clock when it entered its state
    placed_at: float = 0.0  # the engine clock when it was sent to its agents
    agents: list[AgentRecord] = field(default_factory=list)  # leader first, once placed
    working: set[AgentRecord] = field(default_factory=set)  # agents whose rank has not finished
    attach: Any = None  # rank 0 of a group launched for it (local/Dask backends)
    result: Any = None  # the leader's Done, once it arrived
    done_at: float | None = None  # the engine clock when the leader's Done arrived
    proposed: dict[str, Any] = field(default_factory=dict)  # distributions sampled ahead (engine/ahead.py)
    ahead_fixed: set[str] = field(default_factory=set)  # proposals put into the trial's fixed params
    last_report: tuple[int, float] | None = None  # (step, value) of its last report (PBT), freed with it

    @property
    def number(self) -> int:
        return int(self.trial.number)


class Ledger:
    """Trials and agents by state. Only `move` and `move_agent` change a state."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._tickets = itertools.count()
        self.trials: dict[int, TrialRecord] = {}
        self.agents: dict[Any, AgentRecord] = {}
        self._trials_in: dict[TrialState, dict[int, TrialRecord]] = {s: {} for s in TrialState}
        self._agents_in: dict[AgentState, dict[Any, AgentRecord]] = {s: {} for s in AgentState}
        self._idle_by_host: dict[str, dict[Any, AgentRecord]] = defaultdict(dict)

    # --- trials ----------------------------------------------------------------------------
    def add_trial(self, trial: Any, size: int, ticket: int | None = None) -> TrialRecord:
        record = TrialRecord(next(self._tickets) if ticket is None else ticket, trial, size, since=self._clock())
        self.trials[record.ticket] = record
        self._trials_in[T.ASKED][record.ticket] = record
        return record

    def move(self, record: TrialRecord, new: TrialState) -> None:
        """The one place a trial changes state; final states leave the live index."""
        if new not in TRIAL_MOVES[record.state]:
            raise IllegalTransition(f"trial {record.number} (ticket {record.ticket}): {record.state.value} -> {new.value}")
        del self._trials_in[record.state][record.ticket]
        record.state, record.since = new, self._clock()
        self._trials_in[new][record.ticket] = record
        if new in (T.TOLD, T.REQUEUED):
            self.forget(record)

    def reticket(self, record: TrialRecord) -> None:
        """A paused trial's next attempt gets a new ticket: late messages of the last one are unknown."""
        if record.state != T.PAUSED:
            raise IllegalTransition(f"trial {record.number}: only a paused trial gets a new ticket")
        del self.trials[record.ticket], self._trials_in[T.PAUSED][record.ticket]
        record.ticket = next(self._tickets)
        self.trials[record.ticket] = self._trials_in[T.PAUSED][record.ticket] = record

    def to_front(self, record: TrialRecord) -> None:
        """Make ``record`` the oldest of its state (a resumed trial goes before fresh ones)."""
        others = self._trials_in[record.state]
        self._trials_in[record.state] = {record.ticket: record, **{t: r for t, r in others.items() if r is not record}}

    def forget(self, record: TrialRecord) -> None:
        """Drop a finished trial whose agents are all back (its ticket stays unknown from now on)."""
        if record.state in LIVE or record.state == T.DONE:
            return
        if any(a.ticket == record.ticket for a in record.agents):
            return
        self.trials.pop(record.ticket, None)
        self._trials_in[record.state].pop(record.ticket, None)

    def in_state(self, *states: TrialState) -> Iterator[TrialRecord]:
        """Trials in ``states``, oldest first in each (a copy: the caller may move them)."""
        for state in states:
            yield from list(self._trials_in[state].values())

    def oldest(self, state: TrialState) -> Iterator[TrialRecord]:
        """Trials in ``state``, oldest first, without a copy: stop before moving one."""
        return iter(self._trials_in[state].values())

    def count(self, *states: TrialState) -> int:
        return sum(len(self._trials_in[s]) for s in states)

    def live(self) -> int:
        """Trials asked and not yet finished (they count against the budget)."""
        return self.count(*LIVE) + self.count(T.DONE)

    # --- agents ----------------------------------------------------------------------------
    def add_agent(self, conn: Any) -> AgentRecord:
        agent = AgentRecord(conn, last_seen=self._clock())
        self.agents[conn] = agent
        self._agents_in[A.CONNECTING][conn] = agent
        return agent

    def move_agent(self, agent: AgentRecord, new: AgentState, ticket: int | None = None) -> None:
        """The one place an agent changes state; BUSY and RESERVED name the trial it serves."""
        if new not in AGENT_MOVES[agent.state]:
            raise IllegalTransition(f"{agent.where()}: {agent.state.value} -> {new.value}")
        now = self._clock()
        if agent.state == A.BUSY:
            agent.busy_total += now - agent.busy_since
        if new == A.BUSY:
            agent.busy_since = now
        del self._agents_in[agent.state][agent.conn]
        if agent.state == A.IDLE:
            idle = self._idle_by_host[agent.host]
            idle.pop(agent.conn, None)
            if not idle:
                del self._idle_by_host[agent.host]  # bounded by the hosts with an idle agent now
        agent.state = new
        agent.ticket = ticket if new in (A.BUSY, A.RESERVED) else None
        self._agents_in[new][agent.conn] = agent
        if new == A.IDLE:
            self._idle_by_host[agent.host][agent.conn] = agent
        if new == A.LOST:
            self.agents.pop(agent.conn, None)
            del self._agents_in[A.LOST][agent.conn]

    def forget_agent(self, agent: AgentRecord) -> None:
        """A connection that turned out not to be an agent (rank 0 of a launched group)."""
        if agent.state != A.CONNECTING:
            raise IllegalTransition(f"{agent.where()}: only a connecting agent can be forgotten")
        del self._agents_in[A.CONNECTING][agent.conn]
        self.agents.pop(agent.conn, None)

    def agents_in(self, *states: AgentState) -> Iterator[AgentRecord]:
        for state in states:
            yield from list(self._agents_in[state].values())

    def agent_count(self, *states: AgentState) -> int:
        return sum(len(self._agents_in[s]) for s in states)

    def idle_by_host(self) -> dict[str, dict[Any, AgentRecord]]:
        """Idle agents grouped by host (kept up to date by `move_agent`)."""
        return self._idle_by_host

    def working_agents(self) -> int:
        """Agents that can take trials: idle, busy or reserved (not connecting, lost, retired)."""
        return self.agent_count(A.IDLE, A.BUSY, A.RESERVED)
