"""Trial states as `hpwf status` and the report show them: a paused trial is known from one source
(its ``hpwf:paused`` mark, else its durable result), and counted apart from running ones."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from hpwf.rundir._attrs import PAUSED_ATTR
from hpwf.rundir._trialdir import read_result

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial


def is_paused(frozen: FrozenTrial, run_dir: str | Path) -> bool:
    """A RUNNING trial in the study that paused (marked, or its durable result says so)."""
    from optuna.trial import TrialState

    if frozen.state != TrialState.RUNNING:
        return False
    mark = frozen.user_attrs.get(PAUSED_ATTR)  # the step it resumes from, or False once woken
    if mark is not None:
        return mark is not False
    result = read_result(Path(run_dir), frozen.number)  # paused; its coordinator died before marking it
    return bool(result and result.get("number") == frozen.number and result.get("state") == "PAUSED")


def state_counts(trials: Iterable[FrozenTrial], run_dir: str | Path) -> dict[str, int]:
    """Trials by state as ``hpwf status`` and the report show them: paused ones apart from running ones."""
    from optuna.trial import TrialState

    counts = dict.fromkeys(("complete", "pruned", "fail", "running", "paused", "waiting"), 0)
    names = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "fail",
             TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
    for frozen in trials:
        counts["paused" if is_paused(frozen, run_dir) else names[frozen.state]] += 1
    return counts
