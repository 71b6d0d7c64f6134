"""Population-based training: segments of ``interval`` steps, exploit and explore between them.

Each member of the population trains in segments. A segment is one Optuna trial (so the budget
``n_trials`` is population x generations, and every segment is in the study with its params and
its last reported value). At the end of a segment (its report at step ``(generation + 1) *
interval - 1``) the trial pauses: it saves its state (`hpwf.Trial.pause`) and the coordinator
tells the segment COMPLETE with that value. Then the member's next segment is queued:

- exploit: a member whose value is in the bottom ``quantile`` of the members that finished the
  same generation (compared at the same step; at least half the population, and two) continues
  from that generation's checkpoint of a member in the top ``quantile`` (the file is read as it
  is: bit for bit),
- explore: with the copied params perturbed (floats and ints times one of ``perturb``,
  categoricals one choice over) or, with ``resample_probability``, sampled afresh. Only the
  params named in ``explore`` change (default: the float ones, e.g. a learning rate: an int or a
  categorical often shapes the model, and the copied checkpoint must still fit it);
- the others continue from their own checkpoint with their own params.

The next segment's user attrs record the lineage: ``pbt:member``, ``pbt:generation``,
``pbt:parent`` (the segment whose checkpoint it starts from), ``pbt:exploited``. The last
generation does not pause: it runs the objective to its end; with ``stop_last`` (``Search(generations=G)``)
it stops at step ``G * interval`` as the others pause, and the member ends there.

``initial`` separates the starting values from the explore ranges (Ray Tune's starting config
vs ``hyperparam_mutations``): {name: value} starts every member at that value, {name: [v0, v1,
...]} gives member ``i`` value ``i mod len``, {name: callable(random.Random)} draws each
member's start; the objective's ``suggest_*`` range is what explore perturbs and resamples in. Generation ``g`` always starts at
step ``g * interval``. A member's next segment is held back (its ranks serve others meanwhile)
until every member has started and a quorum (half the population, at least two) has finished
its generation, so that every member is ranked at the same step.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from hpwf.engine.schedulers._halving import Decision
from hpwf.wire import Done, DoneState
from hpwf.rundir import PBT_EXPLOITED, PBT_GENERATION, PBT_MEMBER, PBT_PARENT, RESTORE_ATTR
from hpwf.engine.schedulers._lineage import lineage

if TYPE_CHECKING:
    from hpwf.engine.ledger import TrialRecord

MEMBER, GENERATION, PARENT, EXPLOITED = PBT_MEMBER, PBT_GENERATION, PBT_PARENT, PBT_EXPLOITED
FIXED = ("ranks_per_trial",)  # never explored: the group size of a member stays


@dataclass
class _Latest:
    generation: int
    value: float
    number: int  # the segment's trial number (its folder holds the checkpoint)
    step: int  # the step its successor continues from
    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]


class PopulationBasedTraining:
    """``scheduler="pbt"``: see the module docstring. ``generations`` = n_trials // population."""

    def __init__(self, study: optuna.Study, population: int, interval: int, generations: int, *,
                 quantile: float = 0.25, perturb: tuple[float, float] = (0.8, 1.2),
                 resample_probability: float = 0.25, explore: list[str] | None = None,
                 seed: int | None = None, stop_last: bool = False, initial: dict[str, Any] | None = None) -> None:
        self.study = study
        self.maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        self.population, self.interval, self.generations = population, interval, generations
        self.quantile, self.perturb, self.resample_probability = quantile, perturb, resample_probability
        self.explore = None if explore is None else set(explore)
        self.stop_last, self.initial = stop_last, dict(initial or {})
        self.rng = random.Random(seed)
        self.members = 0  # generation-0 members asked so far
        self.pending = 0  # next segments queued in the study, not asked yet
        self.scores: dict[int, dict[int, _Latest]] = {}  # generation -> member -> its segment
        self._held: list[tuple[int, int]] = []  # members whose next segment waits until every member started
        self._waiting: bool | None = None  # a segment queued again waits in the study (None: look)

    # --- asking ---------------------------------------------------------------------------
    def may_ask(self) -> bool:
        if self.initial and self.members == 0 and not any(MEMBER in t.user_attrs for t in self.study.get_trials(
                deepcopy=False)):
            self._queue_starts()
        if self.members < self.population or self.pending > 0:
            return True  # (below: a failed segment queued again by a retry or an interrupt)
        if self._waiting is None:  # looked up once per change (an ask, a requeue), not every turn
            self._waiting = bool(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        return self._waiting

    def requeued(self) -> None:
        """A trial was queued again in the study (a retry, an interrupt): may_ask looks again."""
        self._waiting = None

    def _queue_starts(self) -> None:
        """Queue generation 0 with the ``initial`` values, one segment per member."""
        for member in range(self.population):
            params = {name: _start(spec, member, self.rng) for name, spec in self.initial.items()}
            self.study.enqueue_trial(params, user_attrs={MEMBER: member, GENERATION: 0}, skip_if_exists=False)

    def on_asked(self, trial: Any) -> None:
        self._waiting = None
        attrs = trial.user_attrs
        if MEMBER in attrs:
            if int(attrs.get(GENERATION, 0)) > 0:
                self.pending = max(0, self.pending - 1)
            else:  # a start queued with its initial values
                self.members = max(self.members, int(attrs[MEMBER]) + 1)
                self._release()
            return
        trial.set_user_attr(MEMBER, self.members)
        trial.set_user_attr(GENERATION, 0)
        self.members += 1
        self._release()

    # --- segments ---------------------------------------------------------------------------
    def on_report(self, record: TrialRecord, step: int, value: float) -> Decision:
        end = self.end_step(int(record.trial.user_attrs.get(GENERATION, 0)))
        record.last_report = (step, value)
        return Decision.PAUSE if end is not None and step + 1 >= end else Decision.CONTINUE

    def end_step(self, generation: int) -> int | None:
        """The step a segment of ``generation`` pauses before (None: the last runs to its end)."""
        if generation >= self.generations - 1:
            return self.generations * self.interval if self.stop_last else None
        return (generation + 1) * self.interval

    def on_paused(self, record: TrialRecord) -> Done | None:
        """The segment ended: its result (COMPLETE with its last value; the coordinator tells it),
        and the member's next segment queued. It never stays paused."""
        step, value = record.last_report or (-1, math.nan)
        trial = record.trial
        ending = Done(record.ticket, DoneState.COMPLETE, [value] if math.isfinite(value) else None)
        if not math.isfinite(value):
            return ending  # nothing to continue from: the tell fails it
        attrs = trial.user_attrs
        member, generation = int(attrs[MEMBER]), int(attrs.get(GENERATION, 0))
        self.scores.setdefault(generation, {})[member] = _Latest(
            generation, value, trial.number, step + 1, dict(trial.params), dict(trial.distributions))
        if generation < self.generations - 1:  # the last generation stopped: the member is done
            self._held.append((member, generation))
        self._release()
        return ending

    def why_done(self, finished: int, budget: int) -> str:
        """The stop reason when no member has a next segment before ``budget`` segments finished."""
        return (f"PBT: no member has a next segment ({finished} of {budget} segments finished): each member's "
                "objective returned before its last generation's end, or its segment failed")

    def _quorum(self) -> int:
        return max(2, math.ceil(self.population / 2))

    def _release(self) -> None:
        """Queue the held members whose generation can be ranked now."""
        if self.members < self.population:
            return
        ready = [(m, g) for m, g in self._held if len(self.scores.get(g, {})) >= self._quorum()]
        self._held = [h for h in self._held if h not in ready]
        for member, generation in ready:
            self.queue_next(member, generation)

    def queue_next(self, member: int, generation: int) -> None:
        """Enqueue the member's next segment (`next_segment`), recording its parent."""
        chosen = self.next_segment(member, generation)
        if chosen is None:
            return
        parent, params, exploited = chosen
        self._waiting = None
        self.study.enqueue_trial(params, user_attrs={
            MEMBER: member, GENERATION: generation + 1, PARENT: parent.number, EXPLOITED: exploited,
            RESTORE_ATTR: {"from": parent.number, "step": parent.step},
        }, skip_if_exists=False)
        self.pending += 1

    def next_segment(self, member: int, generation: int) -> tuple[_Latest, dict[str, Any], bool] | None:
        """(parent segment, params, exploited): exploit and explore, or go on as it is."""
        own = self.scores[generation][member]
        source = self._exploit(member, generation)
        if source is None:
            return own, dict(own.params), False
        parent = self.scores[generation][source]
        return parent, self._explore(parent.params, parent.distributions), True

    def _exploit(self, member: int, generation: int) -> int | None:
        """A top-quantile member to copy, when ``member`` is in the bottom quantile; else None."""
        scored = self.scores[generation]
        if len(scored) < 2:
            return None  # nobody to compare with
        sign = -1.0 if self.maximize else 1.0
        order = sorted(scored, key=lambda m: (sign * scored[m].value, m))  # best first
        cut = max(1, int(math.ceil(self.quantile * len(order))))
        if member not in order[-cut:]:
            return None
        top = [m for m in order[:cut] if m != member]
        return self.rng.choice(top) if top else None

    def _explore(self, params: dict[str, Any], distributions: dict[str, BaseDistribution]) -> dict[str, Any]:
        out = {}
        for name, value in params.items():
            dist = distributions.get(name)
            chosen = isinstance(dist, FloatDistribution) if self.explore is None else name in self.explore
            if name in FIXED or dist is None or not chosen:
                out[name] = value
            elif self.rng.random() < self.resample_probability:
                out[name] = _sample(dist, self.rng)
            else:
                out[name] = _perturb(dist, value, self.rng.choice(self.perturb), self.rng)
        return out

    # --- never paused, never drained: a segment ends COMPLETE at once ---------------------------
    def promotable(self, paused: Iterable[TrialRecord]) -> list[TrialRecord]:
        return []

    def drain(self, paused: list[TrialRecord]) -> tuple[list[TrialRecord], list[TrialRecord]]:
        """Nothing else runs: held members go on without their quorum (a member's line failed)."""
        held, self._held = self._held, []
        for member, generation in held:
            self.queue_next(member, generation)
        return [], list(paused)

    def recover(self, trials: Iterable[FrozenTrial]) -> None:
        """Rebuild members, their segments, the queued ones and the held ones from the study."""
        later: set[tuple[int, int]] = set()  # (member, generation) of segments asked or queued
        for frozen in sorted(trials, key=lambda t: t.number):
            if MEMBER in frozen.user_attrs and frozen.state != TrialState.FAIL:
                later.add((int(frozen.user_attrs[MEMBER]), int(frozen.user_attrs.get(GENERATION, 0))))
        for frozen in sorted(trials, key=lambda t: t.number):
            attrs = frozen.user_attrs
            if MEMBER not in attrs:
                continue
            member, generation = int(attrs[MEMBER]), int(attrs.get(GENERATION, 0))
            self.members = max(self.members, member + 1)
            if frozen.state == TrialState.WAITING and generation > 0:
                self.pending += 1
            if frozen.state == TrialState.COMPLETE and frozen.value is not None and frozen.intermediate_values:
                self.scores.setdefault(generation, {})[member] = _Latest(
                    generation, frozen.value, frozen.number, max(frozen.intermediate_values) + 1,
                    dict(frozen.params), dict(frozen.distributions))
                if generation < self.generations - 1 and (member, generation + 1) not in later:
                    self._held.append((member, generation))  # its next segment was never queued
        self._release()


def _start(spec: Any, member: int, rng: random.Random) -> Any:
    """A member's initial value: fixed, the member's entry of a list, or drawn by a callable."""
    if callable(spec):
        return spec(rng)
    if isinstance(spec, (list, tuple)):
        return spec[member % len(spec)]
    return spec


def _sample(dist: BaseDistribution, rng: random.Random) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return rng.choice(dist.choices)
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        low, high = float(dist.low), float(dist.high)
        value = math.exp(rng.uniform(math.log(low), math.log(high))) if dist.log else rng.uniform(low, high)
        return _clip(dist, value)
    raise TypeError(f"cannot sample {dist!r}")


def _perturb(dist: BaseDistribution, value: Any, factor: float, rng: random.Random) -> Any:
    if isinstance(dist, CategoricalDistribution):
        i = dist.choices.index(value) + rng.choice((-1, 1))
        return dist.choices[min(max(i, 0), len(dist.choices) - 1)]
    return _clip(dist, float(value) * factor)


def _clip(dist: Any, value: float) -> Any:
    value = min(max(value, dist.low), dist.high)
    if dist.step is not None:
        value = dist.low + round((value - dist.low) / dist.step) * dist.step
        value = min(max(value, dist.low), dist.high)
    return int(round(value)) if isinstance(dist, IntDistribution) else float(value)


def from_search(search: Any, study: optuna.Study) -> PopulationBasedTraining:
    """The PBT that ``search`` names (``n_trials`` counts segments: population x generations)."""
    options = dict(search.scheduler_options)
    assert search.population and search.interval and search.n_trials
    return PopulationBasedTraining(
        study, search.population, search.interval, search.n_trials // search.population,
        quantile=float(options.get("quantile", 0.25)), perturb=tuple(options.get("perturb", (0.8, 1.2))),
        resample_probability=float(options.get("resample_probability", 0.25)),
        explore=list(options["explore"]) if "explore" in options else None, seed=search.seed,
        stop_last=search.generations is not None, initial=options.get("initial"))


