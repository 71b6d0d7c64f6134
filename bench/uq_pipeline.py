"""(7) UQ, the whole pipeline over seeds: search, torch members, selection, calibration and scoring,
each figure a mean over seeds with its standard error.

For every seed and data set (sine and diabetes; breast-cancer texture and digits on request) this runs
bench/_uq_workflow.py at its reduced sizes (UQ_BENCH_SMALL=1) through the command line, as a
user would, exactly as ``bench uq`` does for one seed at full size:

1. ``hpwf run`` (UQ_BENCH_MODE=greedy): a TPE search of 8 trials of MLPs with a Gaussian head
   (a softmax for digits) on validation NLL; every trial saves validation, calibration and test
   predictions; greedy selection (8 rounds, best prefix) forms the ensemble from the trials;
   calibration: split conformal and Mondrian (regression), temperature scaling and APS/RAPS
   sets (digits).
2. ``hpwf ensemble --from`` (UQ_BENCH_MODE=bootstrap): 5 members of the best configuration on
   bootstrap resamples, each also saving its out-of-bag rows, calibrated by split conformal,
   Mondrian and jackknife+-after-bootstrap.

After each step, crepes (split conformal, Mondrian) or MAPIE's APS calibrate the same saved
predictions again, and MAPIE's jackknife+-after-bootstrap replays the bootstrap members' saved
out-of-bag and test predictions (bench/_uq_reference.py); "side_by_side" holds hpwf's figure
beside theirs.

The seed (UQ_BENCH_SEED) draws the data split (and the sine's points), the search's sampler
and the members. ``--quick``: one seed at the smoke sizes.

Seeds run one after another, every data set for a seed before the next seed, so a run cut
short still has whole seeds. Environment: UQ_PIPELINE_SETS (comma-separated, default
"sine,diabetes"; breast_cancer_texture and digits are available), UQ_PIPELINE_SEEDS (default
10), UQ_PIPELINE_MINUTES (start no new seed after this many minutes; the figures say how many
seeds ran), UQ_PIPELINE_ROWS (a JSON-lines file that keeps every finished (set, seed) row:
a second run with the same file skips them and adds its own).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import PY, ROOT, rnd, scratch, timed
from bench._uq_reference import reference
from bench.uq import _true_nll

WORKFLOW = ROOT / "bench" / "_uq_workflow.py"
SEEDS = int(os.environ.get("UQ_PIPELINE_SEEDS", "10"))
DATASETS = tuple(os.environ.get("UQ_PIPELINE_SETS", "sine,diabetes").split(","))
MINUTES = float(os.environ.get("UQ_PIPELINE_MINUTES", "inf"))
ROWS = os.environ.get("UQ_PIPELINE_ROWS")
INTERVALS = ("picp_68", "picp_90", "picp_95", "width_90", "winkler_90", "worst_sigma_decile_90", "worst_slab_90")
SCORES = ("nll", "mixture_nll", "crps", "rmse", "accuracy", "ece")
CLASSIFY = ("accuracy", "ece", "ece_before", "nll", "nll_before", "temperature", "set_coverage_90", "set_size_90",
            "worst_class_coverage_90")


def _pick(entry: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, float]:
    return {k: float(entry[k]) for k in keys if entry is not None and isinstance(entry.get(k), (int, float))}


def _one(name: str, seed: int, folder: Path, quick: bool) -> dict[str, float]:
    """One seed of one data set: the flat figures ``"<model>.<figure>"``."""
    run_dir = folder / f"{name}-{seed}"
    env = {"UQ_BENCH_DATA": name, "UQ_BENCH_SEED": str(seed), "UQ_BENCH_SMALL": "1",
           "UQ_BENCH_QUICK": "1" if quick else "0"}
    common = ["--workers", "2", "--quiet"]
    timed([PY, "-m", "hpwf", "run", str(WORKFLOW), "--run-dir", str(run_dir), *common],
          extra_env={**env, "UQ_BENCH_MODE": "greedy"}, timeout=1800)
    greedy = json.loads((run_dir / "uq_metrics.json").read_text())
    (run_dir / "uq_metrics_greedy.json").write_text(json.dumps(greedy))  # the bootstrap run overwrites it
    references = reference(run_dir, "greedy", greedy)  # crepes / MAPIE on the predictions greedy scored
    true_nll = _true_nll(run_dir) if name == "sine" else None
    timed([PY, "-m", "hpwf", "ensemble", str(WORKFLOW), "--from", str(run_dir), *common],
          extra_env={**env, "UQ_BENCH_MODE": "bootstrap"}, timeout=1800)
    boot = json.loads((run_dir / "uq_metrics.json").read_text())
    out: dict[str, float] = {**references, **reference(run_dir, "bootstrap", boot)}
    sources = {"best_trial": greedy.get("best_trial"), "greedy": greedy["ensemble"], "bootstrap": boot["ensemble"]}
    for model, entry in sources.items():
        out.update({f"{model}.{k}": v for k, v in _pick(entry, SCORES + INTERVALS).items()})
    calibrated = {"greedy": greedy, "bootstrap": boot}
    for model, metrics in calibrated.items():
        for method in ("conformal", "mondrian", "jackknife+ab", "temperature", "aps", "raps"):
            entry = metrics.get(f"ensemble+{method}")
            out.update({f"{model}+{method}.{k}": v for k, v in _pick(entry, INTERVALS + CLASSIFY).items()})
    out["greedy.distinct"] = float(len(greedy["selection"]["weights"]))
    if true_nll is not None:
        out["true_nll"] = true_nll
    return out


def _summary(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    """[mean, standard error] over seeds of every figure every seed has."""
    keys = [k for k in rows[0] if all(k in r for r in rows)]
    n = len(rows)
    return {k: [rnd(float(np.mean([r[k] for r in rows]))),
                rnd(float(np.std([r[k] for r in rows], ddof=1) / math.sqrt(n))) if n > 1 else 0.0] for k in keys}


def _side_by_side(rows: list[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Each reference figure (keyed as in the rows) beside hpwf's on the same predictions: both means
    over seeds, the largest absolute difference of one seed; and crepes' largest gap between interval ends."""
    out: dict[str, dict[str, Any]] = {}
    for key in (k for k in rows[0] if all(k in r for r in rows)):
        model, _, figure = key.partition(".")
        if "+mapie_aps" in model:  # MAPIE's APS (default or randomised) beside hpwf's APS
            ours = f"{model.split('+mapie_aps')[0]}+aps.{figure}"
        elif figure == "crepes_max_end_gap":
            out[key] = {"library": "crepes", "max_abs_diff": rnd(max(r[key] for r in rows))}
            continue
        elif figure.startswith("crepes_"):
            ours = f"{model}.{figure.removeprefix('crepes_')}"
        elif figure == "mapie_max_end_gap":  # MAPIE's jackknife+ab on the members' saved predictions
            out[key] = {"library": "mapie", "max_abs_diff": rnd(max(r[key] for r in rows))}
            continue
        elif figure.startswith("mapie_"):
            ours = f"{model}.hpwf_{figure.removeprefix('mapie_')}"
        else:
            continue
        if all(ours in r for r in rows):
            out[key] = {"library": "mapie" if "mapie" in key else "crepes", "hpwf_figure": ours,
                        "hpwf": rnd(float(np.mean([r[ours] for r in rows]))),
                        "reference": rnd(float(np.mean([r[key] for r in rows]))),
                        "max_abs_diff": rnd(max(abs(r[ours] - r[key]) for r in rows))}
    return out


