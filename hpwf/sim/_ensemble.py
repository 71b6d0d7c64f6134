"""The ensemble phase under simulation: after the search, the real `EnsemblePhase` plans K members
from the search's best trials (``hpwf.Ensemble(members=K, top_k=k, seed=s)``: configurations,
seeds, bootstrap members), queues them and only then saves ``ensemble/run.json`` (`Phase.ready`);
a real `Coordinator` on the same session trains them on the simulated agents, with every fault of
the search. A resume builds the phase as ``hpwf resume`` does (`resumed_ensemble_phase`).

Faults of its own, armed by an action and fired while the members are queued (after j of them):
the coordinator's process killed (``plan_kill``: SIGKILL, a resume follows), and a stop signal
(``plan_signal``: caught between the phases, the ensemble's coordinator stops at its first turn).

Invariants: whenever ``ensemble/run.json`` exists, every member of the saved plan is queued in the
study (`planned_queued`); no member trains again once a trial of it completed (`member_started`);
at the end no member completed twice, and a run that ended without a stop has exactly the K members.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState as OT

from hpwf.engine.loop import Coordinator
from hpwf.engine.phases import EnsemblePhase
from hpwf.engine.session import Budget
from hpwf.engine.stops import StopKind
from hpwf.engine.setup import resumed_ensemble_phase
from hpwf.ensembles import read_selection, same_member
from hpwf.errors import ConfigError
from hpwf.rundir import MEMBER, RunRecord, make_folder
from hpwf.sim._invariants import CheckedStorage
from hpwf.wire import Assign, Setup
from hpwf.workflow import ENSEMBLE_DIR, Ensemble, Search, Workflow

if TYPE_CHECKING:
    from hpwf.sim._world import World


class Killed(BaseException):
    """The coordinator's process is killed (SIGKILL) while it queues the members."""


class MembersStorage(CheckedStorage):
    """The members' study's store, where a planning fault fires after the j-th member is queued."""

    def create_new_trial(self, study_id: int, template_trial: Any = None) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)
        fault = self.world.plan_fault
        if fault is not None and template_trial is not None and template_trial.state == OT.WAITING:
            kind, left, name = fault
            if left > 1:
                self.world.plan_fault = (kind, left - 1, name)
            else:
                self.world.plan_fault = None
                self.world.log.append(f"t={self.world.clock.t:.3f} {kind} while the members are queued")
                if kind == "plan_kill":
                    raise Killed()
                self.world.caught.append(name)
        return trial_id


@dataclass
class SimEnsemblePhase(EnsemblePhase):
    """The real phase, with the simulator's in-memory studies (the members' and the search's)."""

    world: Any = None

    def open_study(self) -> tuple[optuna.Study, int]:
        w = self.world
        study = optuna.create_study(storage=w.members_storage, study_name=self.record.study_name, load_if_exists=True,
                                    sampler=optuna.samplers.RandomSampler(seed=w.config.seed), direction="minimize")
        return study, len(study.trials)

    def source_study(self) -> optuna.Study | None:
        return self.world.search_study


def _never_called(member: Any) -> float:  # the simulated agents stand in for train(member)
    raise AssertionError("the simulator trains no member for real")


def workflow(world: World) -> Workflow:
    cfg = world.config
    spec = Ensemble(members=cfg.ensemble, train=_never_called, top_k=cfg.top_k, seed=cfg.seed % 1000,
                    ranks_per_trial=cfg.ranks, direction="minimize")
    return Workflow(objective=_never_called, search=Search(sampler="random", n_trials=cfg.n_trials, seed=cfg.seed),
                    ensemble=spec)


def follows(world: World, stop: StopKind | None) -> bool:
    """After the search's coordinator ended: whether the ensemble began, on the same session (as
    `run_phases`: unless a signal stopped the search or the run failed)."""
    if not world.config.ensemble or world.in_ensemble or (stop and (stop.resumable or stop.fatal)):
        return False
    search_coordinator, search_storage = world.c, world.storage
    assert search_coordinator is not None
    world.invariants.at_end(world.ledger, search_coordinator.stop_reason)  # the search's, in full
    world.search_study, world.in_ensemble = world.study, True
    world.members_storage = MembersStorage(world)
    world.storage, world.plans, world.durable_live, world.ledger.by_number = world.members_storage, {}, {}, {}
    world.ending = False
    try:
        world.c = coordinator(world)
    except Killed:
        world.crash_coordinator()
        return True
    if world.c is None:  # nothing to select from: the run ends there (exit 2)
        world.c, world.storage, world.study, world.in_ensemble = search_coordinator, search_storage, world.search_study, False
        world.ending = True
        return False
    assert world.session is not None
    world.c.begin(world.session)
    return True


