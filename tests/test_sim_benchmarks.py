"""The benchmarks of the virtual-time runner (`hpwf.sim._benchmarks`): known optima, fidelities, costs."""

from __future__ import annotations

import random

import pytest

from hpwf.sim import best_fixed_lr, hartmann, hartmann_exact, pbt_toy
from hpwf.sim._benchmarks import cost_fraction, fidelity, toy_optimal_lr


@pytest.mark.parametrize("dims,optimum", [(3, -3.86278), (6, -3.32237)])
def test_hartmann_has_its_tabulated_minimum_at_its_argmin(dims: int, optimum: float) -> None:
    bench = hartmann(dims)
    argmin = bench.extra["argmin"]
    assert hartmann_exact(argmin) == pytest.approx(optimum, abs=1e-4)
    rng = random.Random(0)
    for _ in range(2000):  # no random point is below the minimum
        assert hartmann_exact(tuple(rng.random() for _ in range(dims))) > optimum - 1e-4


@pytest.mark.parametrize("correlation", ["good", "bad"])
def test_at_the_last_step_the_value_is_the_exact_function_and_lower_fidelities_are_biased_up(correlation: str) -> None:
    bench = hartmann(6, correlation)
    params = {f"x{i}": v for i, v in enumerate(bench.extra["argmin"])}
    last, _ = bench.value(params, bench.steps - 1, None, random.Random(1))
    assert last == pytest.approx(bench.optimum, abs=1e-4)
    first, _ = bench.value(params, 0, None, random.Random(1))
    bias, _ = bench.extra["bias"], bench.extra["noise"]
    assert first > last + 0.5 * bias  # alpha lowered by the bias: far from the optimum at z = 3


def test_bad_correlation_ranks_configurations_worse_at_low_fidelity_than_good() -> None:
    def rank_agreement(correlation: str) -> float:
        bench, rng = hartmann(3, correlation), random.Random(3)
        points = [{f"x{i}": rng.random() for i in range(3)} for _ in range(200)]
        low = [bench.value(p, 3, None, random.Random(k))[0] for k, p in enumerate(points)]
        high = [bench.value(p, bench.steps - 1, None, random.Random(k))[0] for k, p in enumerate(points)]
        pairs = [(i, j) for i in range(0, 200, 3) for j in range(1, 200, 7) if i != j]
        return sum((low[i] < low[j]) == (high[i] < high[j]) for i, j in pairs) / len(pairs)

    assert rank_agreement("good") > rank_agreement("bad")


def test_a_steps_cost_follows_the_fidelity_and_a_whole_trial_costs_its_full_length() -> None:
    bench = hartmann(6, full_s=3600.0)
    assert fidelity(0, bench.steps) == pytest.approx(3.0) and fidelity(bench.steps - 1, bench.steps) == pytest.approx(100.0)
    assert bench.step_s(0) == pytest.approx(3600 * cost_fraction(3.0))
    assert bench.full_s == pytest.approx(3600.0)
    assert all(bench.step_s(t) > 0 for t in range(bench.steps))


def test_the_pbt_toys_best_rate_changes_during_training_and_no_fixed_rate_reaches_the_schedule() -> None:
    assert toy_optimal_lr(0) == 0.001 and toy_optimal_lr(100) == 0.01 and toy_optimal_lr(200) == 0.001
    bench = pbt_toy(steps=60)
    lr, fixed = best_fixed_lr(bench, grid=9, repeats=3)
    rng, state, scheduled = random.Random(0), 0.0, 0.0
    for step in range(bench.steps):  # the oracle schedule: the best rate at each step
        scheduled, state = bench.value({"lr": toy_optimal_lr(state)}, step, state, rng)
    assert scheduled < fixed  # (values are -accuracy: lower is better)
    assert 1e-4 <= lr <= 1e-1
