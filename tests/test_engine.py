"""The engine on its own: the ledger's transitions and the loop, driven by a fake hub and clock.

Each defect found in the old coordinator has a test here (named after it); the real
end-to-end suite (test_runs, test_reliability, conformance) covers the same ground with
real processes.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpwf.wire import DoneState
from hpwf.wire._protocol import Abort, Assign, Done, Reply, Setup, UserAttr
from hpwf.engine import Budget, Coordinator, health
from hpwf.engine.ledger import AgentState, IllegalTransition, Ledger, TrialState as S
from hpwf.rundir._trialdir import trial_folder, write_result
from tests.engine_fakes import FakeBackend, FakeClock, FakeSession, coordinator, turn


@pytest.fixture
def session() -> FakeSession:
    with FakeSession(FakeBackend(slots=4), FakeClock()) as s:
        yield s


# Done(7, "complete", [0.25], None, 1.5, used={"x": 0.5}) as hpwf pickled it while its state was a str
DONE_PICKLED = bytes.fromhex(
    "8004958f000000000000008c13687077662e776972652e5f70726f746f636f6c948c04446f6e659493942981947d94288c06"
    "7469636b6574944b078c057374617465948c08636f6d706c657465948c0676616c756573945d94473fd0000000000000618c"
    "056572726f72944e8c086475726174696f6e94473ff80000000000008c0475736564947d948c017894473fe0000000000000"
    "7375622e")


def test_done_state_is_an_enum_that_travels_as_the_same_bytes() -> None:
    done = Done(7, DoneState.COMPLETE, [0.25], None, 1.5, used={"x": 0.5})
    assert pickle.dumps(done, protocol=4) == DONE_PICKLED  # the wire format did not change
    back = pickle.loads(DONE_PICKLED)
    assert back == done and back.state is DoneState.COMPLETE and back.state == "complete"
    assert Done(1, "pruned").state is DoneState.PRUNED  # a plain str still builds one
    with pytest.raises(ValueError):
        Done(1, "finished")


def connect_all(session: FakeSession, c, n: int, **kw):  # type: ignore[no-untyped-def]
    agents = [session.connect(f"a{i}", rank=i, **kw) for i in range(n)]
    turn(c, 2)
    return agents


# --- the ledger ------------------------------------------------------------------------------
def test_the_ledger_rejects_illegal_moves_and_counts_by_state() -> None:
    ledger = Ledger(lambda: 0.0)
    record = ledger.add_trial(trial=type("T", (), {"number": 0})(), size=1)
    assert ledger.count(S.ASKED) == 1 and ledger.live() == 1
    with pytest.raises(IllegalTransition):
        ledger.move(record, S.TOLD)  # never told before it ran
    ledger.move(record, S.PLACED)
    ledger.move(record, S.RUNNING)
    ledger.move(record, S.DONE)
    with pytest.raises(IllegalTransition):
        ledger.move(record, S.RUNNING)  # a result never goes back
    ledger.move(record, S.TOLD)
    assert ledger.live() == 0 and record.ticket not in ledger.trials  # forgotten: its ticket is dead


def test_agent_moves_are_checked_and_idle_agents_are_indexed_by_host() -> None:
    ledger = Ledger(lambda: 0.0)
    agent = ledger.add_agent("conn")
    with pytest.raises(IllegalTransition):
        ledger.move_agent(agent, AgentState.BUSY)  # no work before Hello
    agent.host = "n1"
    ledger.move_agent(agent, AgentState.IDLE)
    assert list(ledger.idle_by_host()["n1"]) == ["conn"]
    ledger.move_agent(agent, AgentState.BUSY, ticket=7)
    assert not ledger.idle_by_host()["n1"] and agent.ticket == 7
    ledger.move_agent(agent, AgentState.LOST)
    assert "conn" not in ledger.agents
    with pytest.raises(IllegalTransition):
        ledger.move_agent(agent, AgentState.IDLE)  # lost is final


# --- the loop -----------------------------------------------------------------------------------
def test_a_search_runs_to_its_budget(session: FakeSession, tmp_path: Path) -> None:
    c = coordinator(session, tmp_path, n_trials=6)
    agents = connect_all(session, c, 2)
    while not c.finished():
        for a in agents:
            for task in a.assigns():
                a.finish(task, value=task.number)
        turn(c)
    assert c.counts.complete == 6 and c.study.best_value == 0.0
    assert all(t.state == TrialState.COMPLETE for t in c.study.trials)


def test_reserved_ranks_of_a_launched_group_stay_alive_past_three_heartbeats(tmp_path: Path) -> None:
    """Reproduction 1: a 2-rank trial 4x its heartbeat long; its reserved rank beats while idle."""
    session = FakeSession(FakeBackend(slots=2), FakeClock()).__enter__()
    c = coordinator(session, tmp_path, n_trials=1, ranks_per_trial=2, heartbeat=5.0)
    leader, other = connect_all(session, c, 2)
    turn(c)
    task = (leader.assigns() + other.assigns())[0]
    attach = session.connect("launched-0", attach=task.ticket)
    turn(c, 2)
    for _ in range(8):  # 8 x 5 s of training, every agent beating as the real ones do
        session.clock.advance(5.0)
        leader.beat(task.ticket)
        other.beat(None)
        attach.beat(task.ticket)
        turn(c)
    assert c.counts.fail == 0 and c.session.ledger.agent_count(AgentState.LOST) == 0
    attach.end.send(Done(task.ticket, "complete", [0.5], None, 40.0))
    turn(c)
    leader.end.send(Done(task.ticket, "member"))
    turn(c, 3)
    assert c.finished() and c.counts.complete == 1
    assert c.session.ledger.agent_count(AgentState.IDLE) == 2  # the group came back together


def test_a_silent_agent_is_lost_while_idle_and_never_handed_a_trial(session: FakeSession, tmp_path: Path) -> None:
    c = coordinator(session, tmp_path, n_trials=1, heartbeat=1.0, retries=1)
    (alive,) = connect_all(session, c, 1)
    turn(c)
    first = alive.assigns()[0]
    quiet = session.connect("quiet", rank=1)  # idle: the budget is taken by the running trial
    turn(c, 2)
    for _ in range(8):  # 4 s: alive beats, quiet says nothing
        session.clock.advance(0.5)
        alive.beat(first.ticket)
        turn(c)
    assert quiet.end.peer.closed and session.ledger.agent_count(AgentState.IDLE) == 0  # type: ignore[union-attr]
    alive.end.send(Done(first.ticket, "fail", None, "boom", 4.0))  # its retry goes to the live agent
    for _ in range(5):
        for task in alive.assigns():
            alive.finish(task)
        turn(c)
    assert c.finished() and c.counts.complete == 1 and quiet.assigns() == []


def test_a_request_for_a_trial_that_is_over_gets_an_error_not_a_crash(session: FakeSession, tmp_path: Path) -> None:
    """_answer used to index running trials outside its try: KeyError ended the run."""
    c = coordinator(session, tmp_path, n_trials=2)
    (a,) = connect_all(session, c, 1)
    a.suggest(ticket=999)  # never issued
    turn(c)
    reply = next(m for m in a.messages() if isinstance(m, Reply))
    assert isinstance(reply.value, RuntimeError) and "no longer running" in str(reply.value)
    assert not c.stop_reason


def test_an_unreadable_message_loses_that_agent_only(session: FakeSession, tmp_path: Path) -> None:
    c = coordinator(session, tmp_path, n_trials=3)
    bad, good = connect_all(session, c, 2)
    turn(c)
    bad.end.send_bytes(b"\x80\x05garbage")  # a pickle no one can read
    for _ in range(20):
        for task in good.assigns():
            good.finish(task)
        turn(c)
    assert c.finished() and c.counts.complete == 3
    assert bad.end.peer.closed  # type: ignore[union-attr]


def test_after_a_stop_signal_waiting_trials_are_not_placed(session: FakeSession, tmp_path: Path) -> None:
    c = coordinator(session, tmp_path, n_trials=8, ranks_per_trial=[1, 4])
    agents = connect_all(session, c, 2)
    turn(c, 3)
    c.caught_signal = "SIGTERM"
    turn(c)
    for a in agents:
        a.messages()
    assert c.stop_reason == "interrupted by SIGTERM"
    for _ in range(5):  # agents come free: nothing more is placed
        for a in agents:
            a.end.send(Done(10**6, "complete", [0.0]))
        turn(c)
    assert all(not a.assigns() for a in agents)
    assert c.finished() and c.session.ledger.live() == 0
    requeued = [t for t in c.study.trials if t.state == TrialState.WAITING]
    assert requeued and all(t.user_attrs["hpwf:retry_of"] is not None for t in requeued)


def test_a_late_message_of_the_search_never_lands_on_an_ensemble_trial(session: FakeSession, tmp_path: Path) -> None:
    first = coordinator(session, tmp_path / "search", n_trials=1)
    (a,) = connect_all(session, first, 1)
    turn(first)
    old = a.assigns()[0]
    a.finish(old)
    while not first.finished():
        turn(first)
    first.end()
    second = coordinator(session, tmp_path / "ensemble", n_trials=1)
    turn(second, 2)
    new = a.assigns()[0]
    assert new.number == old.number == 0 and new.ticket != old.ticket
    a.report(old.ticket, 123.0, 1)  # late, from the search
    a.end.send(UserAttr(old.ticket, "late", True))
    turn(second)
    assert all(isinstance(m.value, RuntimeError) for m in a.messages() if isinstance(m, Reply))
    a.finish(new, value=2.0)
    while not second.finished():
        turn(second)
    trial = second.study.trials[0]
    assert trial.value == 2.0 and not trial.intermediate_values and "late" not in trial.user_attrs


def test_a_result_refused_by_the_study_is_a_failure_not_a_success(session: FakeSession, tmp_path: Path) -> None:
    """Reproduction 5's engine side: the counts follow what the study stored."""
    c = coordinator(session, tmp_path, n_trials=1, directions=2, max_failures=1)
    (a,) = connect_all(session, c, 1)
    turn(c)
    task = a.assigns()[0]
    a.end.send(Done(task.ticket, "complete", [1.0], None, 0.1))  # one value for two directions
    turn(c, 2)
    assert c.counts.complete == 0 and c.counts.fail == 1
    assert c.study.trials[0].state == TrialState.FAIL
    assert "refused" in c.study.trials[0].user_attrs["fail_reason"]


