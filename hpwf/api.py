"""``run``, ``resume``, ``ensemble`` and ``status``: the Python entry points behind the CLI.

A run has phases that share one set of agents: the search, then the ensemble (if declared).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hpwf.rundir._perms import check_run_trusted, is_shared, make_run_dir, run_umask
from hpwf.secrets import refuse_password
from hpwf.backends import Backend, make_backend
from hpwf.engine.schedulers._pbt import lineage as pbt_lineage
from hpwf.engine.phases import EnsemblePhase, Phase, SearchPhase, run_phases
from hpwf.engine.schedulers._halving import state_counts
from hpwf.errors import ConfigError
from hpwf.progress import say
from hpwf.rundir._run import DEFAULT_JOURNAL, RunRecord, load_study, open_storage, read_summary, scan_study
from hpwf.workflow._search import Search
from hpwf.workflow._loading import Workflow, load

ENSEMBLE_DIR = "ensemble"


@dataclass
class RunResult:
    """What a finished run gives back (the search phase's study and summary, if it had one)."""

    run_dir: Path
    study: optuna.Study
    summary: dict[str, Any]
    uq_metrics: dict[str, Any] | None = None


def run(
    workflow: str | Path | Workflow,
    *,
    backend: str | Backend = "local",
    workers: int | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    run_dir: str | Path | None = None,
    storage: str | None = None,
    seed: int | None = None,
    progress: bool = True,
    shared_group: bool = False,
    ensemble: bool = True,
) -> RunResult:
    """Run a workflow's search to its budget in a new run directory, then its ensemble if any.

    Args:
        workflow: a workflow file, or a `Workflow` made of Python objects.
        backend: "local" (a Dask LocalCluster), another backend name, or a `Backend` object.
        workers: agents for the local backend (default: the machine's cores).
        n_trials, timeout, storage, seed: override the workflow's `Search`.
        run_dir: where everything goes (default: ``runs/<name>-<time>``), created readable by
            you only; with ``shared_group`` its group may read it too (never write).
        ensemble: False runs the search only (the members run elsewhere, e.g. as a Slurm
            job array: `hpwf.slurm._array`).

    Raises:
        ConfigError: bad input, including a storage URL that holds a password (use
            ``~/.pgpass`` or ``PGPASSWORD``) or a run directory someone else can write.

    Example:
        >>> result = hpwf.run("workflows/quickstart.py", workers=2)  # doctest: +SKIP
        >>> result.summary["complete"]  # doctest: +SKIP
    """
    wf = workflow if isinstance(workflow, Workflow) else load(workflow)
    refuse_password(storage, "--storage")
    if storage is None and wf.search is not None:
        refuse_password(wf.search.storage, f"{wf.path or 'workflow'}: Search(storage=...)")
    chosen = backend if isinstance(backend, Backend) else make_backend(backend, workers=workers)
    folder = Path(run_dir) if run_dir else Path("runs") / f"{wf.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (folder / "run.json").exists():
        raise ConfigError(f"{folder}: already holds a run; continue it with `hpwf resume {folder}`")
    phases: list[Phase] = []
    if wf.search is not None:
        search = _override(wf.search, {"n_trials": n_trials, "timeout": timeout, "storage": storage, "seed": seed})
        wf = dataclasses.replace(wf, search=search)
        phases.append(SearchPhase(folder, _record(wf.name, search, wf, chosen, workers), search, wf))
    if wf.ensemble is not None and wf.ensemble.retrains and ensemble:
        phases.append(_ensemble_phase(wf, folder, chosen, workers, storage))
    if not phases:
        raise ConfigError(f"{wf.path or 'workflow'}: no search to run (the ensemble runs elsewhere)")
    for phase in phases:  # every check before anything is written: an error leaves no run dir
        _check_fits(phase.search, chosen)
        _check_storage(phase)
    with run_umask(shared_group):
        created = not folder.exists()
        make_run_dir(folder, shared_group)
        try:
            return _start(wf, phases, folder, chosen, storage, progress)
        except ConfigError:
            if created:
                _remove_if_unused(folder)
            raise


def _start(wf: Workflow, phases: list[Phase], folder: Path, chosen: Backend, storage: str | None,
           progress: bool) -> RunResult:
    """Run a new run's phases in its freshly made folder."""
    if wf.search is None:  # the run dir's own record points at the members' study
        root = dataclasses.replace(phases[0].record, options=dict(phases[0].record.options))
        root.storage = storage
        root.save(folder)
    return _run_phases(phases, chosen, progress, _scored(wf, phases), checked=True)


def resume(
    run_dir: str | Path,
    *,
    workflow: Workflow | None = None,
    backend: str | Backend | None = None,
    workers: int | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    progress: bool = True,
    ensemble: bool = True,
) -> RunResult:
    """Continue an interrupted (or finished) run to its budget; completed trials are kept.

    Trials a killed coordinator left RUNNING are failed and run again; finished ensemble
    members are never retrained. ``ensemble=False`` resumes the search only.

    Raises:
        ConfigError: the run directory or its ``run.json`` is someone else's or writable by
            others (whoever can write them chooses the code that runs).
    """
    folder = Path(run_dir)
    check_run_trusted(folder)
    record = RunRecord.load(folder)
    if record.options.get("replay_of"):
        source = record.options["replay_of"]
        raise ConfigError(f"{folder}: a replay of {source['run']} (trial {source['trial']}); replay it again into "
                          f"a new run dir: hpwf replay {source['run']} --trial {source['trial']} --run-dir NEW_DIR")
    if workflow is None:
        if record.workflow is None:
            raise ConfigError(f"{folder}: started from Python objects; resume it with hpwf.resume(..., workflow=...)")
        workflow = load(record.workflow)
    options = dict(record.options)
    options.update({k: v for k, v in {"n_trials": n_trials, "timeout": timeout, "workers": workers}.items() if v is not None})
    chosen = backend if isinstance(backend, Backend) else make_backend(backend or record.backend, workers=options.get("workers"))
    phases: list[Phase] = []
    if workflow.search is not None:
        search = _override(workflow.search, {k: options.get(k) for k in ("n_trials", "timeout", "seed")} | {"storage": record.storage})
        record.options = options
        phases.append(SearchPhase(folder, record, search, dataclasses.replace(workflow, search=search), fresh=False))
    if workflow.ensemble is not None and workflow.ensemble.retrains and (ensemble or workflow.search is None):
        sub = folder / ENSEMBLE_DIR
        if (sub / "run.json").exists():  # the current plan's members; a stale plan is warned about
            sub_record = RunRecord.load(sub)
            search = _member_search(workflow, sub_record.storage, sub_record.study_name,
                                    sub_record.options.get("n_trials"))
            phases.append(EnsemblePhase(sub, sub_record, search, workflow, fresh=False))
        else:
            phases.append(_ensemble_phase(workflow, folder, chosen, options.get("workers"), record.storage))
    with run_umask(is_shared(folder)):
        return _run_phases(phases, chosen, progress, _scored(workflow, phases))


def ensemble(
    workflow: str | Path | Workflow,
    source_run: str | Path,
    *,
    top_k: int | None = None,
    members: int | None = None,
    backend: str | Backend = "local",
    workers: int | None = None,
    progress: bool = True,
) -> RunResult:
    """Build (or rebuild) the workflow's ensemble from the search run's current results.

    The selection is made again from the search as it is now (after ``hpwf resume`` added
    trials, too). Members already trained with the same configuration, source trial and seed
    are kept; the others train now. An ensemble without ``train=`` only selects and scores.
    """
    from hpwf.ensembles._members import missing_members, plan

    wf = workflow if isinstance(workflow, Workflow) else load(workflow)
    if wf.ensemble is None:
        raise ConfigError(f"{wf.path or 'workflow'}: no `ensemble = hpwf.Ensemble(...)` defined")
    if members is not None and not wf.ensemble.retrains:
        raise ConfigError(f"--members: the ensemble in {wf.path or 'workflow'} trains no members (no train=)")
    changes: dict[str, Any] = {k: v for k, v in {"top_k": top_k, "members": members}.items() if v is not None}
    if top_k is not None:
        changes.update(params=None, select="topk", size=None)
    spec = dataclasses.replace(wf.ensemble, **changes)
    wf = dataclasses.replace(wf, ensemble=spec)
    folder = Path(source_run)
    check_run_trusted(folder)
    record = RunRecord.load(folder)
    source = load_study(folder)
    if not spec.retrains:
        return _aggregate_only(folder, source, spec)
    planned = plan(spec, None if spec.params is not None else source, folder)
    sub = folder / ENSEMBLE_DIR
    todo = missing_members(planned, load_study(sub)) if (sub / "run.json").exists() else planned.members
    _member_direction(wf)  # a missing direction is an error before anything is written
    _write_plan(folder, planned, spec, record.study_name)
    if not todo:
        say(f"[hpwf] ensemble: all {len(planned.members)} members of the plan are trained already")
        return _aggregate_only(folder, source, spec)
    chosen = backend if isinstance(backend, Backend) else make_backend(backend, workers=workers)
    phase = _ensemble_phase(wf, folder, chosen, workers, record.storage, source_name=record.study_name,
                            members=todo)
    phase.rebuild = True
    kept = len(planned.members) - len(todo)
    say(f"[hpwf] ensemble: {len(todo)} members to train" + (f", {kept} kept from before" if kept else ""))
    with run_umask(is_shared(folder)):
        return _run_phases([phase], chosen, progress, spec)


def _aggregate_only(folder: Path, study: optuna.Study, spec: Any) -> RunResult:
    """Select and score without training anything (an ensemble of trials, or nothing left to train)."""
    from hpwf.ensembles._members import aggregate

    done = sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    summary = {"complete": done, "pruned": 0, "fail": 0, "session_wall_s": 0.0, "stop_reason": None,
               **{k: v for k, v in read_summary(folder).items() if k in ("best_value", "best_trial")}}
    return RunResult(folder, study, summary, aggregate(folder, spec))


def _write_plan(folder: Path, planned: Any, spec: Any, source_study: str | None) -> None:
    from hpwf.ensembles._members import write_selection

    write_selection(folder, {**planned.as_json(), "calibrate": spec.calibrate, "source_study": source_study})


def status(run_dir: str | Path) -> dict[str, Any]:
    """Counts by state, the best trial and its params, read from the study itself.

    Example:
        >>> hpwf.status("runs/quickstart")["complete"]  # doctest: +SKIP
        16
    """
    folder = Path(run_dir)
    record = RunRecord.load(folder)
    scanned = scan_study(folder)  # a journal read without Optuna's replay, nor any lock
    if scanned is not None:
        result: dict[str, Any] = {"study": record.study_name, "run_dir": str(folder), **scanned["counts"],
                                  "n_trials": record.options.get("n_trials"),
                                  "best_value": None, "best_trial": None, "best_params": None}
        if scanned["best"] is not None:
            result.update(zip(("best_trial", "best_value", "best_params"), scanned["best"]))
        return _status_rest(folder, result)
    study = load_study(folder, read_only=True)
    trials = study.get_trials(deepcopy=False)
    count = state_counts(trials, folder)
    result = {
        "study": study.study_name, "run_dir": str(folder), **count,
        "n_trials": record.options.get("n_trials"),
        "best_value": None, "best_trial": None, "best_params": None,
    }
    if len(study.directions) == 1 and count["complete"]:
        best = study.best_trial
        result.update(best_value=best.value, best_trial=best.number, best_params=best.params)
    elif count["complete"]:
        front = sorted(study.best_trials, key=lambda t: t.number)
        result["best_trials"] = [{"number": t.number, "values": t.values, "params": t.params} for t in front]
        result["pareto_front"] = {"size": len(front), "trials": [t.number for t in front]}
    lineage = pbt_lineage(study)
    if lineage:
        result["pbt"] = lineage
    return _status_rest(folder, result)


def _status_rest(folder: Path, result: dict[str, Any]) -> dict[str, Any]:
    """What status adds from the run directory: elapsed time, utilisation, Slurm, the ensemble."""
    summary = read_summary(folder)
    result["elapsed_s"] = summary.get("elapsed_s")
    result["utilisation"] = summary.get("utilisation")
    result["stop_reason"] = summary.get("stop_reason")
    from hpwf.slurm._slurm import run_job_state

    result["slurm"] = run_job_state(folder)
    if (folder / ENSEMBLE_DIR / "run.json").exists():
        members = status(folder / ENSEMBLE_DIR)
        result["ensemble"] = {k: members[k] for k in ("complete", "fail", "running", "n_trials")}
    return result


# --- phases ------------------------------------------------------------------------------------
def _record(name: str, search: Search, wf: Workflow, backend: Backend, workers: int | None) -> RunRecord:
    replay_of = getattr(search, "replay_of", None)  # `hpwf.pbt_replay.ReplaySearch`: a resume refuses it
    return RunRecord(
        study_name=name, storage=search.storage, workflow=str(wf.path) if wf.path else None, backend=backend.name,
        options={"n_trials": search.n_trials, "timeout": search.timeout, "seed": search.seed,
                 "workers": workers, "max_failures": search.max_failures, "run_id": secrets.token_hex(6),
                 **({"replay_of": replay_of} if replay_of else {})},
    )


def _member_search(wf: Workflow, storage: str | None, name: str, n: int | None = None) -> Search:
    e = wf.ensemble
    n = n or e.members
    return Search(direction=_member_direction(wf), n_trials=n, sampler="random", pruner="none",
                  ranks_per_trial=e.ranks_per_trial, seed=e.seed, name=name, storage=storage,
                  max_failures=max(n * e.max_retries, 1), retries=e.max_retries)


def _member_direction(wf: Workflow, announce: bool = False) -> str:
    """The ensemble's direction, or the search's when it gives none (said once, on ``announce``)."""
    e = wf.ensemble
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


def _ensemble_phase(wf: Workflow, folder: Path, backend: Backend, workers: int | None, storage: str | None,
                    source_name: str | None = None, members: list[dict[str, Any]] | None = None) -> EnsemblePhase:
    """The members' sub-run in RUN_DIR/ensemble, sharing the search's storage.

    ``members``: the plan entries to train; default: planned once the search phase has
    finished (a selection needs its results), or now for a fixed ``params=`` configuration.
    """
    shared = storage or f"journal:{(folder / DEFAULT_JOURNAL).resolve()}"
    name = f"{source_name or wf.name}-ensemble"
    search = _member_search(wf, shared, name, len(members) if members else None)
    sub = folder / ENSEMBLE_DIR
    record = _record(name, search, wf, backend, workers)
    record.options["direction"] = _member_direction(wf, announce=True)
    phase = EnsemblePhase(sub, record, search, wf, members=members or [])
    phase.record.options["source_study"] = source_name or wf.name
    return phase


def _scored(wf: Workflow, phases: list[Phase]) -> Any:
    """The ensemble to score after the phases: one that trained members here, or one that only
    selects trials; not one whose members run elsewhere (``ensemble=False``: a Slurm job array)."""
    e = wf.ensemble
    if e is None or (e.retrains and not any(isinstance(p, EnsemblePhase) for p in phases)):
        return None
    return e


def _run_phases(phases: list[Phase], backend: Backend, progress: bool, ensemble: Any = None,
                checked: bool = False) -> RunResult:
    """Run the phases on one session; then score the ensemble (unless a signal stopped the run)."""
    for phase in phases if not checked else []:
        _check_fits(phase.search, backend)
    results, interrupted = run_phases(phases, backend, progress)
    first, root = results[0], phases[0].run_dir
    uq = None
    if ensemble is not None and not interrupted:
        from hpwf.ensembles._members import aggregate

        uq = aggregate(root, ensemble)
    return RunResult(root, first.study, first.summary, uq)


def _override(search: Any, overrides: dict[str, Any]) -> Any:
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(search, **changes) if changes else search




def _check_storage(phase: Phase) -> None:
    """Open a named storage and compare an existing study's directions, before any file is written.

    The default (a journal file in the run directory) has nothing to check yet.
    """
    url = phase.search.storage
    if url is None or url == "memory":
        return
    journal = url.removeprefix("journal:").removeprefix("//") if url.startswith("journal:") else (
        url if url.endswith((".journal", ".log")) and "://" not in url else None)
    if journal is not None and not Path(journal).exists():
        return  # a new journal file: opening it would create it (and its folder)
    storage = open_storage(url, phase.folder)
    try:
        study_id = storage.get_study_id_from_name(phase.record.study_name)
    except KeyError:
        return
    have = [d.name.lower() for d in storage.get_study_directions(study_id)]
    if have != phase.search.study_directions:
        raise ConfigError(f"study {phase.record.study_name!r} in that storage has directions {have}, "
                          f"the workflow {phase.search.study_directions}")


def _remove_if_unused(folder: Path) -> None:
    """Remove a run directory this call made if it holds nothing but its lock (and empty folders)."""
    leftovers = [p for p in folder.rglob("*") if not p.is_dir() and p.name != ".lock"]
    if leftovers:
        return
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    folder.rmdir()


def _check_fits(search: Any, backend: Backend) -> None:
    """Refuse group sizes the backend can never hold; say when ranks will stay idle."""
    backend.check()
    biggest = max(search.rank_choices)
    if biggest > backend.slots:
        raise ConfigError(
            f"ranks_per_trial={biggest} needs more ranks than the {backend.slots} that --backend "
            f"{backend.name} runs trials on"
        )
    if len(search.rank_choices) == 1 and backend.slots % biggest:
        say(f"[hpwf] note: {backend.slots % biggest} of {backend.slots} ranks stay idle: "
            f"{backend.slots} is not a multiple of ranks_per_trial={biggest}")



