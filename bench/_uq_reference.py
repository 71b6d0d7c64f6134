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

- jackknife+-after-bootstrap (the bootstrap members): MAPIE's ``JackknifeAfterBootstrapRegressor``
  fits its own bootstrap models, so it is handed hpwf's instead: ``SavedBags``, a ``Subsample``
  whose splits are the members' saved in-bag/out-of-bag rows, and ``Replay``, an estimator that,
  fitted on one member's in-bag rows, predicts that member's saved predictions (X is the row
  number: training rows, then test rows). MAPIE then aggregates, scores and ranks on its own.
  Its scores are absolute residuals |y - mu_{-i}| ("absolute"), so it is compared with hpwf's
  ``jackknife_plus(normalised=False)`` on the same arrays; the pipeline's entry is the normalised
  one (residuals / sigma_{-i}, sigma from the leave-out mixture), which MAPIE has no score for
  (its ``StdConformityScore`` averages the members' sigmas instead).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from mapie.subsample import Subsample
from sklearn.base import BaseEstimator, RegressorMixin

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


class SavedBags(Subsample):  # type: ignore[misc]
    """MAPIE's bootstrap splits replaced by saved ones: for member m, (its in-bag rows, ``oob[m]``)
    among ``n`` training rows (in-bag as a set: the replayed member does not train)."""

    def __init__(self, oob: list[np.ndarray] | None = None, n: int = 0) -> None:
        super().__init__(n_resamplings=len(oob or []))
        self.oob, self.n = oob, n

    def split(self, X: Any, *args: Any, **kwargs: Any) -> Any:
        for out in self.oob or []:
            yield np.setdiff1d(np.arange(self.n), out), np.asarray(out)


class Replay(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """A regressor that trains nothing. ``tables[m]`` holds member m's saved predictions by row
    number (the ``n`` training rows, NaN where m trained, then the test rows); X's only column is
    the row number. Fitted on member m's in-bag rows it predicts ``tables[m]``; fitted on every
    training row (MAPIE's single estimator, unused by its intervals) the members' mean."""

    def __init__(self, tables: np.ndarray | None = None, oob: list[np.ndarray] | None = None, n: int = 0) -> None:
        self.tables, self.oob, self.n = tables, oob, n

    def fit(self, x: np.ndarray, y: np.ndarray) -> Replay:
        assert self.oob is not None
        rows = np.unique(np.asarray(x)[:, 0].astype(int))
        found = [m for m, out in enumerate(self.oob) if np.array_equal(np.setdiff1d(np.arange(self.n), out), rows)]
        if not found and len(rows) != self.n:
            raise ValueError("fitted on rows that are no member's in-bag rows")
        self.member_ = found[0] if found else -1
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        assert self.tables is not None
        ids = np.asarray(x)[:, 0].astype(int)
        return self.tables[self.member_][ids] if self.member_ >= 0 else np.nanmean(self.tables[:, ids], axis=0)


def mapie_jackknife_ab(oob: list[np.ndarray], oob_y: list[np.ndarray], oob_mean: list[np.ndarray],
                       test_mean: np.ndarray, levels: list[float]) -> list[tuple[np.ndarray, np.ndarray]]:
    """MAPIE's jackknife+-after-bootstrap ("plus", mean aggregation, absolute scores) on saved
    predictions: member m's out-of-bag rows ``oob[m]`` with targets and means, its test means
    ``test_mean[m]``; (lower, upper) per level."""
    import warnings

    from mapie.regression import JackknifeAfterBootstrapRegressor

    n, n_test = int(max(o.max() for o in oob)) + 1, test_mean.shape[1]
    tables = np.full((len(oob), n + n_test), np.nan)
    y = np.zeros(n)  # rows no member left out get no score (their aggregate is NaN); their y is unused
    for m, (rows, ys, mu) in enumerate(zip(oob, oob_y, oob_mean)):
        tables[m, rows], y[rows] = mu, ys
        tables[m, n:] = test_mean[m]
    bags = [np.asarray(o, dtype=int) for o in oob]
    mapie = JackknifeAfterBootstrapRegressor(Replay(tables, bags, n), confidence_level=levels,
                                             resampling=SavedBags(bags, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "some training rows are in every bag": MAPIE then leaves them out, as hpwf does
        mapie.fit_conformalize(np.arange(n)[:, None], y)
        _, bounds = mapie.predict_interval(np.arange(n, n + n_test)[:, None], allow_infinite_bounds=True)
    return [(bounds[:, 0, j], bounds[:, 1, j]) for j in range(len(levels))]


def _jackknife(comps: list[tuple[Path, float]], test: dict[str, np.ndarray], entry: dict[str, float]
               ) -> dict[str, float]:
    """MAPIE's jackknife+ab on the members' saved out-of-bag and test predictions beside hpwf's
    ``jackknife_plus`` (absolute scores) on the same arrays: PICP and width of both, and the
    largest gap between their interval ends. That these are the arrays the pipeline scored:
    hpwf's normalised jackknife+ab recomputed from them against ``entry`` (its uq_metrics.json
    figures), the largest difference."""
    from hpwf.ensembles._intervals import OutOfBag, jackknife_plus
    from hpwf.workflow import predictions

    oob = [predictions.load(folder, "oob") for folder, _ in comps]
    tests = [predictions.load(folder, "test") for folder, _ in comps]
    assert all(o is not None for o in oob) and all(t is not None for t in tests), f"oob/test missing in {comps}"
    bags = [OutOfBag(o["index"].astype(int), o["y"], o["mean"], o["var"]) for o in oob]  # type: ignore[index]
    means, variances = (np.stack([t[k] for t in tests]) for k in ("mean", "var"))  # type: ignore[index]
    yt, out, gap, rescored = test["y"], {}, 0.0, 0.0
    ref = mapie_jackknife_ab([b.index for b in bags], [b.y for b in bags], [b.mean for b in bags], means,
                             list(LEVELS.values()))
    for (key, lv), (lo, hi) in zip(LEVELS.items(), ref):
        h_lo, h_hi = jackknife_plus(bags, means, lv, normalised=False)
        for who, (a, b) in (("mapie", (lo, hi)), ("hpwf", (h_lo, h_hi))):
            out[f"absolute.{who}_picp_{key}"] = float(np.mean((a <= yt) & (yt <= b)))
            out[f"absolute.{who}_width_{key}"] = float(np.mean(b - a))
        gap = max(gap, float(np.abs(h_lo - lo).max()), float(np.abs(h_hi - hi).max()))
        n_lo, n_hi = jackknife_plus(bags, means, lv, variances, normalised=True)
        rescored = max(rescored, abs(float(np.mean((n_lo <= yt) & (yt <= n_hi))) - entry[f"picp_{key}"]))
    out["absolute.mapie_max_end_gap"] = gap
    out["normalised.rescored_max_diff"] = rescored
    return {f"jackknife+ab_{k}": v for k, v in out.items()}


def _classification(cal: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> dict[str, float]:
    from bench.uq_methods import _mapie_aps
    from hpwf.ensembles._classify import fit_temperature, tempered

    t = fit_temperature(cal["y"], cal["probs"])
    tc, tt = tempered(cal["probs"], t), tempered(test["probs"], t)
    out: dict[str, float] = {}
    seed = int.from_bytes(hashlib.blake2b(np.ascontiguousarray(cal["probs"]).tobytes(), digest_size=4).digest(), "little")
    for name, randomized in (("mapie_aps", False), ("mapie_aps_randomized", True)):  # one draw per run, not one for all
        coverage, size = _mapie_aps(cal["y"], tc, tt, test["y"], randomized, seed)
        out.update({f"{name}.set_coverage_90": coverage, f"{name}.set_size_90": size})
    return out


def reference(run_dir: Path, model: str, metrics: dict[str, Any]) -> dict[str, float]:
    """The library's figures for ``model`` on the predictions behind ``metrics`` (its uq_metrics.json):
    ``"<model>+<method>.crepes_*"``, ``"<model>+mapie_aps.*"`` or, for the bootstrap members,
    ``"bootstrap+jackknife+ab_absolute.{mapie,hpwf}_*"``."""
    comps = _components(run_dir, model, metrics)
    cal, test = _combined(comps, "cal"), _combined(comps, "test")
    if "probs" in test:
        figures = _classification(cal, test)
    else:
        bins = int(metrics.get("ensemble+mondrian", {}).get("bins", 1))
        figures = _regression(cal, test, bins)
        if model == "bootstrap" and "ensemble+jackknife+ab" in metrics:
            figures.update(_jackknife(comps, test, metrics["ensemble+jackknife+ab"]))
    return {f"{model}+{k}": v for k, v in figures.items()}


def rescore(run_dir: Path) -> dict[str, float]:
    """Both ensembles of one kept pipeline run directory (greedy's metrics kept beside the bootstrap's)."""
    greedy = json.loads((run_dir / "uq_metrics_greedy.json").read_text())
    boot = json.loads((run_dir / "uq_metrics.json").read_text())
    return {**reference(run_dir, "greedy", greedy), **reference(run_dir, "bootstrap", boot)}


def main(rows_file: str, *folders: str) -> None:
    """Add the reference figures to a rows file (UQ_PIPELINE_ROWS) from the run directories a
    campaign kept (HPWF_BENCH_KEEP=1) in one or more folders: figures a row already has are left
    as they are; a row whose run directory is in none of the folders is an error."""
    lines = [json.loads(line) for line in Path(rows_file).read_text().splitlines() if line.strip()]
    for row in lines:
        name = f"{row['set']}-{row['seed']}"
        (run_dir,) = [Path(f) / name for f in folders if (Path(f) / name).is_dir()]
        figures = row["figures"]
        figures.update({k: v for k, v in rescore(run_dir).items() if k not in figures})
    Path(rows_file).write_text("".join(json.dumps(row) + "\n" for row in lines))


if __name__ == "__main__":
    import sys

    main(sys.argv[1], *sys.argv[2:])
