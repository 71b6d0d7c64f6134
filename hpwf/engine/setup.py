"""How a workflow becomes phases (the search, the ensemble's sub-run), checked before anything is
written: run records, overrides from the command line, the storage's existing study, and whether
the backend can hold the biggest group. The entry points in `hpwf.api` call these."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from typing import Any

import optuna

from hpwf.backends import Backend
from hpwf.engine.phases import EnsemblePhase, Phase, run_phases
from hpwf.ensembles import member_direction, member_search
from hpwf.errors import ConfigError
from hpwf.progress import say
from hpwf.rundir import DEFAULT_JOURNAL, RunRecord, open_storage
from hpwf.workflow import ENSEMBLE_DIR, Search, Workflow


def run_record(name: str, search: Search, wf: Workflow, backend: Backend, workers: int | None) -> RunRecord:
    replay_of = getattr(search, "replay_of", None)  # `hpwf.pbt_replay.ReplaySearch`: a resume refuses it
    return RunRecord(
        study_name=name, storage=search.storage, workflow=str(wf.path) if wf.path else None, backend=backend.name,
        options={"n_trials": search.n_trials, "timeout": search.timeout, "seed": search.seed,
                 "workers": workers, "max_failures": search.max_failures, "run_id": secrets.token_hex(6),
                 "threads_per_trial": search.threads_per_trial,
                 **({"replay_of": replay_of} if replay_of else {})},
    )


def ensemble_phase(wf: Workflow, folder: Path, backend: Backend, workers: int | None, storage: str | None,
                    source_name: str | None = None, members: list[dict[str, Any]] | None = None,
                    kind: type[EnsemblePhase] = EnsemblePhase) -> EnsemblePhase:
    """The members' sub-run in RUN_DIR/ensemble, sharing the search's storage.

    ``members``: the plan entries to train; default: planned once the search phase has
    finished (a selection needs its results), or now for a fixed ``params=`` configuration.
    ``kind``: the phase's class (a simulator's subclass).
    """
    shared = storage or f"journal:{(folder / DEFAULT_JOURNAL).resolve()}"
    name = f"{source_name or wf.name}-ensemble"
    search = member_search(wf, shared, name, len(members) if members else None)
    sub = folder / ENSEMBLE_DIR
    record = run_record(name, search, wf, backend, workers)
    record.options["direction"] = member_direction(wf, announce=True)
    phase = kind(sub, record, search, wf, members=members or [])
    phase.record.options["source_study"] = source_name or wf.name
    return phase


def resumed_ensemble_phase(wf: Workflow, folder: Path, backend: Backend, workers: int | None, storage: str | None,
                           kind: type[EnsemblePhase] = EnsemblePhase) -> EnsemblePhase:
    """The ensemble's sub-run as ``hpwf resume`` finds it: the current plan's, once its
    ``run.json`` was saved (every member queued); else planned afresh."""
    sub = folder / ENSEMBLE_DIR
    if not (sub / "run.json").exists():
        return ensemble_phase(wf, folder, backend, workers, storage, kind=kind)
    record = RunRecord.load(sub)
    search = member_search(wf, record.storage, record.study_name, record.options.get("n_trials"))
    return kind(sub, record, search, wf, fresh=False)


def scored(wf: Workflow, phases: list[Phase]) -> Any:
    """The ensemble to score after the phases: one that trained members here, or one that only
    selects trials; not one whose members run elsewhere (``ensemble=False``: a Slurm job array)."""
    e = wf.ensemble
    if e is None or (e.retrains and not any(isinstance(p, EnsemblePhase) for p in phases)):
        return None
    return e


def run_and_score(phases: list[Phase], backend: Backend, progress: bool, ensemble: Any = None,
                  checked: bool = False) -> tuple[Path, optuna.Study, dict[str, Any], dict[str, Any] | None]:
    """Run the phases on one session; then score the ensemble (unless a signal stopped the run)."""
    for phase in phases if not checked else []:
        check_fits(phase.search, backend)
    results, interrupted = run_phases(phases, backend, progress)
    first, root = results[0], phases[0].run_dir
    uq = None
    if ensemble is not None and not interrupted:
        from hpwf.ensembles import aggregate

        uq = aggregate(root, ensemble)
    return root, first.study, first.summary, uq


def override(search: Any, overrides: dict[str, Any]) -> Any:
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(search, **changes) if changes else search


def check_storage(phase: Phase) -> None:
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


def remove_if_unused(folder: Path) -> None:
    """Remove a run directory this call made if it holds nothing but its lock (and empty folders)."""
    leftovers = [p for p in folder.rglob("*") if not p.is_dir() and p.name != ".lock"]
    if leftovers:
        return
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    folder.rmdir()


def check_fits(search: Any, backend: Backend) -> None:
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
