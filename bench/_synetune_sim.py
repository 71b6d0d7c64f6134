"""Syne Tune's simulator on the same benchmarks (issue 25): `UserBlackboxBackend` over a blackbox
that wraps an `hpwf.sim` benchmark (the same values, the same per-step virtual costs), driven by
Syne Tune's own `Tuner` with its random search, ASHA (stopping and promotion) and Hyperband
(promotion) baselines.

Needs Syne Tune 0.14.x (``pip install syne-tune==0.14.2``): 0.15 and 0.16 dropped
``HyperbandScheduler(type="promotion")``, and the aim compares asha-resume with Syne Tune's ASHA
with promotion; the runs use the ``legacy_baselines`` of 0.14 for every method, so all cells come
from one version. Optional: imported only by `bench search_efficiency_sim synetune`, and it says so
clearly when the version is missing. Syne Tune's PBT is in `bench._synetune_pbt`: the stock
blackbox backend has no state to carry across an exploit (a blackbox's value is a function of the
configuration and the fidelity) while the PBT toy's value depends on the learning-rate schedule, so
that module's backend replays a forked trial's lineage from the donor's checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from hpwf.sim import Benchmark

try:
    import numpy as np
    import syne_tune
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.blackbox import Blackbox
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
    from syne_tune.config_space import randint, uniform
    from syne_tune.optimizer.legacy_baselines import ASHA, RandomSearch
except ImportError as exc:  # pragma: no cover - the comparison needs it; the suite does not
    raise ImportError(f"the Syne Tune side of bench search_efficiency_sim needs syne-tune 0.14 "
                      f"(pip install syne-tune==0.14.2; 0.15+ has no promotion ASHA): {exc}") from None

METHODS = ("random", "asha_stopping", "asha_promotion", "hyperband_promotion")


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


def _scheduler(bench: Benchmark, method: str, space: dict[str, Any], seed: int) -> Any:
    if method == "random":
        return RandomSearch(space, metric="value", mode="min", random_seed=seed)
    kind, rule = method.split("_")
    brackets = 1 if kind == "asha" else len([r for r in (1, 3, 9, 27) if r <= bench.steps])
    return ASHA(space, metric="value", resource_attr="epoch", mode="min", random_seed=seed, type=rule,
                max_resource_attr="epoch", grace_period=1, reduction_factor=3, brackets=brackets)


def run_syne_tune(bench: Benchmark, method: str, workers: int, seed: int, budget_s: float) -> list[tuple[float, float]]:
    """(virtual s, value) of every result Syne Tune's simulated run saw, in time order."""
    blackbox = BenchBlackbox(bench, seed)
    space = dict(blackbox.configuration_space, epoch=bench.steps)
    scheduler = _scheduler(bench, method, space, seed)
    backend = UserBlackboxBackend(blackbox=blackbox, elapsed_time_attr="elapsed", max_resource_attr="epoch")
    with tempfile.TemporaryDirectory(prefix="hpwf-st-") as tmp, open(os.devnull, "w") as quiet, \
            contextlib.redirect_stdout(quiet):
        os.environ["SYNETUNE_FOLDER"] = tmp
        callback = SimulatorCallback()
        tuner = Tuner(trial_backend=backend, scheduler=scheduler, n_workers=workers, sleep_time=0,
                      stop_criterion=StoppingCriterion(max_wallclock_time=budget_s), callbacks=[callback],
                      results_update_interval=1e9, print_update_interval=1e9, save_tuner=False,
                      tuner_name=f"hpwf-{method.replace('_', '-')}-{workers}-{seed}", metadata={})
        tuner.run()
        df = callback.dataframe()
    df = df.sort_values("st_tuner_time")
    return [(float(t), float(v)) for t, v in zip(df["st_tuner_time"], df["value"])]


def one_run(bench: Benchmark, method: str, workers: int, seed: int, budget_s: float) -> dict[str, Any]:
    """One Syne Tune run in the row format of `bench.search_efficiency_sim.one_run`."""
    assert bench.optimum is not None and bench.epsilon is not None
    t0 = time.process_time()
    rows = run_syne_tune(bench, method, workers, seed, budget_s)
    inc: list[tuple[float, float]] = []
    for t, v in rows:
        if t <= budget_s and (not inc or v < inc[-1][1]):
            inc.append((t, v))
    hit = next((t for t, v in inc if v - bench.optimum <= bench.epsilon), None)
    return {"hit_s": hit, "final": inc[-1][1] - bench.optimum if inc else math.inf, "incumbent": inc,
            "cpu_s": time.process_time() - t0, "sampler_s": 0.0, "asked": len(rows), "paused": 0, "resumed": 0,
            "mean_trial_s": 0.0, "syne_tune": syne_tune.__version__}


def campaign(bench: Benchmark, cells: list[tuple[int, str]], max_seeds: int, budget_l: dict[int, float],
             deadline: float, dump: Path) -> None:
    """Each cell from the next seed ``dump`` lacks, the fewest seeds first, until ``deadline``
    (wall clock) or ``max_seeds``; every run is appended to ``dump`` as it ends."""
    from bench.search_efficiency_sim import continue_seeds

    logging.disable(logging.WARNING)
    continue_seeds(dump, {c: max_seeds for c in cells}, deadline, lambda cell, seed: {
        "workers": cell[0], "method": cell[1], "seed": seed,
        **one_run(bench, cell[1], cell[0], seed, budget_l[cell[0]] * bench.full_s)})
