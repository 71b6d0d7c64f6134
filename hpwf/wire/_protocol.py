"""Messages between the coordinator and its agents (pickled over multiprocessing connections).

Every message about a trial carries its ``ticket``: a number the coordinator gives each attempt
of a trial, unique in the session. A late message of a trial that is over (or of an earlier
phase, whose trial numbers repeat) names a ticket the coordinator no longer knows, and is
answered with an error or dropped, never applied to another trial. Both sides send plain
values (numbers, strings, tuples, JSON-able attributes; distributions as `hpwf.wire._dists` tuples),
so a message unpickles anywhere, and an agent never imports Optuna to read one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

# agent -> coordinator


@dataclass(frozen=True)
class Hello:
    """An agent introduces itself; ``rank`` is its MPI world rank where it has one.

    ``attach`` is set by rank 0 of a group the local backend launched for one trial: that
    connection then carries the trial's requests instead of its agent's.
    """

    agent: str
    host: str
    pid: int
    rank: int | None = None
    attach: int | None = None  # the ticket of the trial a launched group's rank 0 serves


@dataclass(frozen=True)
class Suggest:
    """Ask the coordinator to sample a parameter that was not prefetched."""

    ticket: int
    name: str
    distribution: tuple[Any, ...]  # hpwf.wire._dists: a plain tuple, no Optuna object
    used: dict[str, Any] | None = None  # proposals the objective used since the last message


@dataclass(frozen=True)
class Used:
    """Proposals the objective just used (one way, no reply): recorded at once, so the sampler
    sees a running trial's parameters as it would after a round trip (constant liar, GP)."""

    ticket: int
    used: dict[str, Any] | None = None


@dataclass(frozen=True)
class Report:
    """An intermediate value; the reply's value is the prune decision."""

    ticket: int
    step: int
    value: float
    used: dict[str, Any] | None = None


@dataclass(frozen=True)
class Heartbeat:
    """Sent every few seconds by every agent, idle or not: silence means the agent is lost.

    ``ticket`` is the trial the agent works on, ``None`` while it is idle or holds a reserved rank.
    """

    ticket: int | None


@dataclass(frozen=True)
class UserAttr:
    """``trial.set_user_attr`` forwarded to the study (the value is JSON-able: checked on the agent)."""

    ticket: int
    key: str
    value: Any
    used: dict[str, Any] | None = None


class DoneState(enum.StrEnum):
    """How a trial's attempt ended, as its `Done` says (a str: ``DoneState.PRUNED == "pruned"``)."""

    COMPLETE = "complete"
    PRUNED = "pruned"
    FAIL = "fail"
    PAUSED = "paused"  # its state is saved: a scheduler resumes it later
    MEMBER = "member"  # from a rank other than the group's leader: the leader's Done tells the result


@dataclass(frozen=True)
class Done:
    """A trial ended: ``state`` is complete, pruned, fail or paused (member from a non-leader rank).

    The leader sends it only after the result is durable in the trial's ``result.json``. A plain
    str ``state`` becomes a `DoneState`; on the wire it travels as the plain str it always did.
    """

    ticket: int
    state: DoneState
    values: list[float] | None = None
    error: str | None = None
    duration: float = 0.0
    used: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", DoneState(self.state))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "state": str(self.state)}  # pickled as before: no enum on the wire

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, state=DoneState(state["state"]))


# coordinator -> agent


@dataclass(frozen=True)
class Setup:
    """What every agent needs once: the workflow (a file path or a cloudpickled objective).

    ``entry`` says what to run from a workflow file: "objective", or "ensemble" (its members).
    """

    run_dir: str
    workflow_path: str | None
    objective_pickle: bytes | None
    entry: str = "objective"
    heartbeat_s: float = 10.0
    n_objectives: int = 1  # how many values the objective must return
    threads: int | None = None  # threads per rank of a trial (None: the host's cores / its agents)


@dataclass(frozen=True)
class Assign:
    """Run one trial. ``params``: values recorded at ask time, and values *proposed* for the
    search space seen so far (recorded only once the objective uses them: `hpwf.engine.ahead`).

    ``group`` lists the agents' MPI world ranks that train this trial together (leader first);
    empty for a one-rank trial. ``ranks`` is the trial's size where the backend must launch
    the ranks itself (the local backend starts ``mpirun -np ranks`` for it).
    """

    ticket: int
    number: int
    params: dict[str, Any]
    distributions: dict[str, tuple[Any, ...]]  # hpwf.wire._dists tuples
    seed: int
    group: tuple[int, ...] = ()
    ranks: int = 1
    attrs: dict[str, Any] | None = None  # user attributes set before the trial ran (ensemble members)


PAUSE = "pause"  # a Report's Reply that tells the trial to pause (a scheduler's Decision.PAUSE)


@dataclass(frozen=True)
class Reply:
    """The answer to a `Suggest` (``value``) or a `Report` (``value``: True prunes, `PAUSE` pauses).

    An exception as ``value`` is raised in the objective (e.g. the trial is no longer running).
    """

    ticket: int
    value: Any


@dataclass(frozen=True)
class Abort:
    """Give up the trial now (a rank of its group died, it ran out of time, or the run stops)."""

    ticket: int
    reason: str


@dataclass(frozen=True)
class Stop:
    """No more work: the agent exits its loop."""

    reason: str = ""
