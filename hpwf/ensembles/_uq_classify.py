"""Classification members (probability vectors): predictive entropy, mutual information, ECE,
reliability bins and the metrics of a (weighted) mixture of members; and the members' weights.
Re-exported by `hpwf.ensembles.uq` with the regression metrics."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

_PROB_FLOOR = 1e-12


def normalised_weights(weights: ArrayLike | None, k: int) -> np.ndarray:
    """K weights summing to one (uniform when None); raises ValueError on negative or zero sums."""
    if weights is None:
        return np.full(k, 1.0 / k)
    w = np.asarray(weights, dtype=float).ravel()
    if w.shape != (k,) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(f"weights must be {k} non-negative numbers with a positive sum, not {w.tolist()}")
    return w / w.sum()


def predictive_entropy(probs: ArrayLike) -> np.ndarray:
    """Per-sample entropy (nats) of probs, shape (N, C) -> (N,)."""
    p = np.asarray(probs, dtype=float)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def mutual_information(member_probs: ArrayLike, weights: ArrayLike | None = None) -> np.ndarray:
    """Per-sample epistemic uncertainty (BALD): H(sum_k w_k p_k) - sum_k w_k H(p_k), clipped at 0.

    Example:
        >>> round(float(mutual_information([[[1.0, 0.0]], [[0.0, 1.0]]])[0]), 6)  # log 2
        0.693147
    """
    p = np.asarray(member_probs, dtype=float)
    w = normalised_weights(weights, p.shape[0])
    mi = predictive_entropy(np.tensordot(w, p, axes=1)) - w @ predictive_entropy(p)
    return np.maximum(mi, 0.0)


def expected_calibration_error(y: ArrayLike, probs: ArrayLike, bins: int = 15) -> float:
    """Top-label ECE with `bins` equal-width confidence bins over [0, 1] (right-closed bins)."""
    p = np.asarray(probs, dtype=float)
    y = np.asarray(y).astype(int)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    gap = np.abs(np.bincount(idx, correct, bins) - np.bincount(idx, conf, bins))
    return float(gap.sum() / max(count.sum(), 1))


def reliability_bins(y: ArrayLike, probs: ArrayLike, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-label reliability: per non-empty confidence bin, (mean confidence, accuracy, count).

    Example:
        >>> conf, acc, n = reliability_bins([0, 1], [[0.9, 0.1], [0.6, 0.4]], bins=4)
        >>> conf.tolist(), acc.tolist(), n.tolist()
        ([0.6, 0.9], [0.0, 1.0], [1, 1])
    """
    p = np.asarray(probs, dtype=float)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == np.asarray(y).astype(int)).astype(float)
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    used = count > 0
    return (np.bincount(idx, conf, bins)[used] / count[used], np.bincount(idx, correct, bins)[used] / count[used],
            count[used])


def classification_metrics(y: ArrayLike, member_probs: ArrayLike, weights: ArrayLike | None = None) -> dict[str, float]:
    """Metrics of the (weighted) ensemble-mean classifier; member_probs (K, N, C) or (N, C) (K=1).

    Keys: accuracy, nll, brier, ece, entropy, mutual_information, n.

    Example:
        >>> m = classification_metrics([0, 1], [[1.0, 0.0], [0.0, 1.0]])
        >>> m["accuracy"], m["brier"], m["mutual_information"]
        (1.0, 0.0, 0.0)
    """
    mp = np.asarray(member_probs, dtype=float)
    if mp.ndim == 2:
        mp = mp[None]
    y = np.asarray(y).astype(int)
    w = normalised_weights(weights, mp.shape[0])
    p = np.tensordot(w, mp, axes=1)
    n = p.shape[0]
    onehot = np.zeros_like(p)
    onehot[np.arange(n), y] = 1.0
    return {
        "accuracy": float(np.mean(p.argmax(axis=1) == y)),
        "nll": float(np.mean(-np.log(np.maximum(p[np.arange(n), y], _PROB_FLOOR)))),
        "brier": float(np.mean(np.sum((p - onehot) ** 2, axis=1))),
        "ece": expected_calibration_error(y, p),
        "entropy": float(np.mean(predictive_entropy(p))),
        "mutual_information": float(np.mean(mutual_information(mp, w))),
        "n": float(n),
    }
