"""The engine under deterministic simulation (`hpwf.sim`): seeded schedules of faults, and
Hypothesis's stateful testing to find and shrink new ones. A failure prints the line that
replays it (``python -m hpwf.sim --seed N``) or, from Hypothesis, the shrunk rule sequence."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hpwf.rundir import FAIL_REASON_ATTR, MEMBER
from hpwf.sim import Config, World, finish, run, run_seed
from hpwf.sim._config import MAX_RESUMES
from hpwf.sim._store_faults import outage

CHUNK = 25
CHUNKS = 16  # 400 seeds (about 20 s of CPU)


@pytest.mark.parametrize("first", range(0, CHUNK * CHUNKS, CHUNK))
def test_seeded_schedules_keep_every_invariant(first: int) -> None:
    failed = []
    for seed in range(first, first + CHUNK):
        outcome = run_seed(seed)
        if outcome.violations:
            failed.append(f"{outcome.replay_line()}: {outcome.violations[0]}")
    assert not failed, "\n".join(failed)


def test_a_seed_replays_bit_for_bit() -> None:
    def trace(seed: int) -> tuple[object, ...]:
        with tempfile.TemporaryDirectory() as tmp:
            config = Config.draw(seed)
            world = run(config, [("advance", 2.0), ("crash", 3), ("freeze", 1, 5.0, True), ("kill_coordinator",),
                                 ("signal", "SIGTERM")], Path(tmp))
            return (world.steps, world.clock.t, tuple(world.log),
                    tuple((t.number, t.state.name, t.values, tuple(sorted(t.params.items()))) for t in world.study.trials))

    for seed in (3, 11):
        assert trace(seed) == trace(seed)


def test_the_simulator_catches_an_abort_sent_to_an_mpi_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """The invariants can fail: with defect 1 put back (an Abort to the ranks of a timed-out
    trial), the simulator reports it."""
    from hpwf.engine.loop import Coordinator
    from hpwf.wire._channel import send_quietly
    from hpwf.wire._protocol import Abort

    original = Coordinator.fail

    def abort_too(self, record, reason, *args, **kwargs):  # type: ignore[no-untyped-def]
        for agent in list(record.working):
            send_quietly(agent.conn, Abort(record.ticket, reason))
        original(self, record, reason, *args, **kwargs)

    monkeypatch.setattr(Coordinator, "fail", abort_too)
    config = Config(seed=1, agents=2, hosts=1, group_mode="mpi", n_trials=12, trial_timeout=3.0, longest=600.0)
    world = run(config, [])
    assert any("an MPI rank, got an Abort" in v for v in world.violations), world.violations


def test_the_simulator_catches_a_graceful_stop_that_trains_finished_work_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 9 put back (a stop fails running trials without looking at their durable result):
    a result saved while its `Done` was on the wire is trained again, and an invariant says so;
    the same schedule on the engine as it is keeps every invariant."""
    from hpwf.engine.loop import Coordinator
    from hpwf.engine.stops import Why

    config = Config(seed=1, agents=2, hosts=1, n_trials=8, longest=1.0, heartbeat=2.0)
    schedule = [("delay", 0, 0.5), ("delay", 1, 0.5), ("advance", 2.0), ("signal", "SIGTERM")]
    assert run(config, schedule).violations == []
    original = Coordinator.fail

    def forgets_durable(self, record, reason, traceback_text=None, why=Why.FAILED):  # type: ignore[no-untyped-def]
        if why is Why.INTERRUPTED:
            monkeypatch.setattr(self.outcomes, "tell_durable", lambda trial: False)
        original(self, record, reason, traceback_text, why)

    monkeypatch.setattr(Coordinator, "fail", forgets_durable)
    violations = run(config, schedule).violations
    assert any("saved a complete result while it ran, yet ended FAIL (trained again)" in v for v in violations), violations