def test_a_trial_past_its_timeout_is_failed_and_its_ranks_aborted(session: FakeSession, tmp_path: Path) -> None:
    c = coordinator(session, tmp_path, n_trials=1, trial_timeout=30.0, retries=1)
    (a,) = connect_all(session, c, 1)
    turn(c)
    task = a.assigns()[0]
    for _ in range(40):
        session.clock.advance(1.0)
        a.beat(task.ticket)
        turn(c)
    messages = a.messages()
    assert any(isinstance(m, Abort) and m.ticket == task.ticket for m in messages)
    assert "trial_timeout" in c.study.trials[0].user_attrs["fail_reason"]
    assert c.study.trials[1].user_attrs["hpwf:attempt"] == 1  # the retry


def test_resume_tells_a_durable_result_instead_of_training_again(session: FakeSession, tmp_path: Path) -> None:
    study = optuna.create_study()
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr("hpwf:run", "run-a")
    folder = trial_folder(tmp_path, trial.number)
    folder.mkdir(parents=True)
    write_result(tmp_path, trial.number, "COMPLETE", [0.25], trial.params, 3.0)
    c = Coordinator(study, session.backend, Setup(str(tmp_path), None, None), tmp_path,
                    Budget(n_trials=1, timeout=None, max_failures=5), run_id="run-a", seed=0)
    c.begin(session)
    assert study.trials[0].state == TrialState.COMPLETE and study.trials[0].value == 0.25
    assert len(study.trials) == 1 and c.finished()


