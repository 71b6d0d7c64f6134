"""Syne Tune's PBT on hpwf's PBT toy, in Syne Tune's own simulator (issue 25).

Syne Tune 0.14.2's PBT (`LegacyPopulationBasedTraining`, the "PBT" of ``legacy_baselines``) runs
under its own `Tuner` and `SimulatorCallback` on a `UserBlackboxBackend` that carries state across
an exploit. Its PBT starts an exploited member as a new trial with
``start_suggestion(config, checkpoint_trial_id=donor)``; `SimulatorBackend.start_trial` then calls
``copy_checkpoint(donor, new)`` (`LocalBackend` copies a checkpoint folder, which a simulation does
not have). `LineageBackend.copy_checkpoint` instead notes, at that virtual moment, the donor's last
reported step ``k`` (the checkpoint a training script that saves each step holds) and the donor's
lineage cut at ``k``; the new trial's results are that lineage replayed (each segment with its own
trial's noise stream) and continued with the new trial's own ``lr`` from step ``k + 1``. The stock
`_run_job_and_collect_results` then drops the results up to ``k`` and offsets the elapsed time, as
it does for a resumed trial. The resource continues (``epoch`` k + 1, ..., as Syne Tune's
``pbt_example.py`` does when it loads a checkpoint), so every lineage ends at step ``steps``.

Values come from `hpwf.sim`'s `pbt_toy` (its ``value`` and ``step_s``). A run stops when
``workers`` trials have reported the last step (the whole population is there), or at ``cap_l``
full-trial lengths of virtual time. A fork whose donor is already at the last step (its report
reached the backend after PBT chose it) has nothing to train; a script would report nothing and
Syne Tune's `Tuner` then raises "completed and no metrics got observed", so such a trial reports
the checkpoint's value once (``late_forks``): its worker's lineage has reached the last step, with
the donor's value (so the stop counts it; the best final value is unchanged). Needs syne-tune 0.14.2 (not in requirements.lock);
``python -m bench._synetune_pbt check`` checks the fork on one donor and one child.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpwf.sim import BENCHMARKS, Benchmark, best_fixed_lr

try:
    import numpy as np
    import syne_tune
    from syne_tune import Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.backend.trial_status import Status
    from syne_tune.blackbox_repository.blackbox import Blackbox
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
    from syne_tune.config_space import loguniform, randint
    from syne_tune.optimizer.schedulers.legacy_pbt import LegacyPopulationBasedTraining
except ImportError as exc:  # pragma: no cover - the comparison needs it; the suite does not
    raise ImportError(f"Syne Tune's PBT on the toy needs syne-tune 0.14 (pip install syne-tune==0.14.2): {exc}") from None

DUMP = Path(__file__).resolve().parent / "search_efficiency_sim_synetune_pbt_runs.jsonl"


@dataclass(frozen=True)
class Segment:
    """Steps ``[first, end)`` of a lineage, trained by trial ``trial_id`` with rate ``lr``."""

    trial_id: int
    lr: float
    first: int
    end: int


class ToyBlackbox(Blackbox):
    """The toy as a blackbox: ``replay`` gives a lineage's (value, elapsed, state) at every step."""

    def __init__(self, bench: Benchmark, seed: int) -> None:
        low, high, _ = bench.space["lr"]
        super().__init__({"lr": loguniform(low, high)}, {"epoch": randint(1, bench.steps)}, ["value", "elapsed"])
        self.bench, self.seed = bench, seed
        self.elapsed = np.cumsum([bench.step_s(t) for t in range(bench.steps)])

    @property
    def fidelity_values(self) -> Any:
        return np.arange(1, self.bench.steps + 1)

    def replay(self, lineage: list[Segment]) -> list[tuple[float, float, Any]]:
        """Each step of ``lineage`` from the initial state; step ``t`` of a segment draws its noise
        from ``Random(f"{seed}:{trial_id}:{t}")`` (as hpwf's virtual runner keys it by trial)."""
        state, rows = self.bench.initial_state, []
        for seg in lineage:
            for t in range(seg.first, seg.end):
                value, state = self.bench.value({"lr": seg.lr}, t, state, random.Random(f"{self.seed}:{seg.trial_id}:{t}"))
                rows.append((value, float(self.elapsed[t]), state))
        return rows

    def _objective_function(self, configuration: dict[str, Any], fidelity: dict | None = None,
                            seed: int | None = None) -> Any:
        """A trial never forked (noise stream of trial ``seed``): every step, or one fidelity."""
        rows = self.replay([Segment(seed or 0, float(configuration["lr"]), 0, self.bench.steps)])
        table = np.array([[v, e] for v, e, _ in rows])
        return dict(zip(["value", "elapsed"], table[int(fidelity["epoch"]) - 1])) if fidelity else table


