"""Saved predictions of a trial or an ensemble member: one ``.npz`` file per data split.

A split is the set the predictions were made on:

- ``"val"``: validation predictions, used to select trials (greedy ensembles); never scored;
- ``"cal"``: a calibration set for conformal intervals (``Ensemble(calibrate="conformal")``);
- ``"test"``: the held-out set that ``uq_metrics.json`` scores;
- ``"oob"``: a member's predictions on the training rows it did not train on (out of bag, or
  its held-out fold), with ``index`` (their row numbers), for jackknife+ and CV+.

The arrays: ``y`` (targets) with ``mean`` (and ``var``) for regression, or ``probs`` (N, C)
for classification; optionally ``x`` (inputs: 1-D for the report's band and coverage by input
bin), ``mc_mean`` / ``mc_var`` (T, N) for MC-dropout passes, ``lower`` / ``upper`` (quantile
predictions, for CQR) and ``group`` (a label per row, for Mondrian conformal by group).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

FILES = {"test": "predictions.npz", "val": "predictions_val.npz", "cal": "predictions_cal.npz",
         "oob": "predictions_oob.npz"}
WEIGHTS_FILE = "weights.pt"


def path(folder: Path, split: str) -> Path:
    """The file that holds ``split``'s predictions in a trial or member folder."""
    if split not in FILES:
        raise ValueError(f"split must be one of {', '.join(FILES)}, not {split!r}")
    return folder / FILES[split]


def check(arrays: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays as numpy arrays, or ValueError naming what is missing or of the wrong length.

    Example:
        >>> sorted(check({"y": [1.0, 2.0], "mean": [1.0, 2.0]}))
        ['mean', 'y']
    """
    import numpy as np

    named = {k: np.asarray(v) for k, v in arrays.items()}
    if "y" not in named:
        raise ValueError("save_predictions needs y= (the targets)")
    if ("mean" in named) == ("probs" in named):
        raise ValueError("save_predictions needs mean= (regression) or probs= (classification), one of them")
    n = len(named["y"])
    for key in ("mean", "var", "probs", "x", "lower", "upper", "group", "index"):
        if key in named and len(named[key]) != n:
            raise ValueError(f"{key} has {len(named[key])} rows, y has {n}")
    if "var" in named and np.any(named["var"] < 0):
        raise ValueError("var must be non-negative (a variance, not a log-variance)")
    return named


def save(folder: Path, rank: int, split: str, arrays: dict[str, Any]) -> Path:
    """Check ``arrays`` on every rank; rank 0 writes them to ``split``'s file."""
    import numpy as np

    target = path(folder, split)
    named = check(arrays)
    if rank == 0:
        from hpwf.rundir import atomic_writer

        with atomic_writer(target) as f:  # (through the run directory's descriptor)
            np.savez(f, **named)  # type: ignore[arg-type]
    return target


def load(folder: Path, split: str) -> dict[str, np.ndarray] | None:
    """``split``'s saved arrays, or None when that folder saved none."""
    import numpy as np

    target = path(folder, split)
    from hpwf.rundir import is_file, read_file

    if not is_file(target):
        return None
    with np.load(io.BytesIO(read_file(target))) as data:
        return {k: data[k] for k in data.files}


def save_weights(folder: Path, rank: int, state: Any) -> Path:
    """Rank 0 saves ``state`` (e.g. ``model.state_dict()``) with ``torch.save``."""
    import torch

    target = folder / WEIGHTS_FILE
    if rank == 0:
        from hpwf.rundir import atomic_writer

        with atomic_writer(target) as f:
            torch.save(state, f)
    return target