def test_stale_trials_are_judged_by_their_own_runs_interval_and_our_clock() -> None:
    study = optuna.create_study()
    slow = study.ask()
    slow.set_user_attr("hpwf:run", "slow-run")
    health.beat(study, "slow-run", every=60.0, wall=1.7e9 - 40.0)  # beats every minute; 40 s ago
    skewed = study.ask()
    skewed.set_user_attr("hpwf:run", "skewed-run")
    health.beat(study, "skewed-run", every=1.0, wall=1.7e9 - 100.0)  # its clock is 100 s behind ours
    watch = health.StaleWatch("us", fallback_every=1.0)
    assert watch.stale(study, set(), now=0.0, wall=1.7e9) == []  # 1 s heartbeat here: neither is stale
    health.beat(study, "skewed-run", every=1.0, wall=1.7e9 - 95.0)  # it goes on beating
    assert watch.stale(study, set(), now=4.5, wall=1.7e9 + 4.5) == []
    found = watch.stale(study, set(), now=9.0, wall=1.7e9 + 9.0)  # 4.5 s unchanged: 3 beats + 1 passed
    assert [f.number for f, _ in found] == [skewed.number]
    assert watch.stale(study, set(), now=200.0, wall=1.7e9 + 200.0)[0][0].number == skewed.number
    assert [f.number for f, _ in watch.stale(study, set(), now=300.0, wall=1.7e9 + 300.0)] == [slow.number, skewed.number]


