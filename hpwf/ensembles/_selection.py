"""Ensembles chosen from predictions already made: Caruana's greedy selection, the top k.

Greedy selection (Caruana et al., 2004; as in DeepHyper's AutoDEUQ) starts from the ``init``
best single candidates and, for ``size`` rounds in all, adds the candidate (with replacement: a
candidate may be added again) whose addition gives the best validation score of the combined
ensemble. It returns the **best prefix** of those rounds (the shortest one within ``tolerance``
of the best score), not the last round: with replacement the score can rise after its minimum.
``min_distinct`` forces that many different candidates first (so the ensemble keeps an
epistemic spread); ``bags`` repeats the selection on bootstrap resamples of the validation
rows and averages the weights (Caruana et al.'s bagged selection, for small validation sets).
A candidate's weight is how often it was added in the chosen prefix, divided by its length.
Nothing is retrained.

Combining: regression candidates form a Gaussian mixture (mean, total variance =
aleatoric + epistemic); the selection metrics score it as the moment-matched Gaussian with that
mean and variance, exactly as ``uq.regression_metrics`` does. Running sums are kept of means
centred on the candidates' average, so targets offset by 1e8 lose no precision.
Classification candidates average their probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from hpwf.ensembles import _uq as uq

Arrays = Mapping[str, np.ndarray]
MetricFn = Callable[[np.ndarray, dict[str, np.ndarray]], float]

# name -> (score of the combined predictions, True when higher is better)
REGRESSION_METRICS: dict[str, tuple[MetricFn, bool]] = {
    "nll": (lambda y, c: uq.gaussian_nll(y, c["mean"], c["var"]), False),
    "crps": (lambda y, c: uq.gaussian_crps(y, c["mean"], np.sqrt(c["var"])), False),
    "rmse": (lambda y, c: float(np.sqrt(np.mean((y - c["mean"]) ** 2))), False),
    "ece": (lambda y, c: uq.mace(y, c["mean"], np.sqrt(c["var"])), False),
}
CLASSIFICATION_METRICS: dict[str, tuple[MetricFn, bool]] = {
    "nll": (lambda y, c: uq.classification_metrics(y, c["probs"])["nll"], False),
    "brier": (lambda y, c: uq.classification_metrics(y, c["probs"])["brier"], False),
    "ece": (lambda y, c: uq.expected_calibration_error(y, c["probs"]), False),
    "accuracy": (lambda y, c: float(np.mean(c["probs"].argmax(1) == y.astype(int))), True),
}
METRIC_NAMES = tuple(dict.fromkeys([*REGRESSION_METRICS, *CLASSIFICATION_METRICS]))


@dataclass
class Selection:
    """Which candidates an ensemble holds, with which weights, and why.

    Attributes:
        method: "greedy", "topk" or "fixed".
        weights: candidate (trial number) -> weight; the weights sum to one.
        metric: the validation metric greedy selection optimised (None for "topk").
        trace: the ensemble's validation score after each greedy round.
        single: each candidate's own validation score (greedy) or search value (topk).
        rounds: greedy: the length of the prefix of ``trace`` that was kept (the best one).
        bags: greedy: how many bootstrap resamples of the validation rows were averaged.
        options: greedy: the options it ran with (init, tolerance, min_distinct, bags).
    """

    method: str
    weights: dict[int, float]
    metric: str | None = None
    trace: list[float] = field(default_factory=list)
    single: dict[int, float] = field(default_factory=dict)
    rounds: int | None = None
    bags: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready record (trial numbers as keys, in order of weight); the weights unrounded, as
        they are what a reader combines the members with (three of 1/3 rounded sum to 0.999999)."""
        order = sorted(self.weights, key=lambda k: (-self.weights[k], k))
        return {"method": self.method, "metric": self.metric,
                "weights": {str(k): self.weights[k] for k in order},
                "trace": [round(v, 6) for v in self.trace],
                "single": {str(k): round(v, 6) for k, v in sorted(self.single.items())},
                "rounds": self.rounds, "bags": self.bags, "options": dict(self.options)}