class LineageBackend(UserBlackboxBackend):
    """`UserBlackboxBackend` whose forked trials continue from the donor's checkpoint."""

    def __init__(self, blackbox: ToyBlackbox) -> None:
        super().__init__(blackbox=blackbox, elapsed_time_attr="elapsed")
        self.toy = blackbox
        self.lineage: dict[int, list[Segment]] = {}  # a trial's segments, its own last
        self.forks: dict[int, tuple[int, int]] = {}  # forked trial -> (donor, donor's step at the fork)
        self.finals: list[float] = []  # values reported at the last step (a late fork's too)
        self.late_forks: set[int] = set()  # forked from a donor already at the last step
        self._running: int | None = None

    def copy_checkpoint(self, src_trial_id: int, tgt_trial_id: int) -> None:
        """The donor's checkpoint now: its last step the backend has seen by this virtual time."""
        self._advance_by_outside_time()  # what `_schedule` does next, done first so the step is current
        self._process_events_until_now()
        self._time_keeper.mark_exit()
        seen = getattr(self._trial_dict[src_trial_id], "metrics", [])
        step = int(seen[-1]["epoch"]) if seen else 0
        self.forks[tgt_trial_id] = (src_trial_id, step)
        self.lineage[tgt_trial_id] = [Segment(s.trial_id, s.lr, s.first, min(s.end, step))
                                      for s in self.lineage[src_trial_id] if s.first < step]
        if step:
            self._resource_paused_for_trial[tgt_trial_id] = step  # the stock skip and time offset

    def _run_job_and_collect_results(self, trial_id: int, config: dict | None = None) -> Any:
        config = self._trial_dict[trial_id].config if config is None else config
        step = self.forks.get(trial_id, (None, 0))[1]
        self.lineage[trial_id] = self.lineage.get(trial_id, []) + [
            Segment(trial_id, float(config["lr"]), step, self.toy.bench.steps)]
        if step >= self.toy.bench.steps:  # the donor has just finished: nothing left to train
            self.late_forks.add(trial_id)  # report the checkpoint's value, or Tuner raises (no metrics)
            value = self.toy.replay(self.lineage[trial_id][:-1])[-1][0]
            return Status.completed, [{"value": value, "elapsed": 0.01, "epoch": step}]
        self._running = trial_id
        return super()._run_job_and_collect_results(trial_id, config)

    def config_objectives(self, config: dict[str, Any], seed: int) -> list[dict]:
        assert self._running is not None
        rows = self.toy.replay(self.lineage[self._running])
        return [{"value": v, "elapsed": e, "epoch": t + 1} for t, (v, e, _) in enumerate(rows)]

    def _process_on_trial_result_event(self, time_event: float, event: Any) -> None:
        super()._process_on_trial_result_event(time_event, event)
        if int(event.result["epoch"]) == self.toy.bench.steps:
            self.finals.append(float(event.result["value"]))


def run_pbt(bench: Benchmark, workers: int, seed: int, cap_l: float = 2.0) -> dict[str, Any]:
    """One Syne Tune PBT run: population = workers, interval 10, quantile 0.25, resample 0.25."""
    backend = LineageBackend(ToyBlackbox(bench, seed))
    scheduler: Any = LegacyPopulationBasedTraining(  # a LegacyTrialScheduler: Tuner runs it, typed or not
        {"lr": loguniform(*bench.space["lr"][:2])}, metric="value", mode="min", resource_attr="epoch",
        max_t=bench.steps, population_size=workers, perturbation_interval=10, quantile_fraction=0.25,
        resample_probability=0.25, random_seed=seed, searcher="random", points_to_evaluate=[])
    cap_s = cap_l * bench.full_s

    def stop(_: Any) -> bool:
        return len(backend.finals) >= workers or backend.time_keeper.time() > cap_s

    t0 = time.process_time()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="hpwf-st-pbt-") as tmp, open(os.devnull, "w") as quiet:
        os.environ["SYNETUNE_FOLDER"] = tmp
        stdout, sys.stdout = sys.stdout, quiet
        try:
            Tuner(trial_backend=backend, scheduler=scheduler, n_workers=workers, sleep_time=0, stop_criterion=stop,
                  callbacks=[SimulatorCallback()], results_update_interval=1e9, print_update_interval=1e9,
                  save_tuner=False, tuner_name=f"hpwf-pbt-{workers}-{seed}", metadata={}).run()
        finally:
            sys.stdout = stdout
    finals = backend.finals[:workers]
    return {"final": min(finals) if finals else math.inf, "finished": len(finals),
            "capped": len(backend.finals) < workers, "virtual_s": backend.time_keeper.time(),
            "trials": len(backend.lineage), "forks": len(backend.forks),
            "late_forks": len(backend.late_forks), "cpu_s": time.process_time() - t0,
            "syne_tune": syne_tune.__version__}


def campaign(workers: list[int], max_seeds: int, deadline: float, dump: Path = DUMP) -> None:
    """Each population from the next seed ``dump`` lacks, the fewest seeds first, until
    ``deadline`` (wall clock) or ``max_seeds``; one JSON line per run, appended as it ends."""
    from bench.search_efficiency_sim import continue_seeds

    bench = BENCHMARKS["pbt_toy"]()
    fixed_lr, fixed_value = best_fixed_lr(bench)

    def one(w: int, seed: int) -> dict[str, Any]:
        row = run_pbt(bench, w, seed)
        return {"workers": w, "seed": seed, **row, "wins": row["final"] < fixed_value,
                "best_fixed_lr": fixed_lr, "best_fixed_value": fixed_value}

    continue_seeds(dump, {w: max_seeds for w in workers}, deadline, one, key=lambda row: row["workers"])