def test_thousands_of_events_run_through_the_loop(tmp_path: Path) -> None:
    with FakeSession(FakeBackend(slots=256), FakeClock()) as session:
        c = coordinator(session, tmp_path, n_trials=2000)
        agents = connect_all(session, c, 256)
        while not c.finished():
            for a in agents:
                for task in a.assigns():
                    a.suggest(task.ticket)
                    a.finish(task, value=0.5)
            turn(c)
        assert c.counts.complete == 2000 and len(c.study.trials) == 2000
        assert session.ledger.agent_count(AgentState.IDLE) == 256


def test_user_attrs_that_cannot_travel_are_refused_on_the_trial_side(tmp_path: Path) -> None:
    from hpwf.workflow._trial import Trial

    trial = Trial(0, {}, {}, seed=0, folder=tmp_path, request=lambda m: pytest.fail("must not be sent"))
    with pytest.raises(TypeError, match="JSON-serialisable"):
        trial.set_user_attr("loss", object())
    assert pickle.loads(pickle.dumps(UserAttr(0, "k", [1.0]))).value == [1.0]


def test_single_objective_refuses_a_tuple_and_multi_objective_checks_the_count() -> None:
    from hpwf.worker._trial_run import _as_values

    assert _as_values(0.5) == [0.5] and _as_values((0.5,)) == [0.5]
    with pytest.raises(ValueError, match="one direction"):
        _as_values((0.5, 1.0))
    with pytest.raises(ValueError, match="2 directions"):
        _as_values(0.5, n_objectives=2)
    assert _as_values([1, 2], n_objectives=2) == [1.0, 2.0]


def test_groups_wait_at_start_up_until_every_agent_could_arrive(session: FakeSession, tmp_path: Path) -> None:
    """Placed on the first two of four agents, a 2-rank group could span two hosts."""
    c = coordinator(session, tmp_path, n_trials=2, ranks_per_trial=2)
    a = [session.connect("a0", rank=0, host="n1"), session.connect("b0", rank=1, host="n2")]
    turn(c, 3)
    assert not any(x.assigns() for x in a)  # 2 of 4 agents so far: wait
    a += [session.connect("a1", rank=2, host="n1"), session.connect("b1", rank=3, host="n2")]
    turn(c, 3)
    groups = [{agent.host for agent in r.agents} for r in session.ledger.trials.values() if r.agents]
    assert sorted(map(sorted, groups)) == [["n1"], ["n2"]]  # two groups, each inside one host


def test_placing_an_mpi_group_sends_every_rank_the_same_task(tmp_path: Path) -> None:
    with FakeSession(FakeBackend(slots=4, group_mode="mpi"), FakeClock()) as session:
        c = coordinator(session, tmp_path, n_trials=1, ranks_per_trial=2)
        agents = connect_all(session, c, 4)
        turn(c)
        tasks = {a.name: a.assigns() for a in agents}
        got = [t[0] for t in tasks.values() if t]
        assert len(got) == 2 and got[0] == got[1] and len(got[0].group) == 2
        assert isinstance(got[0], Assign)