def combine(candidates: Sequence[Arrays], weights: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """The weighted combination: ``mean``, ``var``, ``aleatoric``, ``epistemic`` or ``probs``.

    Example:
        >>> c = combine([{"mean": np.array([0.0]), "var": np.array([1.0])},
        ...              {"mean": np.array([2.0]), "var": np.array([1.0])}])
        >>> float(c["mean"][0]), float(c["var"][0])
        (1.0, 2.0)
    """
    if all("probs" in c for c in candidates):
        w = uq.normalised_weights(weights, len(candidates))
        return {"probs": np.tensordot(w, np.stack([c["probs"] for c in candidates]), axes=1)}
    if any("probs" in c for c in candidates):
        raise ValueError("cannot combine classification (probs) with regression (mean) predictions")
    means = np.stack([c["mean"] for c in candidates])
    variances = np.stack([c["var"] if "var" in c else np.zeros_like(c["mean"]) for c in candidates])
    mix = uq.mixture(means, variances, weights)
    return {"mean": mix.mean, "var": mix.total, "aleatoric": mix.aleatoric, "epistemic": mix.epistemic}


def metric_function(metric: str | MetricFn, classification: bool) -> tuple[MetricFn, bool]:
    """The metric's function and whether higher is better; a callable is taken as lower-is-better."""
    if callable(metric):
        return metric, False
    table = CLASSIFICATION_METRICS if classification else REGRESSION_METRICS
    if metric not in table:
        kind = "classification" if classification else "regression"
        raise ValueError(f"metric {metric!r} is not one of {', '.join(table)} (for {kind})")
    return table[metric]


def greedy(candidates: Mapping[int, Arrays], size: int, metric: str | MetricFn = "nll", *, init: int = 1,
           tolerance: float = 0.0, min_distinct: int = 1, bags: int = 0, seed: int = 0) -> Selection:
    """Caruana's greedy selection with replacement on validation predictions; the best prefix.

    Args:
        candidates: trial number -> its validation arrays (``y`` and ``mean``/``var`` or ``probs``);
            every candidate must predict the same ``y``.
        size: rounds in all (at least ``init`` and ``min_distinct``); each adds one candidate.
        metric: a name (regression: nll, crps, rmse, ece; classification: nll, brier, ece,
            accuracy) or ``metric(y, combined) -> float``, lower is better.
        init: start from the ``init`` best single candidates (DeepHyper's top k).
        tolerance: return the shortest prefix whose score is within this of the best prefix's.
        min_distinct: the first rounds add candidates not yet chosen until this many differ;
            only prefixes with that many are returned.
        bags: > 0: run on that many bootstrap resamples of the validation rows (from ``seed``)
            and average the weights.

    Returns:
        The selection (``trace``: the score after every round; ``rounds``: the prefix kept);
        ties go to the lower trial number.

    Example:
        >>> y = np.zeros(4)
        >>> cands = {0: {"y": y, "mean": y + 1, "var": y + 1}, 1: {"y": y, "mean": y - 1, "var": y + 1}}
        >>> greedy(cands, 3).weights  # round 3 made it worse: the best prefix is two rounds
        {0: 0.5, 1: 0.5}
    """
    if not candidates:
        raise ValueError("greedy selection needs at least one candidate with validation predictions")
    numbers = sorted(candidates)
    y = np.asarray(candidates[numbers[0]]["y"], dtype=float)
    for k in numbers:
        if not np.array_equal(np.asarray(candidates[k]["y"], dtype=float), y):
            raise ValueError(f"trial {k}'s validation targets y differ from trial {numbers[0]}'s: "
                             "every trial must predict the same validation set")
    if not 1 <= min_distinct <= len(numbers):
        raise ValueError(f"min_distinct={min_distinct} needs that many candidates; there are {len(numbers)}")
    if init < 1 or tolerance < 0 or bags < 0:
        raise ValueError("greedy needs init >= 1, tolerance >= 0 and bags >= 0")
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "custom")
    classification = "probs" in candidates[numbers[0]]
    fn, higher = metric_function(metric, classification)
    single = {k: fn(y, combine([candidates[k]])) for k in numbers}
    options = dict(init=init, tolerance=tolerance, min_distinct=min_distinct)
    if bags:
        return _bagged(candidates, numbers, y, size, metric, options, bags, seed, single, name)
    sign = -1.0 if higher else 1.0
    ranked = sorted(numbers, key=lambda k: (sign * single[k], k))
    sums = _Sums(classification, candidates)
    chosen: list[int] = []
    trace: list[float] = []
    for r in range(max(size, init, min_distinct)):  # each round costs one pass over the candidates, O(K N)
        if r < init:
            best_k = ranked[r % len(ranked)]
            best_score = sign * fn(y, sums.with_one_more(candidates[best_k]))
        else:
            pool = [k for k in numbers if k not in chosen] if len(set(chosen)) < min_distinct else numbers
            best_k, best_score = pool[0], np.inf
            for k in pool:
                score = sign * fn(y, sums.with_one_more(candidates[k]))
                if score < best_score:
                    best_k, best_score = k, score
        chosen.append(best_k)
        sums.add(candidates[best_k])
        trace.append(sign * best_score)
    allowed = [r for r in range(len(chosen)) if len(set(chosen[:r + 1])) >= min_distinct]
    best = min(sign * trace[r] for r in allowed)
    rounds = next(r for r in allowed if sign * trace[r] <= best + tolerance) + 1
    counts = {k: chosen[:rounds].count(k) for k in numbers}
    weights = {k: c / rounds for k, c in counts.items() if c}
    return Selection("greedy", weights, name, trace, single, rounds, options={**options, "bags": 0})


