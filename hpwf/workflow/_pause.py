"""A paused trial's checkpoint (``pause.pt`` in its folder): written by rank 0 through a fresh file,
read back with ``torch.load(weights_only=True)`` (tensors and plain containers, never code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

PAUSE_CHECKPOINT = "pause.pt"  # in the trial folder: the state saved by `Trial.pause`


class TrialPaused(Exception):
    """Raised by `Trial.pause` once the trial's state is saved: the trial ends for now."""


class Restored(NamedTuple):
    """What `Trial.restore` gives back: the state passed to `Trial.pause` and the step to continue from."""

    state: Any
    step: int


def save_pause(folder: Path, step: int, state: Any) -> None:
    """Write ``{"step", "state"}`` to the trial folder's checkpoint (a fresh file: no planted link followed)."""
    import torch

    from hpwf.rundir import atomic_writer

    with atomic_writer(folder / PAUSE_CHECKPOINT) as f:
        torch.save({"step": step, "state": state}, f)


def load_pause(run_dir: Path, number: int) -> Restored:
    """The checkpoint trial ``number`` paused with (in PBT maybe another member's: an exploit): ours,
    no link followed, no one else can write it."""
    import io

    import torch

    from hpwf.rundir import read_private, trial_folder

    data = read_private(trial_folder(run_dir, number) / PAUSE_CHECKPOINT)
    loaded = torch.load(io.BytesIO(data), weights_only=True)
    return Restored(loaded["state"], int(loaded["step"]))
