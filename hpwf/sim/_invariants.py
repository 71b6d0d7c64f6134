"""The invariants a simulated run keeps, checked after every step (`Invariants.after_step`) and at
its end (`Invariants.at_end`).

With a scheduler: an attempt never continues from a checkpoint that was not saved, nor from a step
below the one its trial was marked paused at (`start_step`, when the agent starts it); no paused
trial is woken once the run stopped (defect 10); at the end every RUNNING trial is paused with its
mark and its checkpoint, and every PBT segment's parent is a COMPLETE segment.

After a step only what changed is checked: the trials the ledger moved or the study changed, and
the agents the ledger moved (a check of every trial after every step costs 4,096 x the steps of a
run of 4,096 agents). `at_end` checks everything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optuna.storages import InMemoryStorage
from optuna.trial import TrialState as OT

from hpwf.engine.ledger import AgentRecord, AgentState, Ledger, TrialRecord, TrialState
from hpwf.rundir import FAIL_REASON_ATTR, PAUSED_ATTR, PBT_PARENT, RUN_ATTR, is_paused
from hpwf.sim import _store_faults as store_faults
from hpwf.wire import Assign

if TYPE_CHECKING:
    from hpwf.sim._world import World

# the study states a ledger state agrees with (any other ledger state: RUNNING in the study)
AGREES = {TrialState.TOLD: (OT.COMPLETE, OT.PRUNED, OT.FAIL), TrialState.FAILED: (OT.FAIL,),
          TrialState.REQUEUED: (OT.FAIL,)}


class CheckedStorage(InMemoryStorage):
    """Optuna's in-memory storage that reports a finished trial told again (told twice), counts
    the trials finished, notes which trials changed state, and fails writes on demand."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.finished_ok = 0  # trials COMPLETE or PRUNED
        self.changed: set[int] = set()  # trial numbers whose state changed since the last check
        self.failing_writes = 0  # a fault: the next writes of a trial's state or attrs raise OSError
        self.failing_until = float("-inf")  # a fault: every write fails until then (hpwf.sim._store_faults)
        self.failed_at = float("-inf")  # when a write last failed
        self.paused_marks: dict[int, int] = {}  # trial number -> the step the study last marked it paused at

    def _write(self) -> None:
        if self.world.clock.t < self.failing_until:
            self.failed_at = self.world.clock.t
            raise OSError(5, "Input/output error (simulated outage)", "study.journal")
        if self.failing_writes > 0:
            self.failing_writes -= 1
            self.failed_at = self.world.clock.t
            raise OSError(28, "No space left on device (simulated)")

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        if self.world.clock.t < self.failing_until:
            self._write()
        super().set_study_user_attr(study_id, key, value)

    def create_new_trial(self, study_id: int, template_trial: Any = None) -> int:
        c, w = self.world.c, self.world
        if c is not None and c.store.failing and not w.config.shared and template_trial is None:
            w.violation("a new trial was asked while the store fails")  # (a requeue's template is no ask)
        if self.world.clock.t < self.failing_until:
            self._write()
        return super().create_new_trial(study_id, template_trial)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._write()
        super().set_trial_user_attr(trial_id, key, value)
        if key == PAUSED_ATTR and value is not False:
            self.paused_marks[self.get_trial(trial_id).number] = int(value)

    def set_trial_state_values(self, trial_id: int, state: OT, values: Any = None) -> bool:
        self._write()
        before = self.get_trial(trial_id)
        if before.state.is_finished():
            self.world.violation(f"trial {before.number} told again ({before.state.name} -> {state.name})")
        changed = super().set_trial_state_values(trial_id, state, values)
        if changed:
            self.finished_ok += state in (OT.COMPLETE, OT.PRUNED)
            self.changed.add(before.number)
        return changed


class CheckedLedger(Ledger):
    """The engine's ledger, noting the trials and agents it moves (for `Invariants.after_step`)."""

    def __init__(self, clock: Any) -> None:
        super().__init__(clock)
        self.moved: dict[int, TrialRecord] = {}  # id -> record (records hash by identity: eq=False)
        self.by_number: dict[int, TrialRecord] = {}  # the latest record of each trial
        self.moved_agents: list[AgentRecord] = []
        self.woken: list[int] = []  # trials moved PAUSED -> WAITING (promoted) since the last check

    def add_trial(self, trial: Any, size: int, ticket: int | None = None) -> TrialRecord:
        record = super().add_trial(trial, size, ticket)
        self.moved[id(record)] = self.by_number[record.number] = record
        return record

    def move(self, record: TrialRecord, new: TrialState) -> None:
        if record.state is TrialState.PAUSED and new is TrialState.WAITING:
            self.woken.append(record.number)
        super().move(record, new)
        self.moved[id(record)] = record

    def move_agent(self, agent: AgentRecord, new: AgentState, ticket: int | None = None) -> None:
        super().move_agent(agent, new, ticket)
        self.moved_agents.append(agent)