def _bagged(candidates: Mapping[int, Arrays], numbers: list[int], y: np.ndarray, size: int, metric: str | MetricFn,
            options: dict[str, Any], bags: int, seed: int, single: dict[int, float], name: str) -> Selection:
    """Greedy on ``bags`` bootstrap resamples of the validation rows; the weights averaged."""
    rng = np.random.default_rng(seed)
    total = dict.fromkeys(numbers, 0.0)
    for _ in range(bags):
        rows = rng.integers(0, len(y), len(y))
        sub = {k: {a: np.asarray(v)[rows] for a, v in candidates[k].items() if np.ndim(v) and len(v) == len(y)}
               for k in numbers}
        for k, w in greedy(sub, size, metric, **options).weights.items():
            total[k] += w / bags
    weights = {k: w for k, w in total.items() if w > 0}
    fn, _ = metric_function(metric, "probs" in candidates[numbers[0]])
    score = fn(y, combine([candidates[k] for k in weights], list(weights.values())))
    return Selection("greedy", weights, name, [score], single, bags=bags, options={**options, "bags": bags})


class _Sums:
    """Running sums of the chosen candidates (repeats counted), so adding one more is O(N).

    Means are summed after subtracting ``ref``, the candidates' average mean at each point:
    E[m^2] - E[m]^2 of raw means loses every digit when targets are large (1e8).
    """

    def __init__(self, classification: bool, candidates: Mapping[int, Arrays] | None = None) -> None:
        self.classification = classification
        self.n = 0
        self.first: Any = 0.0  # sum of centred means, or of probabilities
        self.second: Any = 0.0  # sum of squared centred means
        self.aleatoric: Any = 0.0  # sum of variances
        self.ref: Any = 0.0
        if candidates and not classification:
            self.ref = np.mean([np.asarray(c["mean"], dtype=float) for c in candidates.values()], axis=0)

    def _terms(self, c: Arrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.classification:
            return np.asarray(c["probs"], dtype=float), np.zeros(1), np.zeros(1)
        mean = np.asarray(c["mean"], dtype=float) - self.ref
        var = np.asarray(c["var"], dtype=float) if "var" in c else np.zeros_like(mean)
        return mean, mean**2, var

    def add(self, c: Arrays) -> None:
        first, second, var = self._terms(c)
        self.n, self.first, self.second, self.aleatoric = (
            self.n + 1, self.first + first, self.second + second, self.aleatoric + var)

    def with_one_more(self, c: Arrays) -> dict[str, np.ndarray]:
        """The combination of the chosen candidates plus ``c`` (as `combine` gives it)."""
        first, second, var = self._terms(c)
        n = self.n + 1
        if self.classification:
            return {"probs": (self.first + first) / n}
        centred = (self.first + first) / n
        epistemic = np.maximum((self.second + second) / n - centred**2, 0.0)
        aleatoric = (self.aleatoric + var) / n
        return {"mean": centred + self.ref, "var": aleatoric + epistemic, "aleatoric": aleatoric,
                "epistemic": epistemic}


def top_k(values: Mapping[int, float], k: int, maximize: bool) -> Selection:
    """The k candidates with the best values (e.g. the search's objective), equal weights.

    Example:
        >>> top_k({0: 3.0, 1: 1.0, 2: 2.0}, 2, maximize=False).weights
        {1: 0.5, 2: 0.5}
    """
    ranked = sorted(values, key=lambda n: (-values[n] if maximize else values[n], n))[:k]
    return Selection("topk", {n: 1.0 / len(ranked) for n in ranked}, single={n: values[n] for n in ranked})


def allocate(weights: Mapping[int, float], members: int) -> list[int]:
    """Spread ``members`` over the selected candidates in proportion to their weights.

    Largest remainders; a candidate whose share rounds to zero gets no member. Returns the
    candidate of each member, heaviest candidates first.

    Example:
        >>> allocate({3: 0.5, 7: 0.25, 9: 0.25}, 4)
        [3, 3, 7, 9]
    """
    order = sorted(weights, key=lambda k: (-weights[k], k))
    exact = {k: weights[k] * members for k in order}
    counts = {k: int(np.floor(exact[k])) for k in order}
    spare = members - sum(counts.values())
    for k in sorted(order, key=lambda k: (-(exact[k] - counts[k]), -weights[k], k))[:spare]:
        counts[k] += 1
    return [k for k in order for _ in range(counts[k])]
