"""The phases of a run, as objects: the search, then the ensemble's members; and running them.

A phase is one coordinator's work: a study in a (sub-)run directory, its budget, and what its
agents run (`Phase.entry`, the name the wire carries). `run_phases` runs them in order on one
`Session`, so the agents connect once; a phase stopped by a signal starts no later phase.
"""

from __future__ import annotations

import warnings
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import optuna
from optuna.trial import TrialState

from hpwf.backends import Backend
from hpwf.engine.loop import Coordinator, STOP_SIGNALS
from hpwf.engine.schedulers import make_scheduler
from hpwf.engine.session import Budget, Session
from hpwf.engine.stops import RESUMABLE_KINDS, StopKind
from hpwf.errors import ConfigError, RunError
from hpwf.progress import Progress, say
from hpwf.rundir import (
    DEFAULT_JOURNAL, FAIL_REASON_ATTR, RunLock, RunRecord, journal_path, make_folder, open_storage, read_summary,
    save_journal_snapshot)
from hpwf.wire import Setup
from hpwf.workflow import Search, Workflow


@dataclass
class PhaseResult:
    """A phase's study and summary."""

    folder: Path
    study: optuna.Study
    summary: dict[str, Any]


@dataclass
class Phase:
    """One coordinator's work. Subclasses say what the agents run and how the study starts."""

    folder: Path
    record: RunRecord
    search: Search
    workflow: Workflow
    fresh: bool = True  # a new study in a new (sub-)run directory, not a resume

    entry = "objective"  # what the agents load from the workflow file (the wire's name)

    @property
    def run_dir(self) -> Path:
        """The whole run's directory (a sub-run's parent)."""
        return self.folder

    def objective(self) -> Any:
        """What agents run when the workflow is made of Python objects (it is pickled)."""
        return self.workflow.objective

    def prepare(self, study: optuna.Study, existing: int) -> None:
        """Before the coordinator starts: queue what must run (nothing, for a search)."""

    def open_study(self) -> tuple[optuna.Study, int]:
        """The phase's study and how many trials it held before (a simulator gives its own)."""
        return _open_study(self)

    def ready(self) -> optuna.Study:
        """Open the study, queue what must run, and only then save ``run.json``: a resume that
        finds ``run.json`` finds every trial of the phase queued (defect 6)."""
        study, existing = self.open_study()
        self.prepare(study, existing)
        self.record.save(self.folder)  # a resume keeps its new budget (status reads it from here)
        return study

    def announce(self) -> None:
        """A line when the phase begins (none, for a search: the progress bar speaks)."""


class SearchPhase(Phase):
    """The hyperparameter search."""


@dataclass
class EnsemblePhase(Phase):
    """The ensemble's members, trials of a sibling study in ``RUN_DIR/ensemble``.

    ``members``: the plan entries to train; empty: planned once the search has finished (a
    selection needs its results). ``rebuild``: queue them into an existing members' study.
    """

    members: list[dict[str, Any]] | None = None
    rebuild: bool = False
    kept: int = 0  # a rebuild: members of the plan trained before, kept as they are

    entry = "ensemble"

    @property
    def run_dir(self) -> Path:
        return self.folder.parent

    def objective(self) -> Any:
        from hpwf.workflow import MemberObjective

        return MemberObjective(self.workflow.ensemble.train)  # type: ignore[union-attr]

    def announce(self) -> None:
        todo = self.search.n_trials or 0
        counts = f"{todo + self.kept} members ({self.kept} kept, {todo} to train)" if self.kept else f"{todo} members"
        say(f"[hpwf] ensemble: {counts} in {self.folder}")

    def source_study(self) -> optuna.Study | None:
        """The search's study the members' configurations are selected from (None: fixed ``params``)."""
        spec, name = self.workflow.ensemble, self.record.options["source_study"]
        return None if spec is None or spec.params is not None else optuna.load_study(
            study_name=name, storage=open_storage(self.search.storage, self.folder))

    def prepare(self, study: optuna.Study, existing: int) -> None:
        """Queue the members to train; a rebuild first retires what an older plan left queued. A
        coordinator killed while it queued them left some (and no ``run.json``): a resume queues the rest."""
        waiting = [] if self.rebuild else [t.user_attrs for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]
        if not self.fresh or self.members is None or (existing and not self.rebuild and not waiting):
            return
        from hpwf.ensembles import plan, same_member, write_selection

        members = self.members
        if self.rebuild:
            _retire_old_plan(study)
        if not members:  # planned now that the search has finished
            spec = self.workflow.ensemble
            assert spec is not None
            planned = plan(spec, self.source_study(), self.run_dir)
            write_selection(self.run_dir, {**planned.as_json(), "calibrate": spec.calibrate,
                                           "source_study": self.record.options["source_study"]})
            members = planned.members
        for attrs in members:
            if not any(same_member(queued, attrs) for queued in waiting):
                study.enqueue_trial({}, user_attrs=attrs)


def run_phases(phases: list[Phase], backend: Backend, progress: bool) -> tuple[list[PhaseResult], bool]:
    """Run ``phases`` on one session; return their results and whether a signal stopped the run."""
    from hpwf.progress import name_trials_in_optuna_warnings
    from hpwf.wire import fresh_report_dir

    name_trials_in_optuna_warnings()
    results: list[PhaseResult] = []
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar speaks instead
    reached = _budgets_reached(phases)
    if reached is not None:  # a resume with nothing to do: no agent is started, nothing waits
        backend.release_unstarted()
        return reached, False
    backend.report_dir = fresh_report_dir(phases[0].folder)  # agents that cannot connect report here
    caught: list[str] = []  # a stop signal between or around phases (a coordinator handles its own)

    def on_signal(signum: int, _frame: Any) -> None:
        caught.append(signal.Signals(signum).name)

    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS} if main else {}
    try:
        with Session(backend) as session:
            for phase in phases:
                if caught and results:
                    return results, True  # no later phase; the last one's state is saved
                results.append(run_phase(phase, backend, session, progress, caught))
                if results[-1].summary.get("stop_kind") in RESUMABLE_KINDS:
                    return results, True  # Ctrl-C, preemption, the walltime warning, the store: no later phase
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        optuna.logging.set_verbosity(verbosity)
    return results, bool(caught)