def coordinator(world: World) -> Coordinator | None:
    """Build the phase (as ``hpwf resume`` would from the run directory), queue its members, save
    ``run.json`` (`Phase.ready`), and make its coordinator; None if there is nothing to select from."""
    cfg, session = world.config, world.session
    assert session is not None
    phase = resumed_ensemble_phase(workflow(world), world.run_dir, session.backend, None, None, kind=SimEnsemblePhase)
    assert isinstance(phase, SimEnsemblePhase)
    phase.world = world
    make_folder(phase.folder)
    try:
        world.study = phase.ready()
    except ConfigError as exc:  # e.g. no complete trial: `hpwf run` exits 2
        world.log.append(f"t={world.clock.t:.3f} no ensemble: {exc}")
        world.config.ensemble = 0
        return None
    finally:
        world.plan_fault = None  # armed for the first planning only
    planned_queued(world)
    search = phase.search
    setup = Setup(str(phase.folder), None, None, phase.entry, heartbeat_s=cfg.heartbeat)
    budget = Budget(n_trials=search.n_trials, timeout=None,
                    max_failures=search.max_failures if search.max_failures is not None else (search.n_trials or 100))
    world.n_trials = search.n_trials or 0
    c = Coordinator(world.study, session.backend, setup, phase.folder, budget, run_id=phase.record.options["run_id"],
                    seed=search.seed, retries=search.retries, trial_timeout=cfg.trial_timeout,
                    heartbeat=cfg.heartbeat, own_store=search.storage is None, sample_ahead=cfg.sample_ahead,
                    ranks_per_trial=search.ranks_per_trial, store_grace=cfg.store_grace)
    if world.caught:  # a stop signal caught while the members were queued (as `run_phase` does)
        c.caught_signal = world.caught[-1]
        world.caught.clear()
    return c


def planned_queued(world: World) -> None:
    """``ensemble/run.json`` and the study agree: every member of the saved plan is in the study."""
    sub = world.run_dir / ENSEMBLE_DIR
    if not (sub / "run.json").exists():
        return
    record, plan = RunRecord.load(sub), read_selection(world.run_dir).get("plan") or []
    trials = world.study.get_trials(deepcopy=False)
    missing = [e[MEMBER] for e in plan if not any(same_member(t.user_attrs, e) for t in trials)]
    if record.options.get("n_trials") != len(plan) or missing:
        world.violation(f"ensemble/run.json (n_trials={record.options.get('n_trials')}) and the study disagree: "
                        f"member(s) {missing} of the plan of {len(plan)} not queued")


def member_started(world: World, task: Assign, hung_up: bool = False) -> bool:
    """An agent starts a member: False if it carries no member attributes (it fails, as
    `hpwf.Member` makes it); a violation if that member completed already (trained again),
    unless the coordinator had already hung up on this agent (``hung_up``: a frozen agent reads
    an assignment sent before it was dropped; that work is wasted and its result never told)."""
    attrs = task.attrs or {}
    if MEMBER not in attrs:
        return False
    done = [t.number for t in world.study.get_trials(deepcopy=False, states=(OT.COMPLETE,))
            if same_member(t.user_attrs, attrs)]
    if done and not hung_up:
        world.violation(f"member {attrs[MEMBER]} trains again (trial {task.number}); trial {done[0]} completed it")
    return True


def at_end(world: World, stop_reason: str | None) -> None:
    """No member completed twice; without a stop, exactly the K members completed."""
    planned_queued(world)
    done = [int(t.user_attrs.get(MEMBER, -1)) for t in world.study.get_trials(deepcopy=False, states=(OT.COMPLETE,))]
    twice = sorted({m for m in done if done.count(m) > 1})
    if twice:
        world.violation(f"member(s) {twice} completed more than once")
    if not stop_reason and sorted(done) != list(range(world.config.ensemble)):
        world.violation(f"the ensemble ended with members {sorted(done)}, not the {world.config.ensemble} planned")