def summary(dump: Path = DUMP) -> dict[str, Any]:
    """Per population: seeds, wins over the best fixed rate, final accuracy (mean, 95 %)."""
    from bench.search_efficiency_sim import interval

    rows: dict[int, list[dict[str, Any]]] = {}
    for line in dump.read_text().splitlines():
        row = json.loads(line)
        rows.setdefault(row["workers"], []).append(row)
    out: dict[str, Any] = {}
    for w, rs in sorted(rows.items()):
        acc = [-r["final"] for r in rs]
        out[str(w)] = {"seeds": len(rs), "wins": sum(r["wins"] for r in rs), "capped": sum(r["capped"] for r in rs),
                       "late_forks": sum(r["late_forks"] for r in rs),
                       "virtual_s_mean": round(sum(r["virtual_s"] for r in rs) / len(rs)),
                       "accuracy": [round(x, 1) for x in interval(acc)],
                       "cpu_s_per_seed": round(sum(r["cpu_s"] for r in rs) / len(rs), 1),
                       "forks_per_seed": round(sum(r["forks"] for r in rs) / len(rs)),
                       "best_fixed": [round(rs[0]["best_fixed_lr"], 5), round(-rs[0]["best_fixed_value"], 1)]}
    return out


def check(seed: int = 0) -> list[str]:
    """A donor trains 25.5 steps, a child forks from it, and 10 steps later a grandchild from the
    child: each fork reports from the step after the parent's last one and continues from the
    parent's accuracy there (not from 0, not from the parent's last step)."""
    bench = BENCHMARKS["pbt_toy"]()
    backend = LineageBackend(ToyBlackbox(bench, seed))
    backend.time_keeper.start_of_time()
    ids = [backend.start_trial({"lr": 0.002}).trial_id]
    for lr in (0.0025, 0.003):
        backend.time_keeper.advance((25.5 if len(ids) == 1 else 10) * bench.step_s(0))
        ids.append(backend.start_trial({"lr": lr}, checkpoint_trial_id=ids[-1]).trial_id)
    backend.time_keeper.advance(bench.full_s)
    _, results = backend.fetch_status_results(ids)
    seen = {tid: [r for t, r in results if t == tid] for tid in ids}
    lines = []
    for parent, child in zip(ids, ids[1:]):
        step, first, lr = backend.forks[child][1], seen[child][0], backend.lineage[child][-1].lr
        acc = {int(r["epoch"]): -r["value"] for r in seen[parent]}
        expect, from_zero, from_last = (bench.value({"lr": lr}, step, a, random.Random(f"{seed}:{child}:{step}"))[0]
                                        for a in (acc[step], 0.0, acc[100]))  # the child's noise at its first step
        lines += [f"fork: trial {child} (lr {lr}) from trial {parent} at its step {step} (accuracy {acc[step]:.3f}; "
                  f"at step 100 {acc[100]:.3f}); reports epochs {int(first['epoch'])}..{int(seen[child][-1]['epoch'])}",
                  f"  first value {first['value']:.4f}: continuing from step {step} {expect:.4f}, from 0 {from_zero:.4f}, "
                  f"from the parent's last step {from_last:.4f}; elapsed {first['elapsed']:.2f} s"]
        assert backend.forks[child] == (parent, step) and int(first["epoch"]) == step + 1
        assert len(seen[child]) == bench.steps - step and first["value"] == expect
        assert expect != from_zero and expect != from_last and abs(first["elapsed"] - bench.step_s(step)) < 1e-6
    assert [s.trial_id for s in backend.lineage[ids[2]]] == ids and backend.forks[ids[1]][1] == 25
    late = backend.start_trial({"lr": 0.004}, checkpoint_trial_id=ids[0]).trial_id  # the donor is at step 100
    backend.time_keeper.advance(bench.step_s(0))
    report = [r for _, r in backend.fetch_status_results([late])[1]]
    lines.append(f"late fork: trial {late} from trial {ids[0]} at its step {backend.forks[late][1]} reports {report}")
    assert backend.forks[late][1] == bench.steps and [(r["epoch"], r["value"]) for r in report] == [
        (bench.steps, seen[ids[0]][-1]["value"])] and len(backend.finals) == len(ids) + 1
    return lines + [f"lineage of trial {ids[2]}: {backend.lineage[ids[2]]}", "fork check: ok"]


if __name__ == "__main__":
    # python -m bench._synetune_pbt check | run WORKERS SEED
    if sys.argv[1] == "check":
        print("\n".join(check()))
    else:
        print(run_pbt(BENCHMARKS["pbt_toy"](), int(sys.argv[2]), int(sys.argv[3])))
