"""Ensembles: chosen from the search's own trials, or members trained on bootstrap resamples.

Two ways, which combine:

- **Selection from the search** (no retraining): trials save predictions
  (``trial.save_predictions("val" | "cal" | "test", ...)``) and the ensemble is the top k of
  them, or Caruana's greedy selection on validation predictions (`hpwf.ensembles._selection`).
- **Members** (``train=``): K members train on bootstrap resamples, spread over the same
  backends as trials. Members are trials of a sibling study (``<name>-ensemble``) run in
  ``RUN_DIR/ensemble``: each carries its member index, configuration, source trial and seed
  as user attributes, so a resumed run never retrains a finished member, and a failed member
  runs again with the same attributes. With ``select="greedy"`` the members' configurations
  are those greedy selection chose, in proportion to their weights.

The plan (which members, from which trials) is written to ``RUN_DIR/ensemble/selection.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, cast

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpwf.ensembles import _calibrate as calib
from hpwf.ensembles._selection import Selection, allocate, greedy, top_k
from hpwf.errors import ConfigError
from hpwf.progress import say
from hpwf.rundir import CONFIG, MEMBER, SEED, SOURCE, atomic_write, is_file, make_folder, read_file, trial_folder
from hpwf.workflow import DEFAULT_SIZE, ENSEMBLE_DIR, Ensemble, Member, Search, Workflow, predictions

SELECTION_FILE = "selection.json"
_HPWF_PARAMS = ("ranks_per_trial",)


# --- the search's trials as candidates --------------------------------------------------------
def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Finished trials with a single objective value."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values and
            len(t.values) == 1]


def select_trials(spec: Ensemble, study: optuna.Study, run_dir: Path, need: str = "test") -> Selection:
    """Choose trials of the search in ``run_dir`` as ``spec`` says (topk or greedy).

    Only trials that saved ``need`` predictions are candidates (greedy: also "val"); with
    ``spec.retrains`` every complete trial is a candidate for topk (members retrain it).
    """
    done = complete_trials(study)
    if not done:
        raise ConfigError(f"study {study.study_name!r} has no complete trial to build an ensemble from")
    if spec.select == "greedy":
        candidates = {}
        for t in done:
            val = predictions.load(trial_folder(run_dir, t.number), "val")
            if val is not None and (spec.retrains or predictions.path(trial_folder(run_dir, t.number), need).exists()):
                candidates[t.number] = val
        if not candidates:
            raise ConfigError(f"{run_dir}: no complete trial saved validation predictions for greedy selection "
                              "(trial.save_predictions('val', y=..., ...))")
        try:
            return greedy(candidates, spec.size or DEFAULT_SIZE, spec.metric, seed=spec.seed,
                          **calib.options(spec.select_options, calib.SELECT_OPTIONS, "select_options"))
        except ValueError as exc:
            raise ConfigError(f"{run_dir}: greedy selection: {exc}") from None
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    values = {t.number: float(cast(float, t.value)) for t in done
              if spec.retrains or predictions.path(trial_folder(run_dir, t.number), need).exists()}
    if not values:
        raise ConfigError(f"{run_dir}: no complete trial saved {need} predictions "
                          f"(trial.save_predictions({need!r}, y=..., ...))")
    return top_k(values, spec.k, maximize)


# --- members: the plan and its bookkeeping --------------------------------------------------
@dataclass
class Plan:
    """The members to train (their attributes) and the selection their configurations came from."""

    members: list[dict[str, Any]]
    selection: Selection | None = None

    def as_json(self) -> dict[str, Any]:
        return {"selection": self.selection.as_json() if self.selection else None, "plan": self.members}


def plan(ensemble: Ensemble, source: optuna.Study | None, search_dir: Path | None = None) -> Plan:
    """The members' attributes: index, configuration (``params``, or selected trials), source, seed."""
    if ensemble.members is None:
        raise ConfigError("this ensemble trains no members (no train=): nothing to plan")
    selection = None
    if ensemble.params is not None:
        configs: list[tuple[dict[str, Any], int | None]] = [(dict(ensemble.params), None)]
    else:
        if source is None or search_dir is None:
            raise ConfigError("the ensemble needs params= or a finished search to select configurations from")
        selection = select_trials(ensemble, source, search_dir)
        by_number = {t.number: t for t in complete_trials(source)}
        if selection.method == "greedy":
            chosen = allocate(selection.weights, ensemble.members)
        else:
            ranked = list(selection.weights)  # top_k keeps them best first
            chosen = [ranked[i % len(ranked)] for i in range(ensemble.members)]
        configs = [(_config(by_number[n]), n) for n in chosen]
    members = [{MEMBER: i, CONFIG: configs[i % len(configs)][0], SOURCE: configs[i % len(configs)][1],
                SEED: ensemble.seed * 1000 + i} for i in range(ensemble.members)]
    return Plan(members, selection)


