"""Messages between the coordinator and its agents (pickled over multiprocessing connections)."""

from __future__ import annotations

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
    attach: int | None = None


@dataclass(frozen=True)
class Suggest:
    """Ask the coordinator to sample a parameter that was not prefetched."""

    number: int
    name: str
    distribution: Any  # optuna.distributions.BaseDistribution


@dataclass(frozen=True)
class Report:
    """An intermediate value; the reply is a `Decision`."""

    number: int
    step: int
    value: float


@dataclass(frozen=True)
class Heartbeat:
    """Sent every few seconds while a trial runs: silence means the agent is lost."""

    number: int


@dataclass(frozen=True)
class UserAttr:
    """``trial.set_user_attr`` forwarded to the study."""

    number: int
    key: str
    value: Any


@dataclass(frozen=True)
class Done:
    """A trial ended: ``state`` is "complete", "pruned" or "fail" ("member" from a non-leader rank)."""

    number: int
    state: str
    values: list[float] | None = None
    error: str | None = None
    duration: float = 0.0


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


@dataclass(frozen=True)
class Assign:
    """Run one trial. ``params`` were sampled at ask time (with their distributions).

    ``group`` lists the agents' MPI world ranks that train this trial together (leader first);
    empty for a one-rank trial. ``ranks`` is the trial's size where the backend must launch
    the ranks itself (the local backend starts ``mpirun -np ranks`` for it).
    """

    number: int
    params: dict[str, Any]
    distributions: dict[str, Any]
    seed: int
    group: tuple[int, ...] = ()
    ranks: int = 1
    attrs: dict[str, Any] | None = None  # user attributes set before the trial ran (ensemble members)


@dataclass(frozen=True)
class Reply:
    """The answer to a `Suggest` (``value``) or a `Report` (``value`` is the prune decision)."""

    number: int
    value: Any


@dataclass(frozen=True)
class Abort:
    """Give up trial ``number`` now (a rank of its group died, or it ran out of time)."""

    number: int
    reason: str


@dataclass(frozen=True)
class Stop:
    """No more work: the agent exits its loop."""

    reason: str = ""
