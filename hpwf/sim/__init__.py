"""A deterministic simulator of the engine: the real `Coordinator` against simulated agents over a
simulated network in virtual time, with faults, and invariants checked after every step.

`python -m hpwf.sim --seed N` replays schedule N; `python -m bench soak --minutes M` runs many.
Search efficiency in virtual time (`run_search`, no faults) on benchmarks with known optima
(`hartmann`, `pbt_toy`): `python -m bench search_efficiency_sim`.
May import: `hpwf.engine` (what it drives), `hpwf.backends`, `hpwf.workflow`, `hpwf.rundir`, `hpwf.wire`;
nothing imports it but tests and benchmarks.
"""

from __future__ import annotations

from hpwf.sim._schedule import Outcome, apply, draw_actions, finish, run, run_seed
from hpwf.sim._world import World
from hpwf.sim._config import Config
from hpwf.sim._benchmarks import BENCHMARKS, Benchmark, best_fixed_lr, hartmann, hartmann_exact, pbt_toy
from hpwf.sim._virtual import Outcome as SearchOutcome, run_search

__all__ = ["BENCHMARKS", "Benchmark", "SearchOutcome", "best_fixed_lr", "hartmann", "hartmann_exact", "pbt_toy",
           "run_search", "Config", "Outcome", "World", "apply", "draw_actions", "finish", "run", "run_seed"]
