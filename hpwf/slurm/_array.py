"""One ensemble member per Slurm array task: ``hpwf ensemble-member RUN_DIR --member I``.

`hpwf submit --ensemble-array` submits the members as a job array whose task I runs this
command with ``--member $SLURM_ARRAY_TASK_ID``. Every task works in the run's member study
(``RUN_DIR/ensemble``, the same study ``hpwf run`` would fill), and runs exactly its own member:

- The first task to start plans the members (under a file lock): the study is created and
  one WAITING trial per member is enqueued, with the user attributes member/config/seed
  (`hpwf.ensemble.plan`; top-k configurations come from the finished search).
- A task claims its member's WAITING trial by moving it to RUNNING in the storage (a
  compare-and-set: no other process can run it too), trains it in this process and tells
  the result. A member that already has a COMPLETE trial is never trained again: the task
  says so and exits 0. A trial its member left RUNNING (a killed task) is failed first.
- A failed member exits 1; the array task requeues itself and the member trains again in a
  new trial (``hpwf:retry_of`` names the failed one). Bad input exits 2 and is not retried.
- The task that finds every member complete writes ``uq_metrics.json`` (`hpwf.ensemble.aggregate`).

A member of ``ranks_per_trial = K > 1`` runs as K MPI ranks of the array task (srun or
mpirun): rank 0 talks to the storage and shares the claimed trial with the others.

Example (inside an array task)::

    python -P -m hpwf ensemble-member runs/uq --member "$SLURM_ARRAY_TASK_ID"
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import secrets
from pathlib import Path
from typing import Any, Iterator, cast

import optuna
from optuna.trial import TrialState

from hpwf.errors import ConfigError
from hpwf.rundir import MEMBER
from hpwf.slurm._array_study import Claimed, answerer, claim, heartbeat, say, tell
from hpwf.wire import Done
from hpwf.workflow import Workflow

LOCK_FILE = "ensemble-plan.lock"


def run_member(run_dir: str | Path, member: int, workflow: str | Path | None = None,
               storage: str | None = None) -> int:
    """Train member ``member`` of the run's ensemble, unless it is trained already.

    Returns:
        0 when the member is (or was already) trained, 1 when its training failed.

    Raises:
        ConfigError: no ensemble in the workflow, no such member, or no finished search to
            take the top-k configurations from.
    """
    from hpwf.workflow import load

    folder = Path(run_dir).absolute()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    comm = _world()
    rank = comm.Get_rank() if comm is not None else 0
    claimed: Claimed | None = None
    error: str | None = None
    if workflow is None:
        from hpwf.rundir import RunRecord

        recorded = RunRecord.load(folder).workflow
        if recorded is None:
            raise ConfigError(f"{folder}: started from Python objects; give --workflow FILE")
        workflow = recorded
    wf = load(workflow)
    if wf.ensemble is None:
        raise ConfigError(f"{wf.path}: no `ensemble = hpwf.Ensemble(...)` defined")
    study = None
    if rank == 0:
        try:
            record = prepare(folder, wf, storage)
            study = _open(folder, record.study_name, record.storage)
            claimed = claim(study, member, wf.ensemble.members, str(record.options["run_id"]), wf.ensemble.seed)
        except ConfigError as exc:
            error = str(exc)
    if comm is not None:
        claimed, error = comm.bcast((claimed, error), root=0)
    if error:
        raise ConfigError(error)
    if claimed is None:
        if rank == 0:
            say(f"member {member} is trained already (a complete trial in {folder / 'ensemble'}); nothing to do")
            if not (folder / "uq_metrics.json").exists():
                _aggregate_when_all_done(folder, study, wf.ensemble.members)
        return 0
    done = _train(wf, folder, claimed, study, comm)
    if rank != 0:
        return 0
    assert study is not None
    ok = tell(study, claimed, done, folder)
    if ok:
        _aggregate_when_all_done(folder, study, wf.ensemble.members)
    return 0 if ok else 1


def prepare(folder: Path, wf: Workflow, storage: str | None = None) -> Any:
    """The member study in ``folder/ensemble`` with one WAITING trial per member; made once.

    Returns the sub-run's `hpwf.rundir._run.RunRecord`. Safe to call from many tasks at once.
    """
    from hpwf.ensembles import member_direction, member_search, plan
    from hpwf.rundir import DEFAULT_JOURNAL, RUN_FILE, RunRecord
    from hpwf.workflow import ENSEMBLE_DIR

    assert wf.ensemble is not None
    sub = folder / ENSEMBLE_DIR
    if wf.search is not None and not (folder / RUN_FILE).exists():  # checked before anything is written
        raise ConfigError(f"{folder}: no search run here yet; the ensemble takes its top-k from it")
    with _locked(folder / LOCK_FILE):
        if (sub / RUN_FILE).exists():
            return RunRecord.load(sub)
        root = RunRecord.load(folder) if (folder / RUN_FILE).exists() else None
        source = None
        if wf.search is not None:
            if root is None:
                raise ConfigError(f"{folder}: no search run here yet; the ensemble takes its top-k from it")
            source = _open(folder, root.study_name, root.storage, create=False)
        shared = (root.storage if root else storage) or f"journal:{(folder / DEFAULT_JOURNAL).resolve()}"
        name = f"{root.study_name if source is not None and root else wf.name}-ensemble"
        members = plan(wf.ensemble, source, folder).members
        direction = member_direction(wf)
        search = member_search(wf, shared, name)
        record = RunRecord(
            study_name=name, storage=shared, workflow=str(wf.path) if wf.path else None, backend="local",
            options={"n_trials": search.n_trials, "timeout": None, "seed": search.seed, "workers": None,
                     "max_failures": search.max_failures, "run_id": secrets.token_hex(6),
                     "direction": direction, "launched_by": "slurm-array"},
        )
        study = _open(folder, name, shared, direction=direction)
        if not study.get_trials(deepcopy=False):
            for attrs in members:
                study.enqueue_trial({}, user_attrs=attrs)
        sub.mkdir(parents=True, exist_ok=True)
        record.save(sub)
        if root is None:  # an ensemble-only workflow: the run dir's own record points at the members
            dataclasses.replace(record, storage=storage).save(folder)
        return record


def _train(wf: Workflow, folder: Path, claimed: Claimed, study: optuna.Study | None, comm: Any) -> Done:
    """Run the member's training here (on every rank of a multi-rank member)."""
    from hpwf.worker import run_trial
    from hpwf.workflow import ENSEMBLE_DIR, Group, MemberObjective

    assert wf.ensemble is not None
    trial = optuna.trial.Trial(study, claimed.trial_id) if study is not None else None
    objective = MemberObjective(wf.ensemble.train)
    sub = folder / ENSEMBLE_DIR
    with heartbeat(trial):
        if comm is None:
            return run_trial(objective, claimed.task, sub, answerer(trial))
        return run_trial(objective, claimed.task, sub, answerer(trial),
                         Group(comm.Get_rank(), comm.Get_size(), comm), lambda v: comm.bcast(v, root=0))


