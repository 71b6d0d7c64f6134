"""Reference libraries on the predictions the pipeline's run scored (bench uq_pipeline, RESULTS §7).

For one run directory and one ensemble (the greedy selection of trials, or the bootstrap
members), this loads the very prediction files hpwf's aggregation read, combines them as it
does (weighted mean, total variance), and calibrates them again with a library:

- regression: crepes' ``ConformalRegressor`` on the calibration residuals y - mu and sigmas
  sqrt(var): normalised split conformal (hpwf's "conformal"), and with hpwf's sigma bins as
  crepes' Mondrian bins (hpwf's "mondrian", beta 0); PICP and width at 68/90/95 %, and the
  largest gap between crepes' interval ends and hpwf's on the same arrays;
- classification: MAPIE's split-conformal APS (`bench.uq_methods._mapie_aps`) on the
  temperature-scaled probabilities hpwf's APS/RAPS used, with its defaults (the last label always
  included) and with its randomised last label (hpwf's APS is randomised): set coverage and mean
  size at 90 %.

Jackknife+-after-bootstrap has no reference here: MAPIE's ``JackknifeAfterBootstrapRegressor``
fits its own bootstrap models and takes no saved out-of-bag predictions, and crepes has none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

LEVELS = {"68": 0.6827, "90": 0.90, "95": 0.95}


def _components(run_dir: Path, model: str, metrics: dict[str, Any]) -> list[tuple[Path, float]]:
    """The folders and weights hpwf's aggregation combined for ``model`` ("greedy" or "bootstrap")."""
    from hpwf.ensembles._members import current_members
    from hpwf.rundir import trial_folder

    if model == "greedy":
        weights = metrics["selection"]["weights"]
        return [(trial_folder(run_dir, int(n)), float(w)) for n, w in weights.items()]
    members = current_members(run_dir)
    return [(folder, 1.0 / len(members)) for _, folder in members.values()]


def _combined(comps: list[tuple[Path, float]], split: str) -> dict[str, np.ndarray]:
    from hpwf.ensembles import uq
    from hpwf.ensembles._selection import combine
    from hpwf.workflow import predictions

    loaded = [predictions.load(folder, split) for folder, _ in comps]
    assert all(p is not None for p in loaded), f"{split} predictions missing in {comps}"
    weights = [w for _, w in comps]
    if "probs" in loaded[0]:  # type: ignore[operator]
        w = uq.normalised_weights(weights, len(loaded))
        probs = np.stack([p["probs"] for p in loaded])  # type: ignore[index]
        return {"y": loaded[0]["y"], "probs": np.tensordot(w, probs, axes=1)}  # type: ignore[index]
    out = dict(combine(loaded, weights))  # type: ignore[arg-type]
    out["y"] = loaded[0]["y"]  # type: ignore[index]
    return out


def _regression(cal: dict[str, np.ndarray], test: dict[str, np.ndarray], hpwf_bins: int) -> dict[str, float]:
    from crepes import ConformalRegressor

    from hpwf.ensembles._conformal import Conformal
    from hpwf.ensembles._intervals import mondrian, sigma_bins

    yc, yt = cal["y"], test["y"]
    sc, st = np.sqrt(np.maximum(cal["var"], 1e-12)), np.sqrt(np.maximum(test["var"], 1e-12))
    cb, tb = sigma_bins(sc, st, hpwf_bins)
    split = ConformalRegressor().fit(yc - cal["mean"], sigmas=sc)
    binned = ConformalRegressor().fit(yc - cal["mean"], sigmas=sc, bins=cb)
    cp = Conformal.fit(yc, cal["mean"], cal["var"])
    out: dict[str, float] = {}
    for method, ref, own in (
            ("conformal", lambda lv: split.predict_int(test["mean"], sigmas=st, confidence=lv),
             lambda lv: cp.interval(test["mean"], test["var"], lv)),
            ("mondrian", lambda lv: binned.predict_int(test["mean"], sigmas=st, bins=tb, confidence=lv),
             lambda lv: mondrian(yc, cal["mean"], sc, test["mean"], st, lv, 0.0, cb, tb))):
        gap = 0.0
        for key, lv in LEVELS.items():
            lo, hi = ref(lv)[:, 0], ref(lv)[:, 1]
            out[f"{method}.crepes_picp_{key}"] = float(np.mean((lo <= yt) & (yt <= hi)))
            out[f"{method}.crepes_width_{key}"] = float(np.mean(hi - lo))
            h_lo, h_hi = own(lv)
            gap = max(gap, float(np.abs(h_lo - lo).max()), float(np.abs(h_hi - hi).max()))
        out[f"{method}.crepes_max_end_gap"] = gap
    return out


def _classification(cal: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> dict[str, float]:
    from bench.uq_methods import _mapie_aps
    from hpwf.ensembles._classify import fit_temperature, tempered

    t = fit_temperature(cal["y"], cal["probs"])
    tc, tt = tempered(cal["probs"], t), tempered(test["probs"], t)
    out: dict[str, float] = {}
    for name, randomized in (("mapie_aps", False), ("mapie_aps_randomized", True)):
        coverage, size = _mapie_aps(cal["y"], tc, tt, test["y"], randomized)
        out.update({f"{name}.set_coverage_90": coverage, f"{name}.set_size_90": size})
    return out


def reference(run_dir: Path, model: str, metrics: dict[str, Any]) -> dict[str, float]:
    """The library's figures for ``model`` on the predictions behind ``metrics`` (its uq_metrics.json):
    ``"<model>+<method>.crepes_*"`` or ``"<model>+mapie_aps.*"``."""
    comps = _components(run_dir, model, metrics)
    cal, test = _combined(comps, "cal"), _combined(comps, "test")
    if "probs" in test:
        figures = _classification(cal, test)
    else:
        bins = int(metrics.get("ensemble+mondrian", {}).get("bins", 1))
        figures = _regression(cal, test, bins)
    return {f"{model}+{k}": v for k, v in figures.items()}


def rescore(run_dir: Path) -> dict[str, float]:
    """Both ensembles of one kept pipeline run directory (greedy's metrics kept beside the bootstrap's)."""
    greedy = json.loads((run_dir / "uq_metrics_greedy.json").read_text())
    boot = json.loads((run_dir / "uq_metrics.json").read_text())
    return {**reference(run_dir, "greedy", greedy), **reference(run_dir, "bootstrap", boot)}


def main(rows_file: str, folder: str) -> None:
    """Add the reference figures to a rows file (UQ_PIPELINE_ROWS) from the run directories a
    campaign kept (HPWF_BENCH_KEEP=1): rows that already have them are left as they are."""
    lines = [json.loads(line) for line in Path(rows_file).read_text().splitlines() if line.strip()]
    for row in lines:
        if not any(".crepes_" in k or "+mapie_aps" in k for k in row["figures"]):
            row["figures"].update(rescore(Path(folder) / f"{row['set']}-{row['seed']}"))
    Path(rows_file).write_text("".join(json.dumps(row) + "\n" for row in lines))


if __name__ == "__main__":
    import sys

    main(sys.argv[1], sys.argv[2])
