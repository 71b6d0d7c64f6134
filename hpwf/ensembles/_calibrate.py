"""Calibration methods of ``Ensemble(calibrate=...)``: options, checks of the splits, and the scored entries.

``calibrate`` names one method or several (a list); each adds an entry ``"<model>+<method>"``
to ``uq_metrics.json`` beside the raw model:

- regression: "conformal" (split conformal, normalised), "mondrian" (normalised with sigma + beta,
  one quantile per bin of predicted sigma, or per saved ``group``), "cqr" (from saved quantile
  predictions ``lower``/``upper`` at ``level``), "jackknife+" (from the members' out-of-bag
  predictions, split "oob" with ``index``: jackknife+-after-bootstrap, or CV+ when every row is
  out of exactly one member's fold; the entry is named "+jackknife+ab" or "+cv+");
- classification: "temperature" (temperature scaling on the calibration split), "aps", "raps"
  (conformal sets at ``level`` on the temperature-scaled probabilities, marginal and
  class-conditional).

``calibrate_options``: level (0.9: sets, CQR and the conditional figures), beta (0.0: the
sigma offset of "mondrian"), bins (sigma bins of "mondrian"; default one per 50 calibration
points, at most 10), raps_lambda (0.01), raps_k (1), jackknife ("normalised" or "absolute").
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import numpy as np

from hpwf.ensembles import _scores as scores
from hpwf.ensembles._classify import calibrated_classifier
from hpwf.ensembles._conformal import Conformal, LEVELS, calibrated_metrics
from hpwf.ensembles._intervals import OutOfBag, cqr, default_bins, jackknife_plus, mondrian, sigma_bins
from hpwf.errors import ConfigError
from hpwf.workflow import CALIBRATE_OPTIONS as OPTIONS, CLASSIFICATION, REGRESSION, SELECT_OPTIONS, methods, options

# --- the splits ---------------------------------------------------------------------------
def _row_hashes(arrays: Mapping[str, np.ndarray]) -> set[bytes]:
    """One hash per row: of (x, y) when x was saved, else of (y, the prediction)."""
    keys = ("x", "y") if "x" in arrays else ("y", "probs" if "probs" in arrays else "mean")
    parts = [np.asarray(arrays[k], dtype=float).reshape(len(arrays["y"]), -1) for k in keys]
    rows = np.ascontiguousarray(np.hstack(parts))
    return {hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in rows}


def check_disjoint(folder: Any, loaded: Mapping[str, Mapping[str, np.ndarray] | None]) -> str | None:
    """ConfigError when the calibration rows are the validation or test rows; a warning when some are."""
    cal = loaded.get("cal")
    if cal is None:
        return None
    mine = _row_hashes(cal)
    notes = []
    for other in ("val", "test"):
        arrays = loaded.get(other)
        if arrays is None or ("x" in arrays) != ("x" in cal):
            continue
        shared = len(mine & _row_hashes(arrays))
        if shared and shared >= 0.9 * len(mine):
            raise ConfigError(f"{folder}: the calibration rows are the {other} rows ({shared} of {len(mine)} shared): "
                              f"conformal coverage needs a calibration split disjoint from {other}")
        if shared:
            notes.append(f"{folder}: {shared} of {len(mine)} calibration rows are also {other} rows")
    return "; ".join(notes) or None


def shared_cal_targets(folders: Sequence[Any], cal: Sequence[Mapping[str, np.ndarray]]) -> None:
    """ConfigError (one line) when members saved different calibration targets."""
    for folder, c in zip(folders[1:], cal[1:]):
        if not np.array_equal(c["y"], cal[0]["y"]):
            raise ConfigError(f"{folder}: its calibration targets y differ from {folders[0]}'s: split conformal needs "
                              "one shared calibration set (members that hold out their own rows: save them as "
                              "'oob' with index= and use calibrate='jackknife+')")


# --- regression ---------------------------------------------------------------------------
def _weighted(arrays: Sequence[Mapping[str, np.ndarray]], key: str, w: np.ndarray) -> np.ndarray:
    return np.tensordot(w, np.stack([a[key] for a in arrays]), axes=1)


def _intervals(y: np.ndarray, bounds: Mapping[str, tuple[np.ndarray, np.ndarray]], sigma: np.ndarray,
               x: np.ndarray | None, groups: np.ndarray | None,
               level: float) -> tuple[dict[str, float], dict[str, list[float]]]:
    """picp/width/winkler at each level in ``bounds``, and the conditional figures at ``level``."""
    flat: dict[str, float] = {}
    lists: dict[str, list[float]] = {}
    for key, (lo, hi) in bounds.items():
        lv = LEVELS.get(key, level)
        f, ls = scores.interval_metrics(y, lo, hi, lv, sigma, x=x if lv == level else None,
                                        groups=groups if lv == level else None, suffix=key)
        if lv != level:
            f = {k: v for k, v in f.items() if k.split("_")[0] in ("picp", "width", "winkler")}
            ls = {}
        flat.update(f)
        lists.update(ls)
    return flat, lists


def raw_extras(y: np.ndarray, test: Sequence[Mapping[str, np.ndarray]], w: np.ndarray, mean: np.ndarray,
               var: np.ndarray, opts: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """For a raw model: the exact mixture's scores, and the Gaussian intervals' Winkler and conditional figures."""
    means = np.stack([t["mean"] for t in test])
    variances = np.stack([t["var"] if "var" in t else np.zeros_like(t["mean"]) for t in test])
    flat = scores.mixture_metrics(y, means, variances, w)
    sigma = np.sqrt(np.maximum(var, 0.0))
    level = opts["level"]
    z = float(_ndtri((1 + level) / 2))
    key = f"{round(level * 100):d}"
    f, lists = _intervals(y, {key: (mean - z * sigma, mean + z * sigma)}, sigma, test[0].get("x"),
                          test[0].get("group"), level)
    flat.update({k: v for k, v in f.items() if not k.startswith(("picp", "width"))})
    return flat, lists


def regression_entries(name: str, y: np.ndarray, test: Sequence[Mapping[str, np.ndarray]],
                       cal: Sequence[Mapping[str, np.ndarray]] | None, oob: Sequence[Mapping[str, np.ndarray]] | None,
                       w: np.ndarray, mean: np.ndarray, var: np.ndarray, cal_mean: np.ndarray | None,
                       cal_var: np.ndarray | None, chosen: Sequence[str], opts: Mapping[str, Any]
                       ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[float]]]]:
    """The calibrated entries of one regression model: ``{"<name>+<method>": figures}`` and their lists."""
    out: dict[str, dict[str, float]] = {}
    lists: dict[str, dict[str, list[float]]] = {}
    level, sigma = opts["level"], np.sqrt(np.maximum(var, 1e-12))
    x, groups = test[0].get("x"), test[0].get("group")
    every = {**{k: lv for k, lv in LEVELS.items()}, f"{round(level * 100):d}": level}
    if cal is not None and cal_mean is not None and cal_var is not None:
        cal_y, cal_sigma = cal[0]["y"], np.sqrt(np.maximum(cal_var, 1e-12))
        if "conformal" in chosen:
            cp = Conformal.fit(cal_y, cal_mean, cal_var)
            entry = calibrated_metrics(cp, y, mean, var)
            bounds = {k: cp.interval(mean, var, lv) for k, lv in every.items()}
            f, lists[f"{name}+conformal"] = _intervals(y, bounds, sigma, x, groups, level)
            out[f"{name}+conformal"] = {**entry, **f}
        if "mondrian" in chosen:
            if "group" in cal[0] and groups is not None:
                cb, tb = cal[0]["group"], groups
            else:
                bins = int(opts["bins"] or default_bins(len(cal_y)))
                cb, tb = sigma_bins(cal_sigma, sigma, bins)
            bounds = {k: mondrian(cal_y, cal_mean, cal_sigma, mean, sigma, lv, opts["beta"], cb, tb)
                      for k, lv in every.items()}
            f, lists[f"{name}+mondrian"] = _intervals(y, bounds, sigma, x, groups, level)
            out[f"{name}+mondrian"] = {**f, "bins": float(len(np.unique(cb))), "beta": float(opts["beta"]),
                                       "n_cal": float(len(cal_y))}
        if "cqr" in chosen and all("lower" in a and "upper" in a for a in (*cal, *test)):
            key = f"{round(level * 100):d}"
            lo, hi = cqr(cal_y, _weighted(cal, "lower", w), _weighted(cal, "upper", w),
                         _weighted(test, "lower", w), _weighted(test, "upper", w), level)
            f, lists[f"{name}+cqr"] = _intervals(y, {key: (lo, hi)}, sigma, x, groups, level)
            out[f"{name}+cqr"] = {**f, "n_cal": float(len(cal_y))}
    if "jackknife+" in chosen and oob is not None:
        bags = [OutOfBag(o["index"].astype(int), o["y"], o["mean"], o.get("var")) for o in oob]
        counts = np.bincount(np.concatenate([b.index for b in bags]))
        label = f"{name}+cv+" if counts.max() == 1 else f"{name}+jackknife+ab"
        means = np.stack([t["mean"] for t in test])
        variances = np.stack([t["var"] for t in test]) if all("var" in t for t in test) else None
        normalised = opts["jackknife"] == "normalised" and variances is not None
        bounds = {k: jackknife_plus(bags, means, lv, variances, w, normalised) for k, lv in every.items()}
        f, lists[label] = _intervals(y, bounds, sigma, x, groups, level)
        out[label] = {**f, "n_rows": float(np.count_nonzero(counts)), "normalised": float(normalised)}
    return out, lists


def classification_entries(name: str, y: np.ndarray, probs: np.ndarray, cal_y: np.ndarray, cal_probs: np.ndarray,
                           chosen: Sequence[str], opts: Mapping[str, Any]
                           ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[float]]]]:
    """The calibrated entries of one classifier (temperature, aps, raps) and their per-class lists."""
    out: dict[str, dict[str, float]] = {}
    lists: dict[str, dict[str, list[float]]] = {}
    for method in (m for m in CLASSIFICATION if m in chosen):
        entry, per_class, _ = calibrated_classifier(cal_y, cal_probs, y, probs, method, opts["level"],
                                                    opts["raps_lambda"], int(opts["raps_k"]), seed=_draw_seed(cal_probs, probs))
        out[f"{name}+{method}"], lists[f"{name}+{method}"] = entry, per_class
    return out, lists


def _draw_seed(cal_probs: np.ndarray, probs: np.ndarray) -> int:
    """The APS/RAPS randomisation's seed, from the predictions: reproducible for one run, different
    between runs (one fixed seed for every run gave every run the same draw of U and its luck:
    0.93 coverage at 90 % for confident models over 10 seeds of bench uq_pipeline)."""
    digest = hashlib.blake2b(np.ascontiguousarray(cal_probs, dtype=float).tobytes(), digest_size=8)
    digest.update(np.ascontiguousarray(probs, dtype=float).tobytes())
    return int.from_bytes(digest.digest(), "little")


def _ndtri(p: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(p))
