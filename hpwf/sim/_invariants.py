"""The invariants a simulated run keeps, checked after every step (`Invariants.after_step`) and at
its end (`Invariants.at_end`).

After a step only what changed is checked: the trials the ledger moved or the study changed, and
the agents the ledger moved (a check of every trial after every step costs 4,096 x the steps of a
run of 4,096 agents). `at_end` checks everything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optuna.storages import InMemoryStorage
from optuna.trial import TrialState as OT

from hpwf.engine.ledger import AgentRecord, AgentState, Ledger, TrialRecord, TrialState

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

    def _write(self) -> None:
        if self.failing_writes > 0:
            self.failing_writes -= 1
            raise OSError(28, "No space left on device (simulated)")

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._write()
        super().set_trial_user_attr(trial_id, key, value)

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

    def add_trial(self, trial: Any, size: int, ticket: int | None = None) -> TrialRecord:
        record = super().add_trial(trial, size, ticket)
        self.moved[id(record)] = self.by_number[record.number] = record
        return record

    def move(self, record: TrialRecord, new: TrialState) -> None:
        super().move(record, new)
        self.moved[id(record)] = record

    def move_agent(self, agent: AgentRecord, new: AgentState, ticket: int | None = None) -> None:
        super().move_agent(agent, new, ticket)
        self.moved_agents.append(agent)


class Invariants:
    def __init__(self, world: World) -> None:
        self.world = world

    def after_step(self, ledger: CheckedLedger) -> None:
        w = self.world
        finished_ok = w.storage.finished_ok
        if finished_ok > w.config.n_trials:
            w.violation(f"{finished_ok} trials finished for a budget of {w.config.n_trials}")
        records = list(ledger.moved.values())
        records += [r for n in sorted(w.storage.changed) if (r := ledger.by_number.get(n)) is not None]
        ledger.moved.clear()
        w.storage.changed.clear()
        self._agree(ledger, records)
        for agent in ledger.moved_agents:
            if agent.state in (AgentState.BUSY, AgentState.RESERVED) and agent.ticket is None:
                w.violation(f"{agent.where()} is {agent.state.value} without a trial")
        ledger.moved_agents.clear()

    def _agree(self, ledger: Ledger, records: list[TrialRecord]) -> None:
        """The ledger's trials (those it still holds) and the study agree on each trial's state."""
        w = self.world
        trials = w.study.get_trials(deepcopy=False)
        for record in records:
            if ledger.trials.get(record.ticket) is not record:
                continue  # told or requeued and forgotten, or an older ticket
            state = trials[record.number].state
            if state not in AGREES.get(record.state, (OT.RUNNING,)):
                w.violation(f"trial {record.number}: ledger {record.state.value}, study {state.name}")

    def at_end(self, ledger: Ledger, stop_reason: str | None) -> None:
        w = self.world
        self._agree(ledger, list(ledger.trials.values()))
        trials = w.study.get_trials(deepcopy=False)
        ok = sum(t.state in (OT.COMPLETE, OT.PRUNED) for t in trials)
        if not stop_reason and ok != w.config.n_trials:
            w.violation(f"the run ended with {ok} trials finished for a budget of {w.config.n_trials}")
        for t in trials:
            if t.state == OT.RUNNING:
                w.violation(f"trial {t.number} left RUNNING in the study")
        for number, state in w.durable_live.items():
            if trials[number].state not in (OT.COMPLETE, OT.PRUNED):
                w.violation(f"trial {number} saved a {state} result while it ran, yet ended {trials[number].state.name}"
                            " (trained again)")