def _aims(res: dict[str, dict[str, list[float]]]) -> dict[str, bool]:
    aims: dict[str, bool] = {}
    levels = {"68": 0.6827, "90": 0.9, "95": 0.95}
    for name in (d for d in res if d != "digits"):
        f = res[name]
        for method in ("greedy+conformal", "greedy+mondrian", "bootstrap+jackknife+ab"):
            aims[f"{name}: {method} marginal coverage within 1.5 points at 68/90/95"] = all(
                abs(f[f"{method}.picp_{k}"][0] - lv) <= 0.015 for k, lv in levels.items())
        aims[f"{name}: Mondrian worst-sigma-decile coverage@90 >= 0.85"] = \
            f["greedy+mondrian.worst_sigma_decile_90"][0] >= 0.85
        g, b = f["greedy.nll"], f["bootstrap.nll"]
        aims[f"{name}: greedy NLL <= bootstrap NLL within 1 SE"] = g[0] <= b[0] + math.hypot(g[1], b[1])
        aims[f"{name}: jackknife+ab width@90 <= split conformal's (bootstrap members)"] = \
            f["bootstrap+jackknife+ab.width_90"][0] <= f["bootstrap+conformal.width_90"][0]
    if "digits" in res:
        c = res["digits"]
        for kind in ("aps", "raps"):
            aims[f"digits: greedy+{kind} set coverage@90 in [0.89, 0.91]"] = \
                0.89 <= c[f"greedy+{kind}.set_coverage_90"][0] <= 0.91
    return aims


