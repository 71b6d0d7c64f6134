"""``hpwf replay``: train one member from scratch along the schedule of hyperparameters PBT found.

The replay runs the PBT run's own workflow file (found from its run directory, as ``hpwf
resume`` finds it) in a new run directory, as PBT with one member whose segments follow the
schedule of the best final segment (or of ``trial``): see `hpwf.engine.schedulers._replay`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from hpwf.errors import ConfigError
from hpwf.workflow._search import Search
from hpwf.workflow._loading import Workflow


@dataclass
class ReplaySearch(Search):
    """A PBT search replayed: ``plan`` and ``end`` as `hpwf.engine.schedulers._replay.plan` gives them."""

    plan: tuple[dict[str, Any], ...] = ()
    end: int | None = None
    replay_of: dict[str, Any] = field(default_factory=dict)  # {"run": source run dir, "trial": segment}

    def _validate_scheduler(self) -> None:
        if not self.plan:
            raise ConfigError("a replay needs a schedule of at least one segment")

    def make_scheduler(self, study: optuna.Study) -> Any:
        from hpwf.engine.schedulers._replay import Replay

        return Replay(study, list(self.plan), self.end)


def replay_workflow(source_run: str | Path, trial: int | None = None) -> Workflow:
    """The source run's workflow with its PBT search replaced by the replay of segment ``trial``.

    Raises:
        ConfigError: the run is not ours to trust, ran no PBT, or ``trial`` is not a complete PBT segment.
    """
    from hpwf.rundir._perms import check_run_trusted
    from hpwf.engine.schedulers._replay import plan
    from hpwf.rundir._run import RunRecord, load_study
    from hpwf.workflow._loading import load

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
    segments, end = plan(load_study(folder), trial, n_trials // search.population, stop_last=search.generations is not None)
    fields = {f.name: getattr(search, f.name) for f in dataclasses.fields(Search)}
    fields.update(n_trials=len(segments), timeout=None, storage=None, sampler="random", sampler_options={},
                  seed=record.options.get("seed", search.seed), population=None, interval=None, generations=None)
    replayed = ReplaySearch(**fields, plan=tuple(segments), end=end,
                            replay_of={"run": str(folder.resolve()), "trial": segments[-1]["trial"]})
    return dataclasses.replace(wf, search=replayed, ensemble=None)


def replay(source_run: str | Path, run_dir: str | Path, *, trial: int | None = None, backend: Any = "local",
           workers: int | None = None, progress: bool = True) -> Any:
    """Train one member from scratch along PBT's schedule of segment ``trial`` (default: the best final).

    Returns `hpwf.api.RunResult` (its study holds the replayed segments, each with its parent).

    Example:
        >>> result = hpwf.pbt_replay.replay("runs/pbt", "runs/pbt-replay", workers=1)  # doctest: +SKIP
        >>> result.study.best_value  # doctest: +SKIP
    """
    from hpwf.api import run

    return run(replay_workflow(source_run, trial), backend=backend, workers=workers, run_dir=run_dir,
               progress=progress, ensemble=False)