def test_a_failed_tell_leaves_the_result_done_and_a_resume_tells_it(session: FakeSession, tmp_path: Path) -> None:
    """``told`` used to be set before ``study.tell`` succeeded, so a failed tell was never retried."""
    c = coordinator(session, tmp_path, n_trials=1)
    (a,) = connect_all(session, c, 1)
    turn(c)
    task = a.assigns()[0]
    folder = trial_folder(tmp_path, task.number)
    folder.mkdir(parents=True, exist_ok=True)
    write_result(tmp_path, task.number, "COMPLETE", [0.75], {"x": 0.5}, 1.0)  # what the real agent writes first
    real_tell = c.study.tell
    c.study.tell = lambda *args, **kw: (_ for _ in ()).throw(OSError(28, "No space left on device"))  # type: ignore[method-assign]
    a.finish(task, value=0.75)
    turn(c, 2)  # the store's error never escapes a step (hpwf.engine.store): the result is kept for it
    assert c.store.failing and [r.state for r in session.ledger.trials.values()] == [S.DONE]  # not lost, not told
    assert c.study.trials[0].state == TrialState.RUNNING
    c.study.tell = real_tell  # type: ignore[method-assign]
    resumed = Coordinator(c.study, session.backend, Setup(str(tmp_path), None, None), tmp_path,
                          Budget(n_trials=1, timeout=None, max_failures=5), run_id="run-a", seed=0)
    resumed.begin(FakeSession(FakeBackend(slots=1), FakeClock()))
    assert c.study.trials[0].state == TrialState.COMPLETE and c.study.trials[0].value == 0.75


def test_an_agent_that_beats_while_idle_is_not_lost_when_it_finally_gets_a_trial(session: FakeSession, tmp_path: Path) -> None:
    c = coordinator(session, tmp_path, n_trials=2, heartbeat=1.0, retries=1)
    busy = connect_all(session, c, 1)[0]
    turn(c)
    long_task = busy.assigns()[0]
    waiting = session.connect("waiting", rank=1)
    turn(c, 2)
    waiting.finish(waiting.assigns()[0])
    for _ in range(200):  # 100 s idle, beating, while the other trial runs on
        session.clock.advance(0.5)
        busy.beat(long_task.ticket)
        waiting.beat(None)
        turn(c)
    assert session.ledger.agent_count(AgentState.LOST) == 0 and not waiting.end.peer.closed  # type: ignore[union-attr]
    busy.end.send(Done(long_task.ticket, "fail", None, "boom", 100.0))  # its retry goes to the idle agent
    turn(c, 3)
    retry = waiting.assigns()[0]
    session.clock.advance(0.5)
    turn(c)
    assert session.ledger.agent_count(AgentState.LOST) == 0
    waiting.finish(retry)
    turn(c, 3)
    assert c.finished() and c.counts.complete == 2


def test_sampled_ahead_values_are_answered_on_the_agent_and_recorded_only_when_used(session: FakeSession, tmp_path: Path) -> None:
    c = coordinator(session, tmp_path, n_trials=4)
    (a,) = connect_all(session, c, 1)
    turn(c)
    first = a.assigns()[0]
    assert first.params == {}  # nothing seen yet: the objective's suggest makes the round trip
    a.suggest(first.ticket, "x")
    a.end.send(Done(first.ticket, "complete", [0.1], None, 0.1))
    turn(c, 3)
    second = [m for m in a.messages() if isinstance(m, Assign)][0]  # placed before the first was told
    a.suggest(second.ticket, "x")
    a.end.send(Done(second.ticket, "complete", [0.1], None, 0.1))
    turn(c, 3)
    third = [m for m in a.messages() if isinstance(m, Assign)][0]
    assert set(third.params) == {"x"} and 0 <= third.params["x"] <= 1  # proposed from the seen space
    assert "x" not in c.study.trials[third.number].params  # not recorded yet
    a.end.send(Done(third.ticket, "complete", [0.2], None, 0.1, used={"x": third.params["x"]}))
    turn(c, 3)
    assert c.study.trials[third.number].params == {"x": third.params["x"]}  # exactly the proposal
    fourth = a.assigns()[0]
    assert "x" in fourth.params
    a.end.send(Done(fourth.ticket, "complete", [0.3], None, 0.1))  # a conditional branch: x unused
    while not c.finished():
        turn(c)
    assert c.study.trials[fourth.number].params == {}  # never recorded: define-by-run stays exact


def test_sampling_ahead_can_be_switched_off(session: FakeSession, tmp_path: Path) -> None:
    c = coordinator(session, tmp_path, n_trials=2, sample_ahead=False)
    (a,) = connect_all(session, c, 1)
    turn(c)
    first = a.assigns()[0]
    a.suggest(first.ticket, "x")
    a.finish(first)
    turn(c, 3)
    assert [m.params for m in a.messages() if isinstance(m, Assign)] == [{}]


