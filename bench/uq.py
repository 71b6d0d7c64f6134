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

Every figure is on the same test set. ``picp90_resplit``: conformal PICP@90 averaged over 200
random re-splits of the pooled calibration + test predictions into calibration and test halves
of the original sizes (the model fixed): one split's coverage has a standard error of
sqrt(0.09 / n_test), too wide to judge a [0.88, 0.92] aim on a small test set alone.
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
KEYS = ("nll", "crps", "rmse", "picp_90", "ece", "accuracy")
RESPLITS = 200


def _members_of(run_dir: Path, model: str, metrics: dict[str, Any]) -> list[tuple[Path, float]]:
    """Folders and weights of a model in uq_metrics.json."""
    rows = metrics["selection"]["members"]
    if model == "ensemble" and "trial" in rows[0]:
        return [(run_dir / "trials" / f"{r['trial']:05d}", r["weight"]) for r in rows]
    members = sorted((run_dir / "ensemble" / "trials").iterdir())
    by_member = {json.loads((f / "member.json").read_text())["member"]: f for f in members
                 if (f / "member.json").exists() and (f / "predictions.npz").exists()}
    if model == "best_member":
        return [(by_member[next(r["member"] for r in rows if r["best"])], 1.0)]
    return [(by_member[r["member"]], r["weight"]) for r in rows]


def _pooled(components: list[tuple[Path, float]], mc: bool) -> dict[str, np.ndarray]:
    from hpwf.workflow import _predictions as predictions
    from hpwf.ensembles import _uq as uq
    from hpwf.ensembles._selection import combine

    out: dict[str, list[np.ndarray]] = {"y": [], "mean": [], "var": []}
    for split in ("cal", "test"):
        loaded = [predictions.load(f, split) for f, _ in components]
        if mc:
            mix = uq.mixture(loaded[0]["mc_mean"], loaded[0]["mc_var"])  # type: ignore[index]
            mean, var = mix.mean, mix.total
        else:
            c = combine(loaded, [w for _, w in components])  # type: ignore[arg-type]
            mean, var = c["mean"], c["var"]
        out["y"].append(loaded[0]["y"])  # type: ignore[index]
        out["mean"].append(mean)
        out["var"].append(var)
    return {"n_cal": np.array(len(out["y"][0])), **{k: np.concatenate(v) for k, v in out.items()}}


def _resplit_picp90(p: dict[str, np.ndarray]) -> float:
    from hpwf.ensembles._conformal import Conformal

    rng = np.random.default_rng(0)
    n_cal, total = int(p["n_cal"]), len(p["y"])
    coverage = []
    for _ in range(RESPLITS):
        order = rng.permutation(total)
        cal, test = order[:n_cal], order[n_cal:]
        cp = Conformal.fit(p["y"][cal], p["mean"][cal], p["var"][cal])
        lo, hi = cp.interval(p["mean"][test], p["var"][test], 0.90)
        coverage.append(np.mean((p["y"][test] >= lo) & (p["y"][test] <= hi)))
    return float(np.mean(coverage))


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
    boot_members = _members_of(run_dir, "ensemble", boot)
    greedy_members = [(run_dir / "trials" / f"{r['trial']:05d}", r["weight"]) for r in greedy["selection"]["members"]]
    rows = {"best_trial": greedy.get("best_trial"), "bootstrap": boot["ensemble"], "greedy": greedy["ensemble"],
            "best_member": boot.get("best_member"), "mc_dropout": greedy.get("mc_dropout")}
    calibrated = {"best_trial": greedy.get("best_trial+conformal"), "bootstrap": boot.get("ensemble+conformal"),
                  "greedy": greedy.get("ensemble+conformal"), "best_member": boot.get("best_member+conformal"),
                  "mc_dropout": greedy.get("mc_dropout+conformal")}
    figures: dict[str, Any] = {}
    for model, raw in rows.items():
        if raw is None:
            continue
        figures[model] = {k: rnd(raw[k]) for k in KEYS if k in raw}
        cal = calibrated.get(model)
        if cal is not None:
            figures[f"{model}+conformal"] = {k: rnd(cal[k]) for k in KEYS if k in cal}
    if name != "digits":
        best_trial = _best_trial_folder(run_dir)
        for model, comps, mc in (("greedy", greedy_members, False), ("bootstrap", boot_members, False),
                                 ("best_trial", [(best_trial, 1.0)], False), ("mc_dropout", [(best_trial, 1.0)], True)):
            figures[f"{model}+conformal"]["picp90_resplit"] = rnd(_resplit_picp90(_pooled(comps, mc)))
    out: dict[str, Any] = {
        "figures": figures, "greedy_weights": greedy["selection"]["weights"],
        "commands": [show(run_cmd, folder), show(ens_cmd, folder)], "wall_s": rnd(wall_run + wall_ens, 1),
    }
    if true_nll is not None:
        out["true_nll"] = rnd(true_nll)
    return out


def _best_trial_folder(run_dir: Path) -> Path:
    import hpwf
    from hpwf.ensembles._members import complete_trials

    study = hpwf.load_study(run_dir)
    best = min(complete_trials(study), key=lambda t: float(t.value))  # type: ignore[arg-type]
    return run_dir / "trials" / f"{best.number:05d}"


def _aims(results: dict[str, Any]) -> dict[str, Any]:
    aims: dict[str, Any] = {}
    for name, r in results.items():
        f = r["figures"]
        aims[f"{name}: greedy NLL <= bootstrap NLL"] = f["greedy"]["nll"] <= f["bootstrap"]["nll"]
        if name == "digits":
            best_single = min(f["best_member"]["ece"], f["best_trial"]["ece"])
            aims[f"{name}: ensemble ECE < best member's"] = min(f["greedy"]["ece"], f["bootstrap"]["ece"]) < best_single
            continue
        aims[f"{name}: conformal PICP@90 in [0.88, 0.92] (every model, resplit mean)"] = all(
            0.88 <= f[f"{m}+conformal"]["picp90_resplit"] <= 0.92 for m in ("greedy", "bootstrap", "best_trial", "mc_dropout"))
        aims[f"{name}: conformal PICP@90 in [0.88, 0.92] (every model, this test set)"] = all(
            0.88 <= f[f"{m}+conformal"]["picp_90"] <= 0.92 for m in ("greedy", "bootstrap", "best_trial", "mc_dropout"))
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