def _config(trial: FrozenTrial) -> dict[str, Any]:
    return {k: v for k, v in trial.params.items() if k not in _HPWF_PARAMS}


def same_member(attrs: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    """Whether a member trial's attributes are those of a plan entry (then it need not retrain)."""
    return all(attrs.get(k) == entry.get(k) for k in (MEMBER, CONFIG, SOURCE, SEED))


def member_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Complete member trials, oldest first."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if MEMBER in t.user_attrs]


def current_members(run_dir: Path) -> dict[int, tuple[FrozenTrial, Path]]:
    """Member index -> (trial, folder) of the finished members of the current plan.

    Without a saved plan (runs made before plans were recorded): every member index's first
    complete run.
    """
    from hpwf.rundir import load_study

    sub = run_dir / ENSEMBLE_DIR
    study = load_study(sub)
    entries = read_selection(run_dir).get("plan")
    found: dict[int, tuple[FrozenTrial, Path]] = {}
    for t in member_trials(study):
        index = int(t.user_attrs[MEMBER])
        if index in found:
            continue
        if entries is None or any(same_member(t.user_attrs, e) for e in entries):
            found[index] = (t, trial_folder(sub, t.number))
    return dict(sorted(found.items()))


def missing_members(planned: Plan, study: optuna.Study) -> list[dict[str, Any]]:
    """The plan entries no complete member trial matches yet."""
    done = member_trials(study)
    return [e for e in planned.members if not any(same_member(t.user_attrs, e) for t in done)]


def read_selection(run_dir: Path) -> dict[str, Any]:
    """``RUN_DIR/ensemble/selection.json``, or {} when there is none."""
    path = run_dir / ENSEMBLE_DIR / SELECTION_FILE
    return cast(dict[str, Any], json.loads(read_file(path))) if is_file(path) else {}


def write_selection(run_dir: Path, record: dict[str, Any]) -> Path:
    path = run_dir / ENSEMBLE_DIR / SELECTION_FILE
    make_folder(path.parent)
    atomic_write(path, json.dumps(record, indent=1, default=str))
    return path


def stale_sources(spec: Ensemble, run_dir: Path, source: optuna.Study) -> str | None:
    """A sentence when the members' source trials are no longer what the selection gives now."""
    if not spec.retrains or spec.params is not None:
        return None
    saved = read_selection(run_dir).get("plan")
    if not saved:
        return None
    try:
        now = plan(spec, source, run_dir)
    except ConfigError:
        return None
    before = sorted({e[SOURCE] for e in saved if e.get(SOURCE) is not None})
    after = sorted({e[SOURCE] for e in now.members if e.get(SOURCE) is not None})
    if before == after:
        return None
    return (f"the ensemble's members come from trials {before}, but the search's {spec.select} selection is now "
            f"{after}; rebuild it with `hpwf ensemble WORKFLOW --from {run_dir}`")


def member_search(wf: Workflow, storage: str | None, name: str, n: int | None = None) -> Search:
    """The members' study as a search: random, unpruned, each member retried ``max_retries`` times."""
    e = wf.ensemble
    assert e is not None
    n = n or e.members
    return Search(direction=member_direction(wf), n_trials=n, sampler="random", pruner="none",
                  ranks_per_trial=e.ranks_per_trial, seed=e.seed, name=name, storage=storage,
                  max_failures=max(n * e.max_retries, 1), retries=e.max_retries,
                  threads_per_trial=wf.search.threads_per_trial if wf.search else None)


def member_direction(wf: Workflow, announce: bool = False) -> str:
    """The ensemble's direction, or the search's when it gives none (said once, on ``announce``)."""
    e = wf.ensemble
    assert e is not None
    if e.direction is not None:
        return str(e.direction)
    where = wf.path or "workflow"
    if wf.search is None or wf.search.direction is None:
        raise ConfigError(f"{where}: Ensemble(direction=...) is needed: there is no single-objective search "
                          "to take it from (is a lower or a higher member score better?)")
    if announce:
        say(f"[hpwf] ensemble: members' scores are to {wf.search.direction}, as the search's "
            f"(Ensemble(direction=...) to change)")
    return str(wf.search.direction)
