"""What a simulated trial's attempt does (`Plan`: how long, how it ends), drawn from its seed, and
how an agent reads the coordinator's answers (`ending_of`, `restore_point`); shared by the fault
simulator's agents (`hpwf.sim._agents`) and the search-efficiency runner's (`hpwf.sim._virtual`)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from hpwf.rundir import RESTORE_ATTR
from hpwf.wire import PAUSE, Assign, DoneState


@dataclass
class Plan:
    """What one attempt of a trial does: how long it runs and how it ends."""

    seconds: float
    ending: str = "complete"  # complete | pruned | error | nan


def plans(rng: random.Random, longest: float) -> Plan:
    """A random attempt: lengths from milliseconds to ``longest`` (log-uniform), some failures."""
    seconds = math.exp(rng.uniform(math.log(0.001), math.log(longest)))
    ending = rng.choices(["complete", "pruned", "error", "nan"], [85, 5, 5, 5])[0]
    return Plan(seconds, ending)


def ending_of(reply: Any) -> DoneState | None:
    """How a trial ends on the coordinator's reply to its Report: None (go on), PAUSED, PRUNED or FAIL."""
    if reply == PAUSE:
        return DoneState.PAUSED
    if isinstance(reply, BaseException):
        return DoneState.FAIL
    return DoneState.PRUNED if reply is True else None


def restore_point(task: Assign) -> tuple[int, int] | None:
    """(the trial whose checkpoint it continues from, the step) that an Assign names, or None."""
    restore = (task.attrs or {}).get(RESTORE_ATTR)
    return (int(restore["from"]), int(restore["step"])) if restore else None
