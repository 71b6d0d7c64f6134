"""(7) UQ: best single trial, bootstrap ensemble, greedy ensemble and MC dropout, raw and conformal,
on the heteroscedastic sine (true NLL known), diabetes regression and digits classification.

For each data set, bench/_uq_workflow.py runs through the command line, as a user would:

1. ``hpwf run bench/_uq_workflow.py`` (UQ_BENCH_MODE=greedy): a TPE search of 16 trials
   (validation NLL); every trial saves validation, calibration and test predictions (and 30
   MC-dropout passes). Greedy selection (10 rounds, validation NLL) then forms the ensemble from
   the trials, no retraining. Gives: greedy ensemble, best single trial (best validation NLL),
   MC dropout (30 passes of the best trial's model), each raw and conformal.
2. ``hpwf ensemble bench/_uq_workflow.py --from RUN`` (UQ_BENCH_MODE=bootstrap): 8 members of
   the best configuration on bootstrap resamples. Gives: bootstrap ensemble, raw and conformal.

Every figure is on the same test set, one seed of the whole pipeline (39 minutes on this
machine; bench/uq_pipeline.py repeats the whole pipeline at reduced sizes over 10 seeds, and
bench/uq_methods.py the post-training methods). The old aim
"PICP@90 re-split over pooled calibration + test points" is gone: re-splitting makes any model
exchangeable, so it cannot fail; conditional coverage (worst sigma decile, worst slab) and
the Winkler score are reported instead.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import PY, ROOT, rnd, scratch, show, timed

WORKFLOW = ROOT / "bench" / "_uq_workflow.py"
DATASETS = ("sine", "diabetes", "digits")
KEYS = ("nll", "mixture_nll", "rescaled_nll", "crps", "rmse", "picp_90", "winkler_90", "worst_sigma_decile_90",
        "worst_slab_90", "ece", "accuracy", "set_coverage_90", "set_size_90", "ece_before")


def _true_nll(run_dir: Path) -> float:
    """Mean NLL of the sine's test set under the generating process N(sin x, noise_std(x)^2)."""
    with np.load(run_dir / "uq_predictions.npz") as p:
        x, y = p["x"], p["y"]
    sd = 0.01 + np.abs(x - 5.0) / 10.0
    return float(np.mean(0.5 * np.log(2 * math.pi * sd**2) + (y - np.sin(x)) ** 2 / (2 * sd**2)))


def _one(name: str, folder: Path, quick: bool) -> dict[str, Any]:
    run_dir = folder / name
    env = {"UQ_BENCH_DATA": name, "UQ_BENCH_QUICK": "1" if quick else "0"}
    run_cmd = [PY, "-m", "hpwf", "run", str(WORKFLOW), "--run-dir", str(run_dir), "--workers", "2", "--quiet"]
    wall_run, _ = timed(run_cmd, extra_env={**env, "UQ_BENCH_MODE": "greedy"}, timeout=1800)
    greedy = json.loads((run_dir / "uq_metrics.json").read_text())
    true_nll = _true_nll(run_dir) if name == "sine" else None
    ens_cmd = [PY, "-m", "hpwf", "ensemble", str(WORKFLOW), "--from", str(run_dir), "--workers", "2", "--quiet"]
    wall_ens, _ = timed(ens_cmd, extra_env={**env, "UQ_BENCH_MODE": "bootstrap"}, timeout=1800)
    boot = json.loads((run_dir / "uq_metrics.json").read_text())
    rows = {"best_trial": greedy.get("best_trial"), "bootstrap": boot["ensemble"], "greedy": greedy["ensemble"],
            "best_member": boot.get("best_member"), "mc_dropout": greedy.get("mc_dropout")}
    calibrated = {f"{model}+{method}": source.get(f"{key}+{method}")
                  for model, source, key in (("best_trial", greedy, "best_trial"), ("bootstrap", boot, "ensemble"),
                                             ("greedy", greedy, "ensemble"), ("best_member", boot, "best_member"),
                                             ("mc_dropout", greedy, "mc_dropout"))
                  for method in ("conformal", "mondrian", "temperature", "aps", "raps")}
    figures: dict[str, Any] = {}
    for model, raw in rows.items():
        if raw is None:
            continue
        figures[model] = {k: rnd(raw[k]) for k in KEYS if k in raw}
    for key, cal in calibrated.items():
        if cal is not None:
            figures[key] = {k: rnd(cal[k]) for k in KEYS if k in cal}
    out: dict[str, Any] = {
        "figures": figures, "greedy_weights": greedy["selection"]["weights"],
        "commands": [show(run_cmd, folder), show(ens_cmd, folder)], "wall_s": rnd(wall_run + wall_ens, 1),
    }
    if true_nll is not None:
        out["true_nll"] = rnd(true_nll)
    return out


def _aims(results: dict[str, Any]) -> dict[str, Any]:
    aims: dict[str, Any] = {}
    for name, r in results.items():
        f = r["figures"]
        aims[f"{name}: greedy NLL <= bootstrap NLL"] = f["greedy"]["nll"] <= f["bootstrap"]["nll"]
        if name == "digits":
            best_single = min(f["best_member"]["ece"], f["best_trial"]["ece"])
            aims[f"{name}: ensemble ECE < best member's"] = min(f["greedy"]["ece"], f["bootstrap"]["ece"]) < best_single
            continue
        aims[f"{name}: Mondrian worst-sigma-decile coverage@90 >= 0.85 (greedy, bootstrap)"] = all(
            f[f"{m}+mondrian"]["worst_sigma_decile_90"] >= 0.85 for m in ("greedy", "bootstrap"))
        aims[f"{name}: conformal PICP@90 within 1.5 points (every model, this test set)"] = all(
            abs(f[f"{m}+conformal"]["picp_90"] - 0.9) <= 0.015 for m in ("greedy", "bootstrap", "best_trial", "mc_dropout"))
        if name == "sine":
            best = min(f["greedy"]["nll"], f["bootstrap"]["nll"])
            aims["sine: best ensemble within 0.03 nats of the true NLL"] = best - r["true_nll"] <= 0.03
    return aims


def run(quick: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with scratch("uq") as folder:
        for name in DATASETS:
            results[name] = _one(name, folder, quick)
    aims = _aims(results)
    sine = results["sine"]["figures"]
    line = (f"uq: sine NLL greedy {sine['greedy']['nll']:.3f} / bootstrap {sine['bootstrap']['nll']:.3f} / "
            f"true {results['sine']['true_nll']:.3f}; aims met {sum(aims.values())}/{len(aims)}")
    return {"benchmark": "uq", "line": line, "results": results, "aims": aims,
            "comparison": "best single trial, bootstrap ensemble (8 members, top-1), greedy ensemble (10 rounds, "
                          "no retraining), MC dropout (30 passes), raw and split-conformal, same test sets"}
