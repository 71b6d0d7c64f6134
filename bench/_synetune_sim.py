"""Syne Tune's simulator on the same benchmarks (issue 25): `UserBlackboxBackend` over a blackbox
that wraps an `hpwf.sim` benchmark (the same values, the same per-step virtual costs), driven by
Syne Tune's own `Tuner` with its ASHA (stopping; 0.16 has no promotion variant), Hyperband (ASHA
brackets) and random search. Optional: imported only by `bench search_efficiency_sim` when asked,
and it says so clearly when syne-tune is missing."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import tempfile
import time
from typing import Any

from hpwf.sim import Benchmark

try:
    import numpy as np
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.blackbox import Blackbox
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
    from syne_tune.config_space import randint, uniform
    from syne_tune.optimizer.baselines import ASHA, RandomSearch
except ImportError as exc:  # pragma: no cover - the comparison needs it; the suite does not
    raise ImportError(f"the Syne Tune side of bench search_efficiency_sim needs syne-tune "
                      f"(pip install syne-tune): {exc}") from None


class BenchBlackbox(Blackbox):
    """All fidelities of one configuration at once: (steps, [value, elapsed virtual s])."""

    def __init__(self, bench: Benchmark, seed: int) -> None:
        super().__init__({n: uniform(lo, hi) for n, (lo, hi, _) in bench.space.items()},
                         {"epoch": randint(1, bench.steps)}, ["value", "elapsed"])
        self.bench, self.seed = bench, seed
        self.elapsed = np.cumsum([bench.step_s(t) for t in range(bench.steps)])

    @property
    def fidelity_values(self) -> Any:
        return np.arange(1, self.bench.steps + 1)

    def _objective_function(self, configuration: dict[str, Any], fidelity: dict | None = None,
                            seed: int | None = None) -> Any:
        params = {n: float(configuration[n]) for n in self.bench.space}
        key = hash(tuple(params.values()))
        state, rows = self.bench.initial_state, []
        for t in range(self.bench.steps):
            value, state = self.bench.value(params, t, state, random.Random(f"{self.seed}:{key}:{t}"))
            rows.append([value, self.elapsed[t]])
        table = np.array(rows)
        if fidelity is not None:
            return dict(zip(self.objectives_names, table[int(fidelity["epoch"]) - 1]))
        return table


def run_syne_tune(bench: Benchmark, method: str, workers: int, seed: int, budget_s: float) -> list[tuple[float, float]]:
    """(virtual s, value) of every result Syne Tune's simulated run saw, in time order."""
    blackbox = BenchBlackbox(bench, seed)
    space = dict(blackbox.configuration_space, epoch=bench.steps)
    common: dict[str, Any] = dict(config_space=space, do_minimize=True, random_seed=seed)
    if method == "random":
        scheduler: Any = RandomSearch(metrics=["value"], **common)
    else:
        brackets = 1 if method == "asha" else 4
        scheduler = ASHA(metric="value", **common, time_attr="epoch", max_t=bench.steps, grace_period=1, reduction_factor=3,
                         brackets=brackets)
    backend = UserBlackboxBackend(blackbox=blackbox, elapsed_time_attr="elapsed")
    with tempfile.TemporaryDirectory(prefix="hpwf-st-") as tmp, open(os.devnull, "w") as quiet, \
            contextlib.redirect_stdout(quiet):
        os.environ["SYNETUNE_FOLDER"] = tmp
        callback = SimulatorCallback()
        tuner = Tuner(trial_backend=backend, scheduler=scheduler, n_workers=workers, sleep_time=0,
                      stop_criterion=StoppingCriterion(max_wallclock_time=budget_s), callbacks=[callback],
                      results_update_interval=1e9, print_update_interval=1e9, save_tuner=False,
                      tuner_name=f"hpwf-{method}-{workers}-{seed}", metadata={})
        tuner.run()
        df = callback.dataframe()
    df = df.sort_values("st_tuner_time")
    return [(float(t), float(v)) for t, v in zip(df["st_tuner_time"], df["value"])]


METHODS = ("random", "asha", "hyperband")


def campaign(bench: Benchmark, workers: list[int], max_seeds: int, budget_l: dict[int, float],
             deadline: float) -> dict[tuple[int, str], list[dict[str, Any]]]:
    """Seeds round-robin over (workers, method) until ``deadline`` (wall clock; at least 2 seeds),
    in the row format of `bench.search_efficiency_sim.one_run`."""
    logging.disable(logging.WARNING)
    runs: dict[tuple[int, str], list[dict[str, Any]]] = {(w, m): [] for w in workers for m in METHODS}
    assert bench.optimum is not None and bench.epsilon is not None
    for seed in range(max_seeds):
        for w in workers:
            for m in METHODS:
                if seed >= 2 and time.time() > deadline:
                    return runs
                t0 = time.process_time()
                rows = run_syne_tune(bench, m, w, seed, budget_l[w] * bench.full_s)
                inc: list[tuple[float, float]] = []
                for t, v in rows:
                    if not inc or v < inc[-1][1]:
                        inc.append((t, v))
                hit = next((t for t, v in inc if v - bench.optimum <= bench.epsilon), None)
                runs[(w, m)].append({"hit_s": hit, "final": inc[-1][1] - bench.optimum if inc else math.inf,
                                     "incumbent": inc, "cpu_s": time.process_time() - t0, "sampler_s": 0.0,
                                     "asked": len(rows), "paused": 0, "resumed": 0, "mean_trial_s": 0.0})
    return runs