def test_seeds_with_a_scheduler_pause_and_resume_trials_under_faults() -> None:
    """One seed in four draws a scheduler: its trials report steps, pause with a checkpoint and
    resume from it (halving), or continue from their parent segment's (PBT), among the faults."""
    import random

    from hpwf.sim import draw_actions

    seen: dict[str, list[int]] = {}
    for seed in range(60):
        config = Config.draw(seed)
        if config.scheduler is None:
            continue
        rng = random.Random(seed ^ 0x5EED)
        world = run(config, draw_actions(rng, config, rng.randint(0, 12)))
        assert world.violations == [], world.violations
        restores = sum(bool(t.user_attrs.get("hpwf:restore")) for t in world.study.trials)
        saved = sum(len(steps) for steps in world.invariants.checkpoints.values())
        totals = seen.setdefault(config.scheduler, [0, 0, 0])
        totals[0], totals[1], totals[2] = totals[0] + 1, totals[1] + saved, totals[2] + restores
    assert sorted(seen) == ["asha-resume", "hyperband-resume", "pbt"], seen
    assert all(runs and saved and restores for runs, saved, restores in seen.values()), seen


def test_the_simulator_catches_a_promotion_after_a_time_budget_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 10 put back (`promote` ignores the stop; the fix is shown by
    tests/test_schedulers.py::test_after_a_time_budget_stop_paused_trials_stay_paused): a paused
    trial is woken after the time budget stopped the run, and an invariant says so on seed 2,909 and
    on a short schedule; the engine as it is keeps every invariant on both."""
    from hpwf.engine import pausing

    short = Config(seed=5, agents=4, hosts=2, n_trials=16, time_budget=2.0, longest=30.0, scheduler="asha-resume",
                   steps=8)
    seed_2909 = run_seed(2909)
    assert seed_2909.config.scheduler == "asha-resume" and seed_2909.config.time_budget and seed_2909.violations == []
    assert run(short, []).violations == []
    original = pausing.promote

    def promote_after_stop(c, always=False):  # type: ignore[no-untyped-def]
        reason, c.stop_reason = c.stop_reason, None
        try:
            original(c, always)
        finally:
            c.stop_reason = reason

    monkeypatch.setattr(pausing, "promote", promote_after_stop)
    for violations in (run_seed(2909).violations, run(short, []).violations):
        assert any("promoted after the run stopped (time budget reached)" in v for v in violations), violations


def test_a_hung_rank_of_a_timed_out_mpi_trial_is_retired_and_the_run_ends() -> None:
    """Found by the soak (seed 1,001,269): an MPI trial timed out, its leader's `Done` came back
    late, its other rank hung after it (still beating). Its ranks were never reclaimed (the linger
    clock started only from a `Done` of a live trial), no group could form, the run never ended."""
    outcome = run_seed(1_001_269)
    assert outcome.config.group_mode == "mpi" and ("hang_rank", 6712) in outcome.actions
    assert outcome.violations == []


def _members(world: World) -> list[int]:
    return sorted(int(t.user_attrs[MEMBER]) for t in world.study.trials if t.state.name == "COMPLETE")


ENSEMBLE = Config(seed=5, agents=4, hosts=2, n_trials=6, heartbeat=2.0, longest=1.0, ensemble=4, top_k=2)


@pytest.mark.parametrize("fault", [("plan_kill", 2), ("plan_signal", 1, "SIGTERM"), ("plan_signal", 4, "SIGUSR1")])
def test_an_ensemble_after_the_search_trains_each_member_once_despite_a_stop_while_it_is_planned(
        fault: tuple[object, ...]) -> None:
    """The real ensemble phase plans 4 members from the search's best 2 trials; the coordinator is
    killed (SIGKILL) after 2 members were queued, or a stop signal comes while they are queued.
    The resume trains exactly the 4 planned members, each once. The kill failed before the fix:
    `EnsemblePhase.prepare` queued nothing when the study held members, and the 2 unqueued ones
    ran as trials without member attributes."""
    world = run(ENSEMBLE, [fault, ("advance", 30.0), ("crash", 1), ("advance", 5.0), ("kill_coordinator",)])
    assert world.violations == []
    assert world.in_ensemble and world.resumes >= 1 and any(fault[0] in line for line in world.log)
    assert _members(world) == [0, 1, 2, 3]


def test_seeds_with_an_ensemble_are_drawn_with_faults_while_it_is_planned() -> None:
    drawn = [run_seed(seed) for seed in range(400) if Config.draw(seed).ensemble]
    assert len(drawn) >= 40
    assert {a[0] for o in drawn for a in o.actions} >= {"plan_kill", "plan_signal", "crash", "kill_coordinator"}
    assert all(o.violations == [] for o in drawn[:5])
    # found by the soak: a search with no complete trial has no ensemble to plan (`hpwf run` exits 2);
    # its MPI ranks were told to stop as if the run went on
    assert run_seed(1_000_203).violations == []


def test_the_simulator_catches_a_run_json_saved_before_every_member_is_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 6 put back (``ensemble/run.json`` saved before `prepare` queued every member): a
    coordinator killed while it queues them leaves a run.json that the study does not match."""
    from hpwf.engine.phases import Phase

    def save_first(self):  # type: ignore[no-untyped-def]
        study, existing = self.open_study()
        self.record.save(self.folder)
        self.prepare(study, existing)
        return study

    monkeypatch.setattr(Phase, "ready", save_first)
    world = run(ENSEMBLE, [("plan_kill", 2)])
    assert any("ensemble/run.json (n_trials=4) and the study disagree: member(s) [2, 3]" in v for v in world.violations)


