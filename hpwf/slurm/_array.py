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
import hashlib
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Iterator, cast

import optuna
from optuna.trial import TrialState

from hpwf.wire._protocol import Assign, Done, Report, Suggest, UserAttr
from hpwf.errors import ConfigError
from hpwf.workflow._loading import Workflow

LOCK_FILE = "ensemble-plan.lock"
# Attribute names the engine uses too: a run's own trials, liveness, attempts, retries.
RUN_ATTR, HEARTBEAT_ATTR, ATTEMPT_ATTR, RETRY_ATTR = "hpwf:run", "hpwf:heartbeat", "hpwf:attempt", "hpwf:retry_of"
HEARTBEAT_S = 10.0


@dataclasses.dataclass(frozen=True)
class Claimed:
    """The trial this task runs: its number, the task for `hpwf.worker._agent.run_trial`, its storage id."""

    task: Assign
    trial_id: int


def run_member(run_dir: str | Path, member: int, workflow: str | Path | None = None,
               storage: str | None = None) -> int:
    """Train member ``member`` of the run's ensemble, unless it is trained already.

    Returns:
        0 when the member is (or was already) trained, 1 when its training failed.

    Raises:
        ConfigError: no ensemble in the workflow, no such member, or no finished search to
            take the top-k configurations from.
    """
    from hpwf.workflow._loading import load

    folder = Path(run_dir).absolute()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    comm = _world()
    rank = comm.Get_rank() if comm is not None else 0
    claimed: Claimed | None = None
    error: str | None = None
    if workflow is None:
        from hpwf.rundir._run import RunRecord

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
            claimed = _claim(study, member, wf.ensemble.members, str(record.options["run_id"]), wf.ensemble.seed)
        except ConfigError as exc:
            error = str(exc)
    if comm is not None:
        claimed, error = comm.bcast((claimed, error), root=0)
    if error:
        raise ConfigError(error)
    if claimed is None:
        if rank == 0:
            _say(f"member {member} is trained already (a complete trial in {folder / 'ensemble'}); nothing to do")
            if not (folder / "uq_metrics.json").exists():
                _aggregate_when_all_done(folder, study, wf.ensemble.members)
        return 0
    done = _train(wf, folder, claimed, study, comm)
    if rank != 0:
        return 0
    assert study is not None
    ok = _tell(study, claimed, done, folder)
    if ok:
        _aggregate_when_all_done(folder, study, wf.ensemble.members)
    return 0 if ok else 1


def prepare(folder: Path, wf: Workflow, storage: str | None = None) -> Any:
    """The member study in ``folder/ensemble`` with one WAITING trial per member; made once.

    Returns the sub-run's `hpwf.rundir._run.RunRecord`. Safe to call from many tasks at once.
    """
    from hpwf.api import ENSEMBLE_DIR, _member_direction, _member_search
    from hpwf.ensembles._members import plan
    from hpwf.rundir._run import DEFAULT_JOURNAL, RUN_FILE, RunRecord

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
        direction = _member_direction(wf)
        search = _member_search(wf, shared, name)
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


