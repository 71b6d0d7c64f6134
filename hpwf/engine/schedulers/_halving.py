"""Schedulers that pause and resume trials: successive halving with resumption and Hyperband.

The contract (`Scheduler`): the coordinator asks ``on_report`` for a `Decision` on a trial's
report (``CONTINUE``, ``PAUSE``, or ``STOP``: prune) and answers the trial; a trial told to pause
saves its state (`hpwf.Trial.pause`) and ends with the Done state "paused"; ``on_paused`` hears
of it; ``promotable`` names paused trials that may run again now; ``drain`` decides what happens to paused trials once nothing else can
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

import bisect
import enum
import math
from typing import TYPE_CHECKING, Any, Iterable, Protocol

import optuna
from optuna.trial import FrozenTrial

from hpwf.wire import Done
from hpwf.rundir import BRACKET_ATTR

if TYPE_CHECKING:
    from hpwf.engine.ledger import TrialRecord



class Decision(enum.Enum):
    """A scheduler's answer to a trial's report (as Ray Tune's ``TrialScheduler``); the
    coordinator acts on it."""

    CONTINUE = "continue"
    PAUSE = "pause"  # save its state and end the attempt: resumed when promoted
    STOP = "stop"  # prune it


class Scheduler(Protocol):
    """What the coordinator asks a scheduler (all calls on the coordinator's thread)."""

    def on_asked(self, trial: Any) -> None: ...

    def may_ask(self) -> bool: ...

    def on_report(self, record: TrialRecord, step: int, value: float) -> Decision: ...

    def on_paused(self, record: TrialRecord) -> Done | None:
        """A trial paused: None (it stays paused), or the result that ends it now (the coordinator
        tells it). A scheduler decides; it never moves the ledger."""

    def promotable(self, paused: Iterable[TrialRecord]) -> list[TrialRecord]: ...

    def drain(self, paused: list[TrialRecord]) -> tuple[list[TrialRecord], list[TrialRecord]]: ...

    def recover(self, trials: Iterable[FrozenTrial]) -> None: ...

    def requeued(self) -> None: ...


class _Rungs:
    """The values recorded at each rung of one bracket, each rung also kept sorted (best first),
    so that whether a trial is in a rung's top quota costs O(log n), not a sort of the rung."""

    def __init__(self, min_resource: int, eta: int, max_resource: int | None, maximize: bool = False) -> None:
        self.steps: list[int] = []
        k = 0
        while len(self.steps) < 32:
            step = min_resource * eta**k
            if max_resource is not None and step >= max_resource:
                break
            self.steps.append(step)
            k += 1
        self.eta = eta
        self.maximize = maximize
        self.values: list[dict[int, float]] = [{} for _ in self.steps]
        self._sorted: list[list[tuple[float, int]]] = [[] for _ in self.steps]  # (key, number), best first

    def rung_at(self, step: int) -> int | None:
        return self.steps.index(step) if step in self.steps else None

    def _key(self, value: float, number: int) -> tuple[float, int]:
        return (-value if self.maximize else value, number)

    def record(self, k: int, number: int, value: float) -> None:
        """Trial ``number`` reached rung ``k`` with ``value`` (again: the new value replaces the old)."""
        old = self.values[k].get(number)
        if old is not None:
            order = self._sorted[k]
            del order[bisect.bisect_left(order, self._key(old, number))]
        self.values[k][number] = value
        bisect.insort(self._sorted[k], self._key(value, number))

    def in_top(self, k: int, number: int, quota: int | None = None) -> bool:
        """Whether trial ``number`` is among the best ``quota`` (default n // eta) at rung ``k``."""
        values = self.values[k]
        n = len(values) // self.eta if quota is None else quota
        if n <= 0 or number not in values:
            return False
        return bisect.bisect_left(self._sorted[k], self._key(values[number], number)) < n

    def last_in_top(self, k: int) -> int | None:
        """The trial at the last place of rung ``k``'s top quota (the one a new record may let in)."""
        n = len(self.values[k]) // self.eta
        return self._sorted[k][n - 1][1] if n > 0 else None


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
        self.brackets = [_Rungs(min_resource * reduction_factor**b, reduction_factor, max_resource, maximize)
                         for b in range(brackets)]
        self._at: dict[int, int] = {}  # trial number -> the rung it last reached
        self.changes = 0  # counts what may change a promotion (a value recorded at a rung)
        # Paused trials, and those of them that entered their rung's top quota since `promotable`
        # last looked: a paused trial enters it only as the last of the quota (the quota grew, or
        # a value above it was replaced), so `promotable` costs nothing while none did (issue 25:
        # a scan of every paused trial at each change made 512-worker searches quadratic).
        self._paused: set[int] = set()
        self._due: set[int] | None = set()  # None: look at every paused trial (after `recover`)

    def _bracket(self, number: int) -> _Rungs:
        return self.brackets[number % len(self.brackets)]

    def on_asked(self, trial: Any) -> None:
        if len(self.brackets) > 1:
            trial.set_user_attr(BRACKET_ATTR, trial.number % len(self.brackets))

    def may_ask(self) -> bool:
        return True

    def on_report(self, record: TrialRecord, step: int, value: float) -> Decision:
        rungs = self._bracket(record.number)
        k = rungs.rung_at(step)
        if k is None or not math.isfinite(value):
            return Decision.CONTINUE
        rungs.record(k, record.number, value)
        self._at[record.number] = k
        self.changes += 1
        entered = rungs.last_in_top(k)
        if entered is not None and entered in self._paused and self._at.get(entered) == k and self._due is not None:
            self._due.add(entered)
        return Decision.CONTINUE if rungs.in_top(k, record.number) else Decision.PAUSE

    def on_paused(self, record: TrialRecord) -> Done | None:
        self._paused.add(record.number)
        if self._due is not None and self._promotes(record.number):  # it entered the quota on its way to pause
            self._due.add(record.number)
        return None

    def requeued(self) -> None:
        pass

    def promotable(self, paused: Iterable[TrialRecord]) -> list[TrialRecord]:
        if self._due is not None and not self._due:
            return []
        due, out = self._due, []
        for r in paused:
            if due is None:
                self._paused.add(r.number)
            if (due is None or r.number in due) and self._promotes(r.number):
                out.append(r)
        self._forget(out)
        # a due trial still in its quota, not back yet (a group's ranks), stays due
        self._due = set() if due is None else {n for n in due if n in self._paused and self._promotes(n)}
        return out

    def _forget(self, records: Iterable[TrialRecord]) -> None:
        for r in records:
            self._paused.discard(r.number)
            if self._due is not None:
                self._due.discard(r.number)

    def _promotes(self, number: int, quota: int | None = None) -> bool:
        k = self._at.get(number)
        return k is not None and self._bracket(number).in_top(k, number, quota)

    def drain(self, paused: list[TrialRecord]) -> tuple[list[TrialRecord], list[TrialRecord]]:
        """No new trial will come: (promote, prune). Each rung promotes its best max(1, n // eta)."""
        promote = [r for r in paused if self._promotes(r.number, max(1, len(self._rung_values(r.number)) // self.eta))]
        self._forget(promote or paused)
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
                    rungs.record(k, frozen.number, value)
                    self._at[frozen.number] = k
        self.changes += 1
        self._due = None  # the adopted paused trials: the next look is at all of them


def hyperband_brackets(min_resource: int, max_resource: int, reduction_factor: int) -> int:
    """How many brackets fit: ``floor(log_eta(max_resource / min_resource)) + 1`` (at least 1)."""
    return max(1, int(math.floor(math.log(max_resource / min_resource, reduction_factor) + 1e-9)) + 1)


def from_search(search: Any, study: optuna.Study) -> SuccessiveHalving:
    """The successive halving (one bracket) or Hyperband (several) that ``search`` names."""
    options = dict(search.scheduler_options)
    low, eta = int(options.get("min_resource", 1)), int(options.get("reduction_factor", 3))
    high = options.get("max_resource")
    brackets = hyperband_brackets(low, int(high or low), eta) if search.scheduler == "hyperband-resume" else 1
    return SuccessiveHalving(study.direction.name == "MAXIMIZE", low, eta, high, brackets)