def _kept() -> dict[tuple[str, int], dict[str, float]]:
    """The rows a previous run with the same UQ_PIPELINE_ROWS file finished."""
    if not ROWS or not Path(ROWS).exists():
        return {}
    lines = [json.loads(line) for line in Path(ROWS).read_text().splitlines() if line.strip()]
    return {(r["set"], r["seed"]): r["figures"] for r in lines}


def run(quick: bool = False) -> dict[str, Any]:
    rows, started = _kept(), time.monotonic()
    done: list[int] = []
    with scratch("uq_pipeline") as folder:
        for seed in range(1 if quick else SEEDS):
            todo = [name for name in DATASETS if (name, seed) not in rows]
            if todo and time.monotonic() - started > MINUTES * 60:
                print(f"[uq_pipeline] {MINUTES:g} minutes spent: no seed after {seed - 1}", flush=True)
                break
            for name in DATASETS:
                if (name, seed) not in rows:
                    rows[name, seed] = _one(name, seed, folder, quick)
                    if ROWS:
                        with open(ROWS, "a") as f:
                            f.write(json.dumps({"set": name, "seed": seed, "figures": rows[name, seed]}) + "\n")
                print(f"[uq_pipeline] {name} seed {seed} done", flush=True)
            done.append(seed)
    res = {name: _summary([rows[name, s] for s in done]) for name in DATASETS}
    beside = {name: _side_by_side([rows[name, s] for s in done]) for name in DATASETS}
    aims = _aims(res) if len(done) > 1 else {}
    sine = res.get("sine")
    line = (f"uq_pipeline ({len(done)} seeds, {', '.join(DATASETS)})"
            + (f": sine NLL greedy {sine['greedy.nll'][0]:.3f} / bootstrap {sine['bootstrap.nll'][0]:.3f} / "
               f"true {sine['true_nll'][0]:.3f}" if sine else "") + f"; aims met {sum(aims.values())}/{len(aims)}")
    gaps = [v["max_abs_diff"] for b in beside.values() for v in b.values() if v["library"] == "crepes"]
    if gaps:
        line += f"; crepes on the same predictions: {len(gaps)} figures, max |diff| {max(gaps):.3g}"
    if "digits" in beside:
        aps = beside["digits"]["greedy+mapie_aps.set_size_90"]
        line += f"; digits APS@90 set size hpwf {aps['hpwf']:.3f} vs MAPIE {aps['reference']:.3f}"
    return {"benchmark": "uq_pipeline", "line": line, "results": res, "aims": aims, "seeds": len(done),
            "side_by_side": beside,
            "comparison": "the whole hpwf pipeline (TPE search of torch MLPs, greedy selection, bootstrap members, "
                          "split / Mondrian / jackknife+ab / temperature / APS / RAPS) at reduced sizes; "
                          "[mean, SE] over seeds"}
