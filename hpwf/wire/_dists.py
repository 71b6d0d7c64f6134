"""Search-space distributions as plain tuples, so agents never import Optuna to describe one.

``("float", low, high, step, log)``, ``("int", low, high, step, log)`` or
``("categorical", choices)``. Agents build and compare them; the coordinator turns them into
Optuna's distributions (which check them) and back.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

Dist = tuple[Any, ...]


def float_dist(low: float, high: float, step: float | None, log: bool) -> Dist:
    return ("float", float(low), float(high), None if step is None else float(step), bool(log))


def int_dist(low: int, high: int, step: int, log: bool) -> Dist:
    return ("int", int(low), int(high), int(step), bool(log))


def categorical(choices: Sequence[Any]) -> Dist:
    return ("categorical", tuple(choices))


def to_optuna(dist: Dist) -> BaseDistribution:
    """Optuna's distribution for ``dist`` (raises ValueError where Optuna would)."""
    from optuna import distributions as d

    kind = dist[0] if isinstance(dist, tuple) and dist else None
    if kind == "float" and len(dist) == 5:
        return d.FloatDistribution(dist[1], dist[2], log=dist[4], step=dist[3])
    if kind == "int" and len(dist) == 5:
        return d.IntDistribution(dist[1], dist[2], log=dist[4], step=dist[3])
    if kind == "categorical" and len(dist) == 2:
        return d.CategoricalDistribution(dist[1])
    raise ValueError(f"not a distribution: {dist!r}")


def from_optuna(dist: BaseDistribution) -> Dist:
    """The tuple for one of Optuna's distributions."""
    from optuna import distributions as d

    if isinstance(dist, d.FloatDistribution):
        return float_dist(dist.low, dist.high, dist.step, dist.log)
    if isinstance(dist, d.IntDistribution):
        return int_dist(dist.low, dist.high, dist.step, dist.log)
    if isinstance(dist, d.CategoricalDistribution):
        return categorical(dist.choices)
    raise TypeError(f"unsupported distribution {dist!r}")


def to_json(dist: Dist) -> str:
    """What Optuna's ``distribution_to_json`` writes for the same distribution."""
    kind = dist[0]
    if kind == "categorical":
        return json.dumps({"name": "CategoricalDistribution", "attributes": {"choices": list(dist[1])}})
    name = "FloatDistribution" if kind == "float" else "IntDistribution"
    return json.dumps({"name": name, "attributes": {"low": dist[1], "high": dist[2], "step": dist[3], "log": dist[4]}})


def suggest(trial: Any, name: str, dist: Dist) -> Any:
    """Sample ``name`` with the public ``suggest_*`` API of an Optuna trial (the coordinator's, or an
    array task's), so samplers and the study record exactly what ``study.optimize`` would."""
    from optuna import distributions as d

    found = to_optuna(dist)
    if isinstance(found, d.FloatDistribution):
        return trial.suggest_float(name, found.low, found.high, step=found.step, log=found.log)
    if isinstance(found, d.IntDistribution):
        return trial.suggest_int(name, found.low, found.high, step=found.step, log=found.log)
    assert isinstance(found, d.CategoricalDistribution)
    return trial.suggest_categorical(name, found.choices)
