"""Calibrated classifiers from saved probabilities: temperature scaling and conformal prediction sets.

- **Temperature scaling** (Guo et al. 2017) of the pooled ensemble: logits log p, one T > 0
  fitted on the calibration split by minimum NLL, p_T = softmax(log p / T).
- **APS** (Romano, Sesia & Candes 2020): a label's score is the total probability of the labels
  more likely than it plus U times its own (U uniform on [0, 1], drawn per point from a fixed
  seed: the randomised score, whose coverage is exactly 1 - alpha on average; U = 1 without
  randomisation, conservative, and with confident models far larger sets); the set at level
  1 - alpha holds the labels whose score is at most the calibration quantile (the
  ceil((n + 1)(1 - alpha))-th smallest true-label score). A set may be empty.
- **RAPS** (Angelopoulos et al. 2021): APS plus lambda * max(0, rank - k_reg), which penalises
  long tails of unlikely labels and gives smaller sets.
- **Class-conditional (Mondrian)**: one quantile per true class, so each class is covered at
  1 - alpha, not only on average (Vovk; crepes' class-conditional ``ConformalClassifier``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from hpwf.ensembles import _uq as uq


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(p, 1e-12))


def tempered(probs: ArrayLike, temperature: float) -> np.ndarray:
    """softmax(log p / T)."""
    z = _log(np.asarray(probs, dtype=float)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(y: ArrayLike, probs: ArrayLike) -> float:
    """T minimising the NLL of ``tempered(probs, T)`` on (y, probs) (bounded search over log T)."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(y).astype(int)
    p = np.asarray(probs, dtype=float)

    def nll(log_t: float) -> float:
        q = tempered(p, math.exp(log_t))
        return float(-np.mean(_log(q[np.arange(len(labels)), labels])))

    return math.exp(minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded", options={"xatol": 1e-8}).x)


def label_scores(probs: ArrayLike, kind: str = "aps", lam: float = 0.0, k_reg: int = 0,
                 u: np.ndarray | None = None) -> np.ndarray:
    """Every label's conformity score, shape (N, C): APS or RAPS; ``u`` (N,) randomises (None: U = 1)."""
    p = np.asarray(probs, dtype=float)
    order = np.argsort(-p, axis=1, kind="stable")
    sorted_p = np.take_along_axis(p, order, axis=1)
    cum = np.cumsum(sorted_p, axis=1)
    if u is not None:
        cum = cum - (1.0 - np.asarray(u, dtype=float))[:, None] * sorted_p
    if kind == "raps":
        cum = cum + lam * np.maximum(np.arange(1, p.shape[1] + 1) - k_reg, 0)[None, :]
    elif kind != "aps":
        raise ValueError(f"set score {kind!r} must be 'aps' or 'raps'")
    scores = np.empty_like(cum)
    np.put_along_axis(scores, order, cum, axis=1)
    return scores


def _quantile(scores: np.ndarray, level: float) -> float:
    r = math.ceil((len(scores) + 1) * level - 1e-9)
    return math.inf if r > len(scores) else float(np.sort(scores)[max(r, 1) - 1])


def conformal_sets(cal_y: ArrayLike, cal_probs: ArrayLike, probs: ArrayLike, level: float, kind: str = "aps",
                   lam: float = 0.0, k_reg: int = 0, by_class: bool = False, seed: int | None = None) -> np.ndarray:
    """Boolean prediction sets (N, C) at ``level``; ``by_class``: one threshold per class (Mondrian);
    ``seed``: randomised scores (U from that seed), None: not randomised.

    Example:
        >>> cal = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
        >>> conformal_sets([0, 0, 1], cal, [[0.6, 0.4]], 0.5).tolist()
        [[True, False]]
    """
    labels = np.asarray(cal_y).astype(int)
    rng = None if seed is None else np.random.default_rng(seed)
    n_test = len(np.asarray(probs))
    u_cal, u_test = (None, None) if rng is None else (rng.uniform(size=len(labels)), rng.uniform(size=n_test))
    cal_scores = label_scores(cal_probs, kind, lam, k_reg, u_cal)
    true = cal_scores[np.arange(len(labels)), labels]
    test_scores = label_scores(probs, kind, lam, k_reg, u_test)
    if not by_class:
        return test_scores <= _quantile(true, level)
    thresholds = np.array([_quantile(true[labels == c], level) if np.any(labels == c) else math.inf
                           for c in range(test_scores.shape[1])])
    return test_scores <= thresholds[None, :]


def set_metrics(y: ArrayLike, sets: np.ndarray, key: str = "90") -> tuple[dict[str, float], list[float]]:
    """Set coverage, mean size, worst class coverage; and the coverage of each class."""
    labels = np.asarray(y).astype(int)
    hit = sets[np.arange(len(labels)), labels]
    per_class = [float(hit[labels == c].mean()) for c in range(sets.shape[1]) if np.any(labels == c)]
    return ({f"set_coverage_{key}": float(hit.mean()), f"set_size_{key}": float(sets.sum(1).mean()),
             f"worst_class_coverage_{key}": min(per_class)}, per_class)


def calibrated_classifier(cal_y: ArrayLike, cal_probs: ArrayLike, y: ArrayLike, probs: ArrayLike,
                          method: str, level: float = 0.9, lam: float = 0.01, k_reg: int = 1,
                          seed: int | None = 0) -> tuple[dict[str, float], dict[str, list[float]], np.ndarray]:
    """One calibrated entry of ``uq_metrics.json`` for a classifier, its per-class lists, its probabilities.

    ``method``: "temperature" (probabilities rescaled; scores after), or "aps"/"raps" (sets on
    the temperature-scaled probabilities, marginal and class-conditional; randomised from ``seed``).
    """
    cal_p, p = np.asarray(cal_probs, dtype=float), np.asarray(probs, dtype=float)
    t = fit_temperature(cal_y, cal_p)
    cal_t, test_t = tempered(cal_p, t), tempered(p, t)
    out: dict[str, Any] = dict(uq.classification_metrics(y, test_t))
    out.pop("mutual_information", None)
    out["temperature"] = t
    out["ece_before"] = uq.expected_calibration_error(y, p)
    lists: dict[str, list[float]] = {}
    if method in ("aps", "raps"):
        key = f"{round(level * 100):d}"
        marginal, per = set_metrics(y, conformal_sets(cal_y, cal_t, test_t, level, method, lam, k_reg, False, seed), key)
        out.update(marginal)
        lists[f"class_coverage_{key}"] = per
        cond, per_cc = set_metrics(y, conformal_sets(cal_y, cal_t, test_t, level, method, lam, k_reg, True, seed), key)
        out.update({f"classwise_{k}": v for k, v in cond.items()})
        lists[f"classwise_class_coverage_{key}"] = per_cc
    elif method != "temperature":
        raise ValueError(f"classifier calibration {method!r} must be 'temperature', 'aps' or 'raps'")
    return out, lists, test_t