def _aggregate_when_all_done(folder: Path, study: optuna.Study | None, members: int) -> None:
    """The last member to finish combines the members' predictions (``uq_metrics.json``)."""
    from hpwf.ensembles import aggregate

    if study is None:
        return
    done = {t.user_attrs.get(MEMBER) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    if len(done) < members:
        return
    with _locked(folder / LOCK_FILE):
        try:
            aggregate(folder)
        except ConfigError as exc:  # no member saved predictions: nothing to combine
            say(f"no UQ metrics: {exc}")
            return
    say(f"all {members} members trained; UQ metrics in {folder / 'uq_metrics.json'}")


def _open(folder: Path, name: str, url: str | None, create: bool = True, direction: str = "minimize") -> optuna.Study:
    from hpwf.rundir import open_storage

    storage = open_storage(url, folder)
    if not create:
        try:
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            raise ConfigError(f"{folder}: study {name!r} not found in its storage") from None
    return optuna.create_study(study_name=name, storage=storage, direction=cast(Any, direction), load_if_exists=True)


def _world() -> Any:
    """COMM_WORLD when this task runs the member on several MPI ranks, else None."""
    from hpwf.workflow import LAUNCHERS, placement

    import os

    if not any(rank_var in os.environ for _, rank_var, *_ in LAUNCHERS) or placement().size < 2:
        return None
    from mpi4py import MPI

    return MPI.COMM_WORLD


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    from hpwf.rundir import open_file

    with open_file(path, "a", make_parents=True) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- the command line --------------------------------------------------------------------------
def member_command(args: argparse.Namespace) -> int:
    """``hpwf ensemble-member``: 0 trained (or already), 1 the member failed, 2 bad input."""
    if args.member < 0:
        raise ConfigError(f"--member must be >= 0, not {args.member}")
    return run_member(args.run_dir, args.member, args.workflow, args.storage)