def _claim(study: optuna.Study, member: int, members: int, run_id: str, seed: int) -> Claimed | None:
    """Move this member's WAITING trial to RUNNING (queueing a new attempt if it has none)."""
    from hpwf.ensembles._members import CONFIG, MEMBER, SEED, SOURCE

    mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(MEMBER) == member]
    if not mine:
        raise ConfigError(f"--member {member}: the ensemble has members 0..{members - 1}")
    if any(t.state == TrialState.COMPLETE for t in mine):
        return None
    for t in mine:
        if t.state == TrialState.RUNNING:  # its task was killed: this task is the member's only runner
            stale = optuna.trial.Trial(study, t._trial_id)
            stale.set_user_attr("fail_reason", "interrupted: its array task ended; the member runs again")
            study.tell(stale, state=TrialState.FAIL)
    if not any(t.state == TrialState.WAITING for t in mine):
        last = max(mine, key=lambda t: t.number)
        attrs = {k: last.user_attrs[k] for k in (MEMBER, CONFIG, SOURCE, SEED) if k in last.user_attrs}
        attrs.update({RETRY_ATTR: last.number, ATTEMPT_ATTR: int(last.user_attrs.get(ATTEMPT_ATTR, 0)) + 1})
        study.enqueue_trial({}, user_attrs=attrs)
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if t.user_attrs.get(MEMBER) != member:
            continue
        if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):  # compare-and-set
            trial = optuna.trial.Trial(study, t._trial_id)
            trial.set_user_attr(RUN_ATTR, run_id)
            trial.set_user_attr(HEARTBEAT_ATTR, time.time())
            attrs = {k: v for k, v in t.user_attrs.items() if k in (MEMBER, CONFIG, SOURCE, SEED)}
            fields = {f.name for f in dataclasses.fields(Assign)}
            extra: dict[str, Any] = {"ticket": t.number} if "ticket" in fields else {}  # messages' key, where used
            task = Assign(number=t.number, params={}, distributions={}, seed=_trial_seed(seed, t.number),
                          attrs=attrs, **extra)
            return Claimed(task, t._trial_id)
    raise ConfigError(f"--member {member}: another process took its trial; is a second task of this member running?")


def _train(wf: Workflow, folder: Path, claimed: Claimed, study: optuna.Study | None, comm: Any) -> Done:
    """Run the member's training here (on every rank of a multi-rank member)."""
    from hpwf.worker._agent import run_trial
    from hpwf.api import ENSEMBLE_DIR
    from hpwf.ensembles._members import MemberObjective
    from hpwf.workflow._trial import Group

    assert wf.ensemble is not None
    trial = optuna.trial.Trial(study, claimed.trial_id) if study is not None else None
    objective = MemberObjective(wf.ensemble.train)
    sub = folder / ENSEMBLE_DIR
    with _heartbeat(trial):
        if comm is None:
            return run_trial(objective, claimed.task, sub, _answerer(trial))
        return run_trial(objective, claimed.task, sub, _answerer(trial),
                         Group(comm.Get_rank(), comm.Get_size(), comm), lambda v: comm.bcast(v, root=0))


def _answerer(trial: optuna.Trial | None) -> Any:
    """What the coordinator would answer a trial's requests, done here against the storage."""

    def answer(message: Any) -> Any:
        assert trial is not None, "only rank 0 of a member talks to the storage"
        if isinstance(message, Suggest):
            return _suggest(trial, message.name, message.distribution)
        if isinstance(message, Report):
            trial.report(message.value, message.step)
            return trial.should_prune()
        if isinstance(message, UserAttr):
            trial.set_user_attr(message.key, message.value)
            return None
        raise TypeError(f"unexpected request {message!r}")

    return answer


