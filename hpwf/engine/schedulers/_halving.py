"""Schedulers that pause and resume trials: successive halving with resumption and Hyperband.

The contract (`Scheduler`): the coordinator asks ``on_report`` what to answer a trial's report
(go on, prune, or ``PAUSE``); a trial told to pause saves its state (`hpwf.Trial.pause`) and
ends with the Done state "paused"; ``on_paused`` hears of it; ``promotable`` names paused trials
that may run again now; ``drain`` decides what happens to paused trials once nothing else can
run. Decisions depend only on reported values and trial numbers, so a resume rebuilds them from
the study (``recover``).

Successive halving with resumption (asynchronous, as ASHA with promotions): rung ``k`` is reached
at step ``min_resource * reduction_factor**k`` (the step as Optuna's SuccessiveHalvingPruner
counts it). A trial reaching a rung goes on if it is in the top ``1/reduction_factor`` of the
values recorded at that rung, else it pauses. Whenever a rung records a value, paused trials now in
its top fraction are promoted. When no new trial can start, each rung promotes its best paused
trial(s) (at least one), and the others are pruned at their last rung.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Protocol

from optuna.trial import FrozenTrial, TrialState

from hpwf.rundir._trialdir import read_result

if TYPE_CHECKING:
    from hpwf.engine.ledger import TrialRecord
    from hpwf.engine.loop import Coordinator

PAUSE = "pause"  # the Reply to a Report that tells the trial to pause
PAUSED_ATTR = "hpwf:paused"  # user attr: the step a paused trial continues from (False once resumed)
RESTORE_ATTR = "hpwf:restore"  # user attr: {"from": trial number holding the checkpoint, "step": next step}
BRACKET_ATTR = "hpwf:bracket"
SEED_ATTR = "hpwf:seed_of"  # user attr: the trial number whose ``trial.seed`` it gets (a replayed PBT segment's)


def is_paused(frozen: FrozenTrial, run_dir: str | Path) -> bool:
    """A RUNNING trial in the study that paused (marked, or its durable result says so)."""
    if frozen.state != TrialState.RUNNING:
        return False
    if frozen.user_attrs.get(PAUSED_ATTR) not in (None, False):
        return True
    result = read_result(Path(run_dir), frozen.number)
    return bool(result and result.get("number") == frozen.number and result.get("state") == "PAUSED")


def state_counts(trials: Iterable[FrozenTrial], run_dir: str | Path) -> dict[str, int]:
    """Trials by state as ``hpwf status`` and the report show them: paused ones apart from running ones."""
    counts = dict.fromkeys(("complete", "pruned", "fail", "running", "paused", "waiting"), 0)
    names = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "fail",
             TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
    for frozen in trials:
        counts["paused" if _shown_paused(frozen, run_dir) else names[frozen.state]] += 1
    return counts


def _shown_paused(frozen: FrozenTrial, run_dir: str | Path) -> bool:
    """`is_paused`, except that a trial marked resumed is shown running: its earlier PAUSED
    result is stale while it runs (a recovery still restarts it from that checkpoint)."""
    if frozen.user_attrs.get(PAUSED_ATTR, None) is False and frozen.state == TrialState.RUNNING:
        return False
    return is_paused(frozen, run_dir)


class Scheduler(Protocol):
    """What the coordinator asks a scheduler (all calls on the coordinator's thread)."""

    def on_asked(self, trial: Any) -> None: ...

    def may_ask(self) -> bool: ...

    def on_report(self, record: TrialRecord, step: int, value: float) -> bool | str: ...

    def on_paused(self, c: Coordinator, record: TrialRecord) -> None: ...

    def promotable(self, paused: Iterable[TrialRecord]) -> list[TrialRecord]: ...

    def drain(self, paused: list[TrialRecord]) -> tuple[list[TrialRecord], list[TrialRecord]]: ...

    def recover(self, trials: Iterable[FrozenTrial]) -> None: ...


class _Rungs:
    """The values recorded at each rung of one bracket."""

    def __init__(self, min_resource: int, eta: int, max_resource: int | None) -> None:
        self.steps: list[int] = []
        k = 0
        while len(self.steps) < 32:
            step = min_resource * eta**k
            if max_resource is not None and step >= max_resource:
                break
            self.steps.append(step)
            k += 1
        self.eta = eta
        self.values: list[dict[int, float]] = [{} for _ in self.steps]

    def rung_at(self, step: int) -> int | None:
        return self.steps.index(step) if step in self.steps else None

    def in_top(self, k: int, number: int, maximize: bool, quota: int | None = None) -> bool:
        """Whether trial ``number`` is among the best ``quota`` (default n // eta) at rung ``k``."""
        values = self.values[k]
        n = len(values) // self.eta if quota is None else quota
        if n <= 0 or number not in values:
            return False
        order = sorted(values, key=lambda t: (-values[t] if maximize else values[t], t))
        return number in order[:n]


class SuccessiveHalving:
    """``scheduler="asha-resume"`` (one bracket) and ``"hyperband-resume"`` (several).

    Args:
        maximize: the study's direction.
        min_resource: the first rung's step.
        reduction_factor: ``eta``: one trial in ``eta`` goes on at each rung.
        max_resource: the objective's last step; no rung at or past it (needed for brackets).
        brackets: Hyperband brackets; bracket ``b`` starts at ``min_resource * eta**b``, and trial
            ``n`` belongs to bracket ``n % brackets``.
    """

    def __init__(self, maximize: bool, min_resource: int = 1, reduction_factor: int = 3,
                 max_resource: int | None = None, brackets: int = 1) -> None:
        self.maximize = maximize
        self.eta = reduction_factor
        self.brackets = [_Rungs(min_resource * reduction_factor**b, reduction_factor, max_resource)
                         for b in range(brackets)]
        self._at: dict[int, int] = {}  # trial number -> the rung it last reached

    def _bracket(self, number: int) -> _Rungs:
        return self.brackets[number % len(self.brackets)]

    def on_asked(self, trial: Any) -> None:
        if len(self.brackets) > 1:
            trial.set_user_attr(BRACKET_ATTR, trial.number % len(self.brackets))

    def may_ask(self) -> bool:
        return True

    def on_report(self, record: TrialRecord, step: int, value: float) -> bool | str:
        rungs = self._bracket(record.number)
        k = rungs.rung_at(step)
        if k is None or not math.isfinite(value):
            return False
        rungs.values[k][record.number] = value
        self._at[record.number] = k
        return False if rungs.in_top(k, record.number, self.maximize) else PAUSE

    def on_paused(self, c: Coordinator, record: TrialRecord) -> None:
        pass

    def promotable(self, paused: Iterable[TrialRecord]) -> list[TrialRecord]:
        return [r for r in paused if self._promotes(r.number)]

    def _promotes(self, number: int, quota: int | None = None) -> bool:
        k = self._at.get(number)
        return k is not None and self._bracket(number).in_top(k, number, self.maximize, quota)

    def drain(self, paused: list[TrialRecord]) -> tuple[list[TrialRecord], list[TrialRecord]]:
        """No new trial will come: (promote, prune). Each rung promotes its best max(1, n // eta)."""
        promote = [r for r in paused if self._promotes(r.number, max(1, len(self._rung_values(r.number)) // self.eta))]
        if promote:
            return promote, []
        return [], list(paused)

    def _rung_values(self, number: int) -> dict[int, float]:
        k = self._at.get(number)
        return {} if k is None else self._bracket(number).values[k]

    def recover(self, trials: Iterable[FrozenTrial]) -> None:
        """Rebuild the rungs from the intermediate values in the study."""
        for frozen in trials:
            rungs = self._bracket(frozen.number)
            for k, step in enumerate(rungs.steps):
                value = frozen.intermediate_values.get(step)
                if value is not None and math.isfinite(value):
                    rungs.values[k][frozen.number] = value
                    self._at[frozen.number] = k


def hyperband_brackets(min_resource: int, max_resource: int, reduction_factor: int) -> int:
    """How many brackets fit: ``floor(log_eta(max_resource / min_resource)) + 1`` (at least 1)."""
    return max(1, int(math.floor(math.log(max_resource / min_resource, reduction_factor) + 1e-9)) + 1)
