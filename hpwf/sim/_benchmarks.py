"""Benchmarks with known optima for the virtual-time runner (`hpwf.sim._virtual`), no downloads.

- MF-Hartmann 3 and 6 (`hartmann`): the Hartmann functions (minimum -3.86278 and -3.32237 on
  [0, 1]^d) with the fidelity-dependent bias and noise of mf-prior-bench (Mallik et al. 2023,
  after Kandasamy et al. 2017): at fidelity ``z`` in [3, 100], with ``s = log(z/3) / log(100/3)``,
  each ``alpha_i`` becomes ``alpha_i - bias * (1 - s)`` and ``|N(0, 1)| * noise * (1 - s)`` is
  added. Presets: "good" correlation (bias 2.5, noise 2.0) and "bad" (3.5, 4.0). A trial's step
  ``t`` of ``steps`` is fidelity ``z = 3 * (100/3)**(t / (steps - 1))``; evaluating at ``z`` costs
  ``lambda(z) = 0.05 + 0.95 * (z / 100)**2`` of a full evaluation (mf-prior-bench's cost), so step
  ``t`` costs ``full_s * (lambda(z_t) - lambda(z_{t-1}))`` virtual seconds. At the last step the
  value is the exact Hartmann value.
- A schedule-dependent toy for PBT (`pbt_toy`), after Ray Tune's ``pbt_example``: an accuracy
  grows fastest when the learning rate is near an optimum that itself rises, then falls, as the
  accuracy grows (a triangle between 0.001 and 0.01); a rate far too high loses accuracy. No fixed
  rate is best throughout; the state (the accuracy) is what a checkpoint carries.

Every value is a pure function of (params, step, state, noise seed): a run replays exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable

Space = dict[str, tuple[float, float, bool]]  # name -> (low, high, log)

_ALPHA = (1.0, 1.2, 3.0, 3.2)
_H3 = ([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]],
       [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]], -3.86278,
       (0.114614, 0.555649, 0.852547))
_H6 = ([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]],
       [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991], [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381]], -3.32237, (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573))
PRESETS = {"good": (2.5, 2.0), "bad": (3.5, 4.0)}  # (bias, noise), mf-prior-bench's
Z_MIN, Z_MAX = 3.0, 100.0


@dataclass
class Benchmark:
    """A minimised objective that a trial trains step by step.

    ``value(params, step, state, rng)`` returns the value reported at ``step`` and the state a
    checkpoint after it holds; ``step_s(step)`` is what the step costs in virtual seconds.
    """

    name: str
    space: Space
    steps: int
    step_s: Callable[[int], float]
    value: Callable[[dict[str, float], int, Any, random.Random], tuple[float, Any]]
    optimum: float | None = None  # the known minimum (None: unknown, e.g. the PBT toy)
    epsilon: float | None = None  # the regret target of the benchmark
    initial_state: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def full_s(self) -> float:
        """A whole trial's virtual length (every step)."""
        return sum(self.step_s(t) for t in range(self.steps))


def hartmann_exact(x: tuple[float, ...]) -> float:
    """The Hartmann function of ``len(x)`` (3 or 6) dimensions, as tabulated (no fidelity)."""
    return _hartmann(x, _ALPHA)


def _hartmann(x: tuple[float, ...], alpha: tuple[float, ...]) -> float:
    a_rows, p_rows, _, _ = _H3 if len(x) == 3 else _H6
    total = 0.0
    for a, p, al in zip(a_rows, p_rows, alpha):
        total += al * math.exp(-sum(ai * (xi - 1e-4 * pi) ** 2 for ai, xi, pi in zip(a, x, p)))
    return -total


def fidelity(step: int, steps: int) -> float:
    """The fidelity ``z`` of ``step`` (log-spaced from 3 to 100 over the trial's steps)."""
    return Z_MIN * (Z_MAX / Z_MIN) ** (step / max(1, steps - 1))


def cost_fraction(z: float) -> float:
    """mf-prior-bench's cost of one evaluation at fidelity ``z``, as a fraction of a full one."""
    return 0.05 + 0.95 * (z / Z_MAX) ** 2


