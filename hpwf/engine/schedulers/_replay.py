"""PBT's schedule replayed: one member trained from scratch along a PBT run's lineage of segments.

`plan` reads the schedule of one PBT segment (default: the best final one) from the study:
entry ``k`` holds the params of the ``k``-th segment of its lineage and the step it started from.
`Replay` is PBT with a population of one whose segments follow that plan: segment ``k`` trains
with entry ``k``'s params from its start step up to entry ``k + 1``'s, restoring the checkpoint of
segment ``k - 1`` (its own: no exploit, no explore); the last one stops where the replayed
segment stopped. Its study records each segment with its parent, as PBT does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hpwf.engine.schedulers._pbt import GENERATION, MEMBER, PopulationBasedTraining, _Latest
from hpwf.engine.schedulers._lineage import lineage, schedule
from hpwf.errors import ConfigError
from hpwf.rundir import RunRecord, SEED_ATTR, check_run_trusted, load_study
from hpwf.workflow import Search, Workflow, load


class Replay(PopulationBasedTraining):
    """``plan`` (from `plan`) as the one member's segments; ``end``: the last segment's pause step or None."""

    def __init__(self, study: optuna.Study, plan: list[dict[str, Any]], end: int | None) -> None:
        super().__init__(study, population=1, interval=1, generations=len(plan))
        self.plan = plan
        self.ends: list[int | None] = [int(entry["start_step"]) for entry in plan[1:]]
        self.ends.append(end)
        if not study.get_trials(deepcopy=False):  # the first segment: the plan's params, from scratch
            study.enqueue_trial(dict(plan[0]["params"]), skip_if_exists=False)

    def on_asked(self, trial: Any) -> None:
        """A segment gets the ``trial.seed`` of the segment it replays (same run seed: same value)."""
        super().on_asked(trial)
        generation = int(trial.user_attrs.get(GENERATION, 0))
        trial.set_user_attr(SEED_ATTR, int(self.plan[min(generation, len(self.plan) - 1)]["trial"]))

    def _quorum(self) -> int:
        return 1

    def end_step(self, generation: int) -> int | None:
        return self.ends[generation] if generation < len(self.ends) else None

    def next_segment(self, member: int, generation: int) -> tuple[_Latest, dict[str, Any], bool] | None:
        if generation + 1 >= len(self.plan):
            return None
        return self.scores[generation][member], dict(self.plan[generation + 1]["params"]), False


def plan(study: optuna.Study, number: int | None, generations: int,
         stop_last: bool = False) -> tuple[list[dict[str, Any]], int | None]:
    """The schedule of segment ``number`` (default: the best final one) and the step it paused before.

    ``generations``: the PBT run's (a segment of an earlier generation paused; the last ran to its end,
    unless ``stop_last``: the run had ``generations=`` and stopped it too).

    Raises:
        ConfigError: the study ran no PBT, or ``number`` is not a complete PBT segment.
    """
    info = lineage(study)
    if info is None:
        raise ConfigError(f"study {study.study_name!r} ran no PBT (scheduler='pbt'): nothing to replay")
    if number is None:
        number = info["best_final"]
        if number is None:
            raise ConfigError(f"study {study.study_name!r}: no PBT segment completed yet: nothing to replay")
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    frozen = trials.get(number)
    if frozen is None or MEMBER not in frozen.user_attrs:
        raise ConfigError(f"--trial {number}: not a PBT segment of study {study.study_name!r}")
    if frozen.state != TrialState.COMPLETE or not frozen.intermediate_values:
        raise ConfigError(f"--trial {number}: that PBT segment did not complete ({frozen.state.name})")
    paused = stop_last or int(frozen.user_attrs.get(GENERATION, 0)) < generations - 1
    return schedule(study, number), max(frozen.intermediate_values) + 1 if paused else None


def from_search(search: Any, study: optuna.Study) -> Replay:
    """The replay that a `ReplaySearch` carries."""
    return Replay(study, list(search.plan), search.end)


@dataclass
class ReplaySearch(Search):
    """A PBT search replayed: ``plan`` and ``end`` as `plan` gives them (scheduler "replay")."""

    plan: tuple[dict[str, Any], ...] = ()
    end: int | None = None
    replay_of: dict[str, Any] = field(default_factory=dict)  # {"run": source run dir, "trial": segment}

    def _validate_scheduler(self) -> None:
        if not self.plan:
            raise ConfigError("a replay needs a schedule of at least one segment")

    scheduler: str = "replay"


def replay_workflow(source_run: str | Path, trial: int | None = None) -> Workflow:
    """The source run's workflow with its PBT search replaced by the replay of segment ``trial``.

    Raises:
        ConfigError: the run is not ours to trust, ran no PBT, or ``trial`` is not a complete PBT segment.
    """
    folder = Path(source_run)
    check_run_trusted(folder)
    record = RunRecord.load(folder)
    if record.workflow is None:
        raise ConfigError(f"{folder}: started from Python objects, not a workflow file: nothing to replay")
    wf = load(record.workflow)
    search = wf.search
    if search is None or search.scheduler != "pbt" or not search.population:
        raise ConfigError(f"{record.workflow}: its search is not scheduler='pbt': nothing to replay")
    n_trials = int(record.options.get("n_trials") or search.n_trials or 0)
    segments, end = plan(load_study(folder), trial, n_trials // search.population,
                         stop_last=search.generations is not None)
    fields = {f.name: getattr(search, f.name) for f in dataclasses.fields(Search)}
    fields.update(n_trials=len(segments), timeout=None, storage=None, sampler="random", sampler_options={},
                  seed=record.options.get("seed", search.seed), population=None, interval=None, generations=None,
                  scheduler="replay")
    replayed = ReplaySearch(**fields, plan=tuple(segments), end=end,
                            replay_of={"run": str(folder.resolve()), "trial": segments[-1]["trial"]})
    return dataclasses.replace(wf, search=replayed, ensemble=None)
