"""``run``, ``resume`` and ``status``: the Python entry points the CLI is a thin shell over."""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hpwf._protocol import Setup
from hpwf.backends import Backend, make_backend
from hpwf.coordinator import Budget, Coordinator
from hpwf.errors import ConfigError
from hpwf.progress import Progress, say
from hpwf.rundir import RunLock, RunRecord, load_study, open_storage, read_summary
from hpwf.workflow import Workflow, load


@dataclass
class RunResult:
    """What a finished run gives back."""

    run_dir: Path
    study: optuna.Study
    summary: dict[str, Any]


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
) -> RunResult:
    """Run a workflow's search to its budget in a new run directory.

    Args:
        workflow: a workflow file, or a `Workflow` made of Python objects.
        backend: "local" (a Dask LocalCluster) or a `Backend` object.
        workers: agents for the local backend (default: the machine's cores).
        n_trials, timeout, storage, seed: override the workflow's `Search`.
        run_dir: where everything goes (default: ``runs/<name>-<time>``).

    Example:
        >>> result = hpwf.run("workflows/quickstart.py", workers=2)  # doctest: +SKIP
        >>> result.summary["complete"]  # doctest: +SKIP
    """
    wf = workflow if isinstance(workflow, Workflow) else load(workflow)
    overrides = {"n_trials": n_trials, "timeout": timeout, "storage": storage, "seed": seed}
    search = _override(wf.search, overrides)
    chosen = backend if isinstance(backend, Backend) else make_backend(backend, workers=workers)
    folder = Path(run_dir) if run_dir else Path("runs") / f"{wf.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (folder / "run.json").exists():
        raise ConfigError(f"{folder}: already holds a run; continue it with `hpwf resume {folder}`")
    record = RunRecord(
        study_name=wf.name, storage=search.storage,
        workflow=str(wf.path) if wf.path else None, backend=chosen.name,
        options={"n_trials": search.n_trials, "timeout": search.timeout, "seed": search.seed,
                 "workers": workers, "max_failures": search.max_failures,
                 "run_id": secrets.token_hex(6)},
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--run-dir {folder}: cannot create: {exc.strerror or exc}") from None
    return _execute(dataclasses.replace(wf, search=search), chosen, folder, record, progress, fresh=True)


def resume(
    run_dir: str | Path,
    *,
    workflow: Workflow | None = None,
    backend: str | Backend | None = None,
    workers: int | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    progress: bool = True,
) -> RunResult:
    """Continue an interrupted (or finished) run to its budget; completed trials are kept.

    Trials a killed coordinator left RUNNING are failed and run again.
    """
    folder = Path(run_dir)
    record = RunRecord.load(folder)
    if workflow is None:
        if record.workflow is None:
            raise ConfigError(f"{folder}: started from Python objects; resume it with hpwf.resume(..., workflow=...)")
        workflow = load(record.workflow)
    options = dict(record.options)
    options.update({k: v for k, v in {"n_trials": n_trials, "timeout": timeout, "workers": workers}.items() if v is not None})
    search = _override(workflow.search, {k: options.get(k) for k in ("n_trials", "timeout", "seed")} | {"storage": record.storage})
    chosen = backend if isinstance(backend, Backend) else make_backend(backend or record.backend, workers=options.get("workers"))
    record.options = options
    return _execute(dataclasses.replace(workflow, search=search), chosen, folder, record, progress, fresh=False)


def status(run_dir: str | Path) -> dict[str, Any]:
    """Counts by state, the best trial and its params, read from the study itself.

    Example:
        >>> hpwf.status("runs/quickstart")["complete"]  # doctest: +SKIP
        16
    """
    folder = Path(run_dir)
    study = load_study(folder)
    trials = study.get_trials(deepcopy=False)
    count = {s: sum(t.state == s for t in trials) for s in TrialState}
    result: dict[str, Any] = {
        "study": study.study_name, "run_dir": str(folder),
        "complete": count[TrialState.COMPLETE], "pruned": count[TrialState.PRUNED],
        "fail": count[TrialState.FAIL], "running": count[TrialState.RUNNING],
        "waiting": count[TrialState.WAITING], "n_trials": RunRecord.load(folder).options.get("n_trials"),
        "best_value": None, "best_trial": None, "best_params": None,
    }
    if len(study.directions) == 1 and count[TrialState.COMPLETE]:
        best = study.best_trial
        result.update(best_value=best.value, best_trial=best.number, best_params=best.params)
    elif count[TrialState.COMPLETE]:
        result["best_trials"] = [{"number": t.number, "values": t.values, "params": t.params} for t in study.best_trials]
    summary = read_summary(folder)
    result["elapsed_s"] = summary.get("elapsed_s")
    result["utilisation"] = summary.get("utilisation")
    result["stop_reason"] = summary.get("stop_reason")
    return result


def _override(search: Any, overrides: dict[str, Any]) -> Any:
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(search, **changes) if changes else search


def _execute(wf: Workflow, backend: Backend, folder: Path, record: RunRecord, progress: bool, *, fresh: bool) -> RunResult:
    search = wf.search
    _check_fits(search, backend)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar speaks instead
    lock = RunLock(folder)
    lock.acquire()
    try:
        storage = open_storage(search.storage, folder)
        existing = _existing_trials(storage, wf.name)
        study = optuna.create_study(
            study_name=wf.name, storage=storage, directions=search.study_directions,
            sampler=search.make_sampler(None if search.seed is None else search.seed + existing),
            pruner=search.make_pruner(), load_if_exists=True,
        )
        if [d.name.lower() for d in study.directions] != search.study_directions:
            raise ConfigError(f"study {wf.name!r} in that storage has directions "
                              f"{[d.name.lower() for d in study.directions]}, the workflow {search.study_directions}")
        if fresh:
            record.save(folder)
        setup = Setup(str(folder.resolve()), str(wf.path) if wf.path else None,
                      None if wf.path else _pickle(wf.objective))
        summary_before = read_summary(folder) if not fresh else {}
        budget = Budget(
            n_trials=search.n_trials, timeout=search.timeout,
            max_failures=search.max_failures if search.max_failures is not None else (search.n_trials or 100),
            elapsed_before=float(summary_before.get("elapsed_s") or 0.0),
        )
        coordinator = Coordinator(
            study, backend, setup, folder, budget, run_id=record.options["run_id"], seed=search.seed,
            ranks_per_trial=search.ranks_per_trial, progress=Progress(enabled=progress),
        )
        summary = coordinator.run()
        return RunResult(folder, study, summary)
    finally:
        lock.release()


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


def _existing_trials(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


def _pickle(objective: Any) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(objective)