@pytest.mark.parametrize("then", ["silent", "die"])
def test_a_half_sent_frame_costs_its_agent_only(then: str) -> None:
    """An agent sends the first half of its `Done`'s real wire frame, then falls silent for good
    or dies: the coordinator reads the half frame without waiting for the rest and drops the agent
    within the silence limit (the simulator checks both); the trial's result, saved in its folder
    before the Done, is told from there, not trained again."""
    config = Config(seed=3, agents=3, hosts=1, n_trials=8, retries=1, heartbeat=2.0, longest=1.0)
    world = run(config, [("half_frame", 0, then), ("advance", 60.0)])
    assert world.violations == []
    assert any("a1 sent half a frame" in line for line in world.log)
    assert [t.state.name for t in world.study.trials] == ["COMPLETE"] * 8


def test_the_simulator_catches_a_read_that_waits_for_the_rest_of_a_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 7 put back (the coordinator reads a readable connection until a whole message came,
    as `Connection.recv` does): a half-sent frame blocks the step, and the simulator says so."""
    from hpwf.sim._net import SimConn, WouldBlock

    original = SimConn.take

    def recv_whole(self):  # type: ignore[no-untyped-def]
        messages = original(self)
        if self.frames.partial and not messages:
            raise WouldBlock("waiting for the rest of a frame")
        return messages

    monkeypatch.setattr(SimConn, "take", recv_whole)
    world = run(Config(seed=3, agents=3, hosts=1, n_trials=8, heartbeat=2.0, longest=1.0),
                [("half_frame", 0, "silent"), ("advance", 60.0)])
    assert any("escaped Coordinator.step" in v and "WouldBlock" in v for v in world.violations), world.violations


def test_a_groups_other_ranks_pause_and_resume_with_their_leader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As `hpwf.Trial.report` shares the scheduler's decision with every rank, a group's other
    ranks leave the trial when its leader pauses (or ends) it, and start again with it from the
    checkpoint; before, they ran the whole trial out and reported as members much later."""
    from hpwf.sim import _agents

    wrote, left = [], []
    write = _agents.write_result

    def noted_write(run_dir, number, state, *args, **kwargs):  # type: ignore[no-untyped-def]
        wrote.append((number, state, world_clock()))
        return write(run_dir, number, state, *args, **kwargs)

    def leave(self, epoch):  # type: ignore[no-untyped-def]
        if self.task is not None:
            left.append((self.task.number, world_clock()))
        original_leave(self, epoch)

    original_leave = _agents.SimAgent.leave
    monkeypatch.setattr(_agents, "write_result", noted_write)
    monkeypatch.setattr(_agents.SimAgent, "leave", leave)
    config = Config(seed=4, agents=4, hosts=2, group_mode="mpi", ranks=2, scheduler="asha-resume", steps=4,
                    n_trials=10, heartbeat=2.0, longest=30.0)
    world = World(config, tmp_path)
    world_clock = lambda: world.clock.t  # noqa: E731
    finish(world)
    assert world.violations == []
    paused = [(n, t) for n, state, t in wrote if state == "PAUSED"]
    assert paused and all(p in left for p in paused), (paused, left)
    assert len(left) == len(wrote) and not world.followers