class Invariants:
    def __init__(self, world: World) -> None:
        self.world = world
        self.checkpoints: dict[int, set[int]] = {}  # trial number -> the steps its saved checkpoints continue from

    def saved(self, number: int, step: int) -> None:
        """An agent saved trial ``number``'s checkpoint, to continue from ``step``."""
        self.checkpoints.setdefault(number, set()).add(step)

    def start_step(self, task: Assign, restore: tuple[int, int] | None) -> int:
        """The step an attempt starts from (0, or the checkpoint its Assign names), checked."""
        w, number = self.world, task.number
        start = restore[1] if restore else 0
        marked = w.storage.paused_marks.get(number)
        if marked is not None and (restore is None or restore[0] != number or start < marked):
            w.violation(f"trial {number}, paused at step {marked}, starts again from step {start} ({restore})")
        if restore is not None and start not in self.checkpoints.get(restore[0], ()):
            w.violation(f"trial {number} continues from step {start} of trial {restore[0]}: no such checkpoint")
        return start

    def after_step(self, ledger: CheckedLedger, stopped: str | None = None) -> None:
        """``stopped``: the stop reason the coordinator had before this step."""
        w = self.world
        if stopped and ledger.woken:
            w.violation(f"paused trial(s) {ledger.woken} promoted after the run stopped ({stopped})")
        ledger.woken.clear()
        finished_ok = w.storage.finished_ok
        if finished_ok > w.n_trials and not w.config.shared:  # (shared: checked per run at the end)
            w.violation(f"{finished_ok} trials finished for a budget of {w.n_trials}")
        records = list(ledger.moved.values())
        records += [r for n in sorted(w.storage.changed) if (r := ledger.by_number.get(n)) is not None]
        ledger.moved.clear()
        w.storage.changed.clear()
        self._agree(ledger, records)
        for agent in ledger.moved_agents:
            if agent.state in (AgentState.BUSY, AgentState.RESERVED) and agent.ticket is None:
                w.violation(f"{agent.where()} is {agent.state.value} without a trial")
        ledger.moved_agents.clear()
        store_faults.check(w)

    def _agree(self, ledger: Ledger, records: list[TrialRecord]) -> None:
        """The ledger's trials (those it still holds) and the study agree on each trial's state."""
        w = self.world
        trials = w.study.get_trials(deepcopy=False)
        for record in records:
            if ledger.trials.get(record.ticket) is not record or record.trial.study is not w.study:
                continue  # told or requeued and forgotten, an older ticket, or an earlier phase's
            state = trials[record.number].state
            if w.config.shared and state == OT.FAIL and _stale(trials[record.number]):
                continue  # another run failed it as stale: this run learns so at its next write of it
            if state not in AGREES.get(record.state, (OT.RUNNING,)):
                w.violation(f"trial {record.number}: ledger {record.state.value}, study {state.name}")

    def at_end(self, ledger: Ledger, stop_reason: str | None) -> None:
        w = self.world
        self._agree(ledger, list(ledger.trials.values()))
        trials = w.study.get_trials(deepcopy=False)
        ours = [t for t in trials if t.user_attrs.get(RUN_ATTR) == w.config.run_id] if w.config.shared else trials
        ok = sum(t.state in (OT.COMPLETE, OT.PRUNED) for t in ours)  # shared: each run its own budget (README)
        if not stop_reason and ok != w.n_trials:
            w.violation(f"the run ended with {ok} trials finished for a budget of {w.n_trials}")
        for t in ours:
            if t.state == OT.RUNNING and not (w.config.scheduler and is_paused(t, w.run_dir)):
                w.violation(f"trial {t.number} left RUNNING in the study")
            elif t.state == OT.RUNNING and t.user_attrs.get(PAUSED_ATTR) not in self.checkpoints.get(t.number, {None}):
                w.violation(f"trial {t.number} left paused at step {t.user_attrs.get(PAUSED_ATTR)}: no such checkpoint")
            parent = t.user_attrs.get(PBT_PARENT)
            if parent is not None and not (0 <= parent < len(trials) and trials[parent].state == OT.COMPLETE):
                w.violation(f"PBT segment {t.number}'s parent {parent} is not a COMPLETE segment")
        for number, state in w.durable_live.items():
            if _stale(trials[number]):
                continue  # another run saw this run's beat stale and ran it again: by design
            if trials[number].state not in (OT.COMPLETE, OT.PRUNED):
                w.violation(f"trial {number} saved a {state} result while it ran, yet ended {trials[number].state.name}"
                            " (trained again)")


def _stale(trial: Any) -> bool:
    """Failed by another run sharing the study, which saw this run's heartbeat stale."""
    return str(trial.user_attrs.get(FAIL_REASON_ATTR, "")).startswith("stale")