def test_a_rank_lost_after_its_leader_reported_does_not_undo_the_result(tmp_path: Path) -> None:
    with FakeSession(FakeBackend(slots=2, group_mode="mpi"), FakeClock()) as session:
        c = coordinator(session, tmp_path, n_trials=1, ranks_per_trial=2)
        leader, member = connect_all(session, c, 2)
        turn(c)
        task = leader.assigns()[0]
        leader.end.send(Done(task.ticket, "complete", [0.5], None, 1.0))
        member.end.close()  # the other rank dies before it says it is done
        while not c.finished():
            turn(c)
        assert c.study.trials[0].state == TrialState.COMPLETE and c.counts.fail == 0


def test_a_trial_sent_to_an_agent_that_just_died_waits_again_and_is_no_failure(session: FakeSession, tmp_path: Path) -> None:
    """An MPI job died: one rank's trial failed, the other's result came in with its socket already
    closed, and the next trial sent there used to be failed ("could not be reached")."""
    c = coordinator(session, tmp_path, n_trials=3)
    dying, alive = connect_all(session, c, 2)
    turn(c)
    dying.finish(dying.assigns()[0])
    dying.end.close()  # its Done is read before the closed socket is seen: the next trial is sent to it
    turn(c)
    for _ in range(10):
        for task in alive.assigns():
            alive.finish(task)
        turn(c)
    assert c.finished() and c.counts.complete == 3
    assert all(t.state == TrialState.COMPLETE for t in c.study.trials)
    assert dying.end.peer.closed  # type: ignore[union-attr]


def test_a_retry_interrupted_before_it_drew_its_parameters_keeps_them(tmp_path: Path) -> None:
    """A node loss under mpirun: trial 0 failed and was queued again with its x; the job died
    while the retry ran, before its objective asked for x; resume queued it again without x."""
    from hpwf.engine.outcomes import Outcomes

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    outcomes = Outcomes(study, tmp_path, "run-a", retries=1, note=lambda _: None)
    first = study.ask()
    first.suggest_float("x", 0, 1)
    outcomes.fail(first, "died mid-trial", None)
    retry = study.ask()  # the queued retry, asked and placed; x not drawn yet
    assert retry.params == {}
    outcomes.fail(retry, "interrupted: its coordinator stopped", None, counts_as_failure=False)
    again = study.ask()
    assert again.suggest_float("x", 0, 1) == first.params["x"]


def test_a_failure_whose_retry_was_never_queued_is_queued_on_resume(tmp_path: Path) -> None:
    """The coordinator died (its MPI job lost a node) between storing a failure and queueing its retry."""
    from hpwf.engine import health
    from hpwf.engine.outcomes import Outcomes

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    trial.set_user_attr(health.RUN_ATTR, "run-a")
    x = trial.suggest_float("x", 0, 1)
    trial.set_user_attr("fail_reason", "rank 4 died mid-trial")
    study.tell(trial, state=TrialState.FAIL)  # and then the coordinator was killed
    for _ in range(2):  # a second resume finds the retry queued already
        Outcomes(study, tmp_path, "run-a", retries=1, note=lambda _: None).recover(own_store=True)
        assert len(study.get_trials(states=(TrialState.WAITING,))) == 1
    again = study.ask()
    assert again.suggest_float("x", 0, 1) == x and again.user_attrs["hpwf:retry_of"] == trial.number


def test_summary_json_is_rewritten_when_a_figure_changes_not_every_turn(session: FakeSession, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle stretch rewrites summary.json every 10 s of its clock, not every half second; a
    finished trial is in it at the next housekeeping."""
    import hpwf.rundir._run as run_module

    written: list[dict[str, object]] = []
    original = run_module._write_json
    monkeypatch.setattr(run_module, "_write_json",
                        lambda path, data: (written.append(data) if path.name == "summary.json" else None,
                                            original(path, data)))
    c = coordinator(session, tmp_path, n_trials=2, heartbeat=100.0)
    agent = connect_all(session, c, 1)[0]
    task = agent.assigns()[0]
    before = len(written)
    turn(c, 240)  # 60 s of its clock, the trial running: 120 housekeeping turns
    assert 5 <= len(written) - before <= 7
    agent.finish(task)
    turn(c, 3)
    assert written[-1]["complete"] == 1