def _suggest(trial: optuna.Trial, name: str, dist: Any) -> Any:
    """Sample with the public ``suggest_*`` API, as the coordinator does."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"unsupported distribution {dist!r}")


def _tell(study: optuna.Study, claimed: Claimed, done: Done, folder: Path) -> bool:
    """Record the result (and result.json, as the coordinator writes it); True unless it failed."""
    from hpwf.worker._agent import trial_folder
    from hpwf.api import ENSEMBLE_DIR

    trial = optuna.trial.Trial(study, claimed.trial_id)
    if done.state == "complete" and done.values:
        frozen = study.tell(trial, done.values[0])
    elif done.state == "pruned":
        frozen = study.tell(trial, state=TrialState.PRUNED)
    else:
        reason = (done.error or "failed").strip().splitlines()[-1]
        trial.set_user_attr("fail_reason", reason[:1000])
        if done.error:
            trial.set_user_attr("traceback", done.error[-8000:])
        frozen = study.tell(trial, state=TrialState.FAIL)
        _say(f"member {claimed.task.attrs and claimed.task.attrs.get('member')} (trial {frozen.number}) failed: {reason}")
    out = trial_folder(folder / ENSEMBLE_DIR, frozen.number)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "result.json").exists():  # (an agent that writes its own durable result.json keeps it)
        result = {"number": frozen.number, "state": frozen.state.name, "values": frozen.values,
                  "params": frozen.params, "duration_s": round(done.duration, 3)}
        (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    if frozen.state != TrialState.FAIL:
        _say(f"member {claimed.task.attrs and claimed.task.attrs.get('member')} (trial {frozen.number}) "
             f"{frozen.state.name.lower()}: {frozen.value} in {done.duration:.1f} s")
    return frozen.state != TrialState.FAIL


def _aggregate_when_all_done(folder: Path, study: optuna.Study | None, members: int) -> None:
    """The last member to finish combines the members' predictions (``uq_metrics.json``)."""
    from hpwf.ensembles._members import MEMBER, aggregate

    if study is None:
        return
    done = {t.user_attrs.get(MEMBER) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    if len(done) < members:
        return
    with _locked(folder / LOCK_FILE):
        try:
            aggregate(folder)
        except ConfigError as exc:  # no member saved predictions: nothing to combine
            _say(f"no UQ metrics: {exc}")
            return
    _say(f"all {members} members trained; UQ metrics in {folder / 'uq_metrics.json'}")


def _open(folder: Path, name: str, url: str | None, create: bool = True, direction: str = "minimize") -> optuna.Study:
    from hpwf.rundir._run import open_storage

    storage = open_storage(url, folder)
    if not create:
        try:
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            raise ConfigError(f"{folder}: study {name!r} not found in its storage") from None
    return optuna.create_study(study_name=name, storage=storage, direction=cast(Any, direction), load_if_exists=True)


def _trial_seed(seed: int, number: int) -> int:
    """The seed the coordinator gives trial ``number`` of a seeded study (`Coordinator._trial_seed`)."""
    return int(hashlib.sha256(f"{seed}::{number}".encode()).hexdigest()[:8], 16)


def _world() -> Any:
    """COMM_WORLD when this task runs the member on several MPI ranks, else None."""
    from hpwf.worker._topology import LAUNCHERS, placement

    import os

    if not any(rank_var in os.environ for _, rank_var, *_ in LAUNCHERS) or placement().size < 2:
        return None
    from mpi4py import MPI

    return MPI.COMM_WORLD


@contextlib.contextmanager
def _heartbeat(trial: optuna.Trial | None) -> Iterator[None]:
    """Stamp the trial's heartbeat while it trains, so a coordinator sees it alive."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                trial.set_user_attr(HEARTBEAT_ATTR, time.time())  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - a missed beat is not worth ending the member for
                pass

    thread = threading.Thread(target=beat, name="hpwf-member-heartbeat", daemon=True) if trial else None
    if thread:
        thread.start()
    try:
        yield
    finally:
        stop.set()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _say(text: str) -> None:
    from hpwf.progress import say

    say(f"[hpwf] {text}")


# --- the command line --------------------------------------------------------------------------
def add_member_parser(subparsers: Any) -> None:
    """Add ``hpwf ensemble-member RUN_DIR --member I [--workflow WF] [--storage URL]``."""
    p = subparsers.add_parser("ensemble-member", help="train one ensemble member (a Slurm array task)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--member", type=int, required=True, help="the member's index, e.g. $SLURM_ARRAY_TASK_ID")
    p.add_argument("--workflow", type=Path, help="the workflow file (default: the one run.json names)")
    p.add_argument("--storage", help="Optuna storage for an ensemble-only workflow (default: a journal in the run dir)")


def member_command(args: argparse.Namespace) -> int:
    """``hpwf ensemble-member``: 0 trained (or already), 1 the member failed, 2 bad input."""
    if args.member < 0:
        raise ConfigError(f"--member must be >= 0, not {args.member}")
    return run_member(args.run_dir, args.member, args.workflow, args.storage)