@pytest.mark.parametrize("agents", [2, 3])
def test_a_leader_hung_on_a_timed_out_mpi_trial_is_retired_and_its_returned_rank_freed(agents: int) -> None:
    """A group's leader hangs in its objective (heartbeat still beating) and its trial times out:
    the leader was never reclaimed and the rank that had come back stayed reserved, so no group
    could form and the run never ended (both cases failed before). Now the linger clock starts at
    the timeout: the leader is retired (never told to exit: an MPI rank), the returned rank is free.
    With 3 ranks the run goes on without a resume; with 2, too few are left: the job stops, and
    its resume (a new job) finishes the budget."""
    config = Config(seed=2, agents=agents, hosts=1, group_mode="mpi", ranks=2, n_trials=6, trial_timeout=3.0,
                    longest=1.0, heartbeat=2.0)
    world = run(config, [("hang_leader", 0)])
    assert world.violations == []
    assert any("will hang in the next trial it leads" in line for line in world.log)
    assert world.resumes == (0 if agents == 3 else 1) and world.clock.t < 1000 + 60


class Schedules(RuleBasedStateMachine):
    """Faults in any order, at any time; the invariants after every rule; every run must end."""

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory(prefix="hpwf-sim-")
        self.world: World | None = None

    @initialize(seed=st.integers(0, 10**6), mpi=st.booleans())
    def start(self, seed: int, mpi: bool) -> None:
        config = Config.draw(seed)
        config.group_mode = "mpi" if mpi else "launch"
        self.world = World(config, Path(self._tmp.name))

    @property
    def w(self) -> World:
        assert self.world is not None
        return self.world

    @rule(seconds=st.floats(0.0, 120.0))
    def advance(self, seconds: float) -> None:
        self.w.run_for(seconds)

    @rule(i=st.integers(0, 63))
    def crash(self, i: int) -> None:
        self.w.crash(i)

    @rule(i=st.integers(0, 63))
    def lose_node(self, i: int) -> None:
        self.w.lose_node(i)

    @rule(i=st.integers(0, 63), seconds=st.floats(0.1, 100.0), beats=st.booleans())
    def freeze(self, i: int, seconds: float, beats: bool) -> None:
        self.w.freeze(i, seconds, beats)

    @rule(i=st.integers(0, 63), seconds=st.sampled_from([0.0, 0.01, 0.5, 3.0, 20.0]))
    def delay(self, i: int, seconds: float) -> None:
        self.w.delay_link(i, seconds)

    @rule(i=st.integers(0, 63), then=st.sampled_from(["silent", "die"]))
    def half_frame(self, i: int, then: str) -> None:
        self.w.half_frame(i, then)

    @rule(name=st.sampled_from(["SIGTERM", "SIGUSR1", "SIGINT"]))
    def signal(self, name: str) -> None:
        self.w.signal(name)

    @rule(seconds=st.sampled_from([0.05, 3.0, 20.0, 90.0]))  # 90 s: past the simulated store_grace of 60 s
    def store_outage(self, seconds: float) -> None:
        outage(self.w, seconds)

    @rule()
    def kill_coordinator(self) -> None:
        if self.w.resumes < MAX_RESUMES - 1:
            self.w.crash_coordinator()

    @invariant()
    def no_violation(self) -> None:
        if self.world is not None:
            assert not self.world.violations, self.world.violations

    def teardown(self) -> None:
        try:
            if self.world is not None and not self.world.violations:
                finish(self.world)
                assert not self.world.violations, self.world.violations
        finally:
            self._tmp.cleanup()


Schedules.TestCase.settings = settings(max_examples=40, stateful_step_count=12, deadline=None, derandomize=True, database=None,
                                       suppress_health_check=list(HealthCheck))
test_hypothesis_schedules = Schedules.TestCase
