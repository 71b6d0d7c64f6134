"""(4) Search efficiency on workflows/mnist1d_mlp.py: epochs spent by TPE+ASHA vs random search
without pruning to reach the same best validation accuracy, averaged over seeds.

For each seed, the shipped workflow runs twice through ``hpwf.run(..., workers=2)`` with its
``hpwf.Search`` copied by ``dataclasses.replace``: (a) ``sampler="random", pruner="none"``,
(b) ``sampler="tpe", pruner="asha"`` (``min_resource=2, reduction_factor=3``), each with
``n_trials`` trials and that seed. The objective is unchanged (up to 24 epochs per trial; it
reports the validation accuracy after every epoch).

- A trial's epochs = the number of its intermediate values (read from the study).
- target = min(best of (a), best of (b)): the best validation accuracy both searches reached
  (a completed trial's final value, as the study counts it).
- epochs to target = the epochs of all trials numbered up to the first completed trial whose
  value >= target, in trial-number (sampling) order, pruned trials included.

ratio = mean over seeds of epochs-to-target(TPE+ASHA) / mean of epochs-to-target(random).
Total epochs of each whole run are reported too.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from bench._common import ROOT, quiet_optuna, rnd, scratch

WORKFLOW = ROOT / "workflows" / "mnist1d_mlp.py"
WORKERS = 2


def _epochs_to(trials: list[Any], target: float) -> int | None:
    spent = 0
    for t in sorted(trials, key=lambda t: t.number):
        spent += len(t.intermediate_values)
        if t.state.name == "COMPLETE" and t.value is not None and t.value >= target:
            return spent
    return None


def _one(wf: Any, search: Any, run_dir: Any) -> dict[str, Any]:
    import hpwf

    start = time.perf_counter()
    result = hpwf.run(dataclasses.replace(wf, search=search), workers=WORKERS, run_dir=run_dir, progress=False)
    wall = time.perf_counter() - start
    trials = [t for t in result.study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    return {
        "trials": trials, "best": result.summary["best_value"], "wall_s": rnd(wall, 1),
        "epochs_total": sum(len(t.intermediate_values) for t in trials),
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
    }


def run(quick: bool = False) -> dict[str, Any]:
    import hpwf

    quiet_optuna()
    seeds, n_trials = ([0], 6) if quick else ([0, 1, 2], 20)
    wf = hpwf.load(WORKFLOW)
    assert wf.search is not None
    random_search = dataclasses.replace(wf.search, sampler="random", pruner="none", pruner_options={},
                                        n_trials=n_trials)
    tpe_asha = dataclasses.replace(wf.search, sampler="tpe", pruner="asha",
                                   pruner_options={"min_resource": 2, "reduction_factor": 3}, n_trials=n_trials)
    rows: list[dict[str, Any]] = []
    with scratch("search") as folder:
        for seed in seeds:
            a = _one(wf, dataclasses.replace(random_search, seed=seed), folder / f"random-{seed}")
            b = _one(wf, dataclasses.replace(tpe_asha, seed=seed), folder / f"tpe-asha-{seed}")
            target = min(a["best"], b["best"])
            rows.append({
                "seed": seed, "target_accuracy": rnd(target),
                "random": {"best": rnd(a["best"]), "epochs_to_target": _epochs_to(a["trials"], target),
                           "epochs_total": a["epochs_total"], "wall_s": a["wall_s"]},
                "tpe_asha": {"best": rnd(b["best"]), "epochs_to_target": _epochs_to(b["trials"], target),
                             "epochs_total": b["epochs_total"], "pruned": b["pruned"], "wall_s": b["wall_s"]},
            })
    mean_random = sum(r["random"]["epochs_to_target"] for r in rows) / len(rows)
    mean_tpe = sum(r["tpe_asha"]["epochs_to_target"] for r in rows) / len(rows)
    total_random = sum(r["random"]["epochs_total"] for r in rows) / len(rows)
    total_tpe = sum(r["tpe_asha"]["epochs_total"] for r in rows) / len(rows)
    return {
        "benchmark": "search_efficiency",
        "comparison": f"workflows/mnist1d_mlp.py, {len(seeds)} seeds x {n_trials} trials per search, "
                      f"{WORKERS} workers: epochs (intermediate values, trial-number order) until a completed "
                      "trial reaches target = min(best random, best TPE+ASHA); TPE+ASHA(min_resource=2, "
                      "reduction_factor=3) vs random without pruning",
        "command": "python -m bench search_efficiency (hpwf.run(dataclasses.replace(wf, search=...), workers=2))",
        "seeds": seeds, "n_trials": n_trials,
        "mean_epochs_to_target": {"random": mean_random, "tpe_asha": mean_tpe},
        "mean_epochs_total": {"random": total_random, "tpe_asha": total_tpe},
        "ratio": rnd(mean_tpe / mean_random, 3),
        "ratio_total_epochs": rnd(total_tpe / total_random, 3),
        "aim": "< 1 (TPE+ASHA needs fewer epochs)",
        "rows": rows,
        "line": f"search_efficiency (TPE+ASHA / random, epochs to the same best accuracy): {mean_tpe / mean_random:.2f}x "
                f"({mean_tpe:.0f} vs {mean_random:.0f} epochs, mean of {len(seeds)} seeds); whole runs "
                f"{total_tpe:.0f} vs {total_random:.0f} epochs; targets "
                + ", ".join(f"{r['target_accuracy']:.3f}" for r in rows),
    }