def hartmann(dims: int = 6, correlation: str = "good", steps: int = 27, full_s: float = 3600.0,
             epsilon: float | None = None) -> Benchmark:
    """MF-Hartmann ``dims`` (3 or 6) with "good" or "bad" correlation between fidelities."""
    if dims not in (3, 6) or correlation not in PRESETS:
        raise ValueError(f"MF-Hartmann needs dims 3 or 6 and correlation good or bad, not {dims}, {correlation!r}")
    bias, noise = PRESETS[correlation]
    optimum = (_H3 if dims == 3 else _H6)[2]
    names = [f"x{i}" for i in range(dims)]

    def step_s(step: int) -> float:
        before = cost_fraction(fidelity(step - 1, steps)) if step > 0 else 0.0
        return full_s * (cost_fraction(fidelity(step, steps)) - before)

    def value(params: dict[str, float], step: int, state: Any, rng: random.Random) -> tuple[float, Any]:
        s = step / max(1, steps - 1)
        x = tuple(float(params[n]) for n in names)
        h = _hartmann(x, tuple(a - bias * (1 - s) for a in _ALPHA))
        return h + abs(rng.gauss(0.0, 1.0)) * noise * (1 - s), state

    eps = epsilon if epsilon is not None else (1.0 if dims == 6 else 0.2)
    return Benchmark(f"mfh{dims}_{correlation}", {n: (0.0, 1.0, False) for n in names}, steps, step_s, value,
                     optimum, eps, extra={"bias": bias, "noise": noise, "argmin": (_H3 if dims == 3 else _H6)[3]})


def toy_optimal_lr(accuracy: float) -> float:
    """The PBT toy's best learning rate at ``accuracy``: 0.001 at 0, 0.01 at 100, 0.001 at 200."""
    lr = 0.01 * accuracy / 100 if accuracy < 100 else 0.01 - 0.01 * (accuracy - 100) / 100
    return min(0.01, max(0.001, lr))


def toy_step(accuracy: float, lr: float, rng: random.Random, inner: int = 4) -> float:
    """``inner`` training steps of the toy from ``accuracy`` with rate ``lr``."""
    for _ in range(inner):
        best = toy_optimal_lr(accuracy)
        q = max(lr, best) / min(lr, best)
        if q < 3.0:
            accuracy += rng.random() / q
        elif lr > best:
            accuracy -= (q - 3.0) * rng.random()
        accuracy = max(0.0, accuracy + 0.5 * rng.gauss(0.0, 1.0))
    return accuracy


def pbt_toy(steps: int = 100, step_s: float = 60.0, inner: int = 4) -> Benchmark:
    """The schedule-dependent toy: minimise ``-accuracy`` after ``steps`` reports (``inner`` toy
    steps each, ``step_s`` virtual seconds each); the parameter is ``lr`` in [1e-4, 1e-1] (log)."""

    def value(params: dict[str, float], step: int, state: Any, rng: random.Random) -> tuple[float, Any]:
        accuracy = toy_step(float(state or 0.0), float(params["lr"]), rng, inner)
        return -accuracy, accuracy

    return Benchmark("pbt_toy", {"lr": (1e-4, 1e-1, True)}, steps, lambda step: step_s, value, None, None, 0.0,
                     extra={"inner": inner})


def best_fixed_lr(bench: Benchmark, grid: int = 41, repeats: int = 20, seed: int = 0) -> tuple[float, float]:
    """(rate, mean final value) of the best constant learning rate of the toy, by a log grid."""
    low, high, _ = bench.space["lr"]
    best = (math.nan, math.inf)
    for i in range(grid):
        lr = math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / (grid - 1))
        finals = []
        for r in range(repeats):
            rng, state, v = random.Random(seed * 7_919 + r), bench.initial_state, 0.0
            for step in range(bench.steps):
                v, state = bench.value({"lr": lr}, step, state, rng)
            finals.append(v)
        mean = sum(finals) / repeats
        if mean < best[1]:
            best = (lr, mean)
    return best


BENCHMARKS: dict[str, Callable[[], Benchmark]] = {
    "mfh6_good": lambda: hartmann(6, "good"), "mfh6_bad": lambda: hartmann(6, "bad"),
    "mfh3_good": lambda: hartmann(3, "good"), "mfh3_bad": lambda: hartmann(3, "bad"), "pbt_toy": pbt_toy,
}