def run_phase(phase: Phase, backend: Backend, session: Session, progress: bool,
              caught: list[str] | None = None) -> PhaseResult:
    """Open (or create) the phase's study under its run lock and run its coordinator.

    ``run.json`` is saved once `Phase.prepare` has queued the phase's trials (a resume then
    finds them all); a stop signal in ``caught`` (one that came while preparing) stops the
    coordinator at its first turn, with the phase's state saved for a resume.
    """
    search, folder = phase.search, phase.folder
    try:
        make_folder(folder)  # (the run directory is held: an ensemble's sub-run through its descriptor)
    except OSError as exc:
        raise ConfigError(f"--run-dir {folder}: cannot create: {exc.strerror or exc}") from None
    lock = RunLock(folder)
    lock.acquire()
    try:
        study = phase.ready()
        wf = phase.workflow
        import cloudpickle

        payload = None if wf.path else cloudpickle.dumps(phase.objective())
        setup = Setup(str(folder.resolve()), str(wf.path) if wf.path else None, payload, phase.entry, search.heartbeat,
                      n_objectives=len(search.study_directions), threads=search.threads_per_trial)
        before = read_summary(folder) if not phase.fresh else {}
        budget = Budget(
            n_trials=search.n_trials, timeout=search.timeout,
            max_failures=search.max_failures if search.max_failures is not None else (search.n_trials or 100),
            elapsed_before=float(before.get("elapsed_s") or 0.0),
        )
        phase.announce()
        coordinator = Coordinator(
            study, backend, setup, folder, budget, run_id=phase.record.options["run_id"], seed=search.seed,
            ranks_per_trial=search.ranks_per_trial, retries=search.retries, trial_timeout=search.trial_timeout,
            heartbeat=search.heartbeat, own_store=search.storage is None, sample_ahead=search.sample_ahead,
            store_grace=search.store_grace,
            progress=Progress(enabled=progress, notes=True, elapsed_before=budget.elapsed_before,
                              timeout=search.timeout),
            scheduler=make_scheduler(search, study),
        )
        coordinator.store.name = str(search.storage or folder / DEFAULT_JOURNAL)
        if caught:
            coordinator.caught_signal = caught[-1]
        try:
            result = PhaseResult(folder, study, coordinator.run(session))
            save_journal_snapshot(study, journal_path(search.storage, folder))  # a resume replays less
            return result
        except OSError as exc:  # a full disk or quota: the store keeps what was told before
            where = exc.filename or search.storage or folder / DEFAULT_JOURNAL
            raise RunError(f"cannot write {where}: {exc.strerror or exc}; finished trials are kept, "
                           f"`hpwf resume {folder}` goes on once there is room") from None
    finally:
        lock.release()


def _open_study(phase: Phase) -> tuple[optuna.Study, int]:
    """The phase's study and how many trials it held before."""
    search = phase.search
    storage = open_storage(search.storage, phase.folder)
    existing = existing_trials(storage, phase.record.study_name)
    study = optuna.create_study(
        study_name=phase.record.study_name, storage=storage, directions=cast(Any, search.study_directions),
        sampler=search.make_sampler(None if search.seed is None else search.seed + existing),
        pruner=search.make_pruner(), load_if_exists=True,
    )
    if [d.name.lower() for d in study.directions] != search.study_directions:
        raise ConfigError(f"study {study.study_name!r} in that storage has directions "
                          f"{[d.name.lower() for d in study.directions]}, the workflow {search.study_directions}")
    if search.metric_names is not None and study.metric_names != list(search.metric_names):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna calls set_metric_names experimental
            study.set_metric_names(list(search.metric_names))
    return study, existing


def _budgets_reached(phases: list[Phase]) -> list[PhaseResult] | None:
    """The phases' results when every one is a resume whose budget is spent already (one line
    says so); else ``None``."""
    results, why = [], ""
    for phase in phases:
        summary = read_summary(phase.folder)
        if phase.fresh or not summary:
            return None
        search = phase.search
        try:
            study = optuna.load_study(study_name=phase.record.study_name,
                                      storage=open_storage(search.storage, phase.folder))
        except KeyError:
            return None
        if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return None  # a killed coordinator's trials: the run recovers them
        finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        elapsed = float(summary.get("elapsed_s") or 0.0)
        if search.n_trials is not None and finished >= search.n_trials:
            why = f"{finished} of n_trials={search.n_trials} finished"
        elif search.timeout is not None and elapsed >= search.timeout:
            why = f"{elapsed:.0f} s of timeout={search.timeout:g} s spent"
        else:
            return None
        results.append(PhaseResult(phase.folder, study, summary))
    say(f"[hpwf] nothing to do: the budget is already reached ({why}); "
        f"raise it with --n-trials or --timeout to go on")
    return results


def existing_trials(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


def _retire_old_plan(study: optuna.Study) -> None:
    """Fail the members an older plan left waiting or running (we hold the ensemble's run lock)."""
    reason = "superseded: the ensemble was planned again"
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(frozen.number, state=TrialState.FAIL)
    for _ in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial = study.ask()
        trial.set_user_attr(FAIL_REASON_ATTR, reason)
        study.tell(trial, state=TrialState.FAIL)
