"""Schedulers that pause and resume trials, driven by the fake hub and clock (no processes).

Successive halving with resumption: a trial not promotable at a rung pauses, its agent takes
other work, it is promoted (same number, new ticket, its reports kept) and resumes from its
checkpoint; a resume adopts paused trials. PBT: segments, exploit/explore, lineage, budget.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from hpwf.wire import PAUSE
from hpwf.wire._protocol import Assign, Done, Reply
from hpwf.engine.ledger import AgentState, TrialState as S
from hpwf.engine.schedulers._pbt import EXPLOITED, GENERATION, MEMBER, PARENT, PopulationBasedTraining
from hpwf.engine.schedulers._lineage import lineage, schedule
from hpwf.engine.schedulers import Decision
from hpwf.engine.schedulers._halving import SuccessiveHalving, hyperband_brackets
from hpwf.rundir import PAUSED_ATTR, RESTORE_ATTR
from hpwf.errors import ConfigError
from hpwf.workflow._search import Search
from tests.engine_fakes import FakeAgent, FakeBackend, FakeClock, FakeSession, coordinator, turn


@pytest.fixture
def session() -> FakeSession:
    with FakeSession(FakeBackend(slots=4), FakeClock()) as s:
        yield s


class Driver:
    """A fake agent whose assigns and replies are kept apart."""

    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent
        self.tasks: list[Assign] = []
        self.replies: list[Any] = []

    def pump(self) -> None:
        for m in self.agent.messages():
            if isinstance(m, Assign):
                self.tasks.append(m)
            elif isinstance(m, Reply):
                self.replies.append(m.value)

    def take(self) -> Assign:
        self.pump()
        return self.tasks.pop(0)

    def ask(self, c: Any, send: Any) -> Any:
        """Send one request (``send()``), turn the loop, return the reply."""
        send()
        turn(c, 2)
        self.pump()
        return self.replies.pop(0)


def drivers(session: FakeSession, c: Any, n: int) -> list[Driver]:
    out = [Driver(session.connect(f"a{i}", rank=i)) for i in range(n)]
    turn(c, 2)
    return out


def sha(c: Any) -> SuccessiveHalving:
    return c.scheduler  # type: ignore[no-any-return]


# --- successive halving with resumption ---------------------------------------------------------
def test_a_trial_that_is_not_promotable_pauses_frees_its_agent_and_resumes_once_promoted(
        session: FakeSession, tmp_path: Path) -> None:
    c = coordinator(session, tmp_path, n_trials=3, scheduler=lambda s: SuccessiveHalving(False, 1, 2, 2))
    (d,) = drivers(session, c, 1)  # one rung, at step 1
    first = d.take()
    assert d.ask(c, lambda: d.agent.report(first.ticket, 0.5, 0)) is False  # below the first rung
    assert d.ask(c, lambda: d.agent.report(first.ticket, 0.4, 1)) == PAUSE  # alone at rung 0: not promotable
    d.agent.pause(first)
    turn(c, 2)
    ledger = c.session.ledger
    assert ledger.count(S.PAUSED) == 1 and ledger.agent_count(AgentState.BUSY) == 1  # the agent took trial 1
    frozen = c.study.trials[0]
    assert frozen.state == TrialState.RUNNING and frozen.intermediate_values == {0: 0.5, 1: 0.4}
    assert frozen.user_attrs[PAUSED_ATTR] == 2 and frozen.user_attrs[RESTORE_ATTR] == {"from": 0, "step": 2}
    second = d.take()
    assert second.number == 1
    assert d.ask(c, lambda: d.agent.report(second.ticket, 0.9, 1)) == PAUSE  # worse: trial 0 is the top half
    d.agent.pause(second)
    turn(c, 2)
    resumed = d.take()
    assert resumed.number == 0 and resumed.ticket not in (first.ticket, second.ticket)
    assert resumed.attrs is not None and resumed.attrs[RESTORE_ATTR] == {"from": 0, "step": 2}
    assert c.study.trials[0].user_attrs[PAUSED_ATTR] is False
    late = d.ask(c, lambda: d.agent.report(first.ticket, 0.1, 3))  # the old ticket is dead
    assert isinstance(late, RuntimeError)
    assert d.ask(c, lambda: d.agent.report(resumed.ticket, 0.3, 2)) is False  # no rung at step 2
    d.agent.finish(resumed, 0.3)
    turn(c, 3)
    assert c.study.trials[0].state == TrialState.COMPLETE
    assert c.study.trials[0].intermediate_values == {0: 0.5, 1: 0.4, 2: 0.3}  # earlier reports kept


def test_when_nothing_else_can_run_the_best_paused_trial_goes_on_and_the_rest_are_pruned(
        session: FakeSession, tmp_path: Path) -> None:
    c = coordinator(session, tmp_path, n_trials=3, scheduler=lambda s: SuccessiveHalving(False, 1, 3))
    (d,) = drivers(session, c, 1)
    for value in (0.5, 0.8, 0.2):  # eta=3: the first two pause; the third is the top third of 3
        task = d.take()
        answer = d.ask(c, lambda: d.agent.report(task.ticket, value, 1))
        assert answer == PAUSE or (value == 0.2 and answer is False)
        if answer == PAUSE:
            d.agent.pause(task)
        else:
            d.agent.finish(task, value)
        turn(c, 2)
    for _ in range(5):
        turn(c)
    assert c.finished() and c.counts.finished_ok == 3 and len(c.study.trials) == 3  # the budget is exact
    states = [t.state for t in c.study.trials]
    assert states.count(TrialState.PRUNED) == 2 and states.count(TrialState.COMPLETE) == 1


def test_draining_promotes_the_best_paused_trial_of_a_rung_nobody_left(session: FakeSession, tmp_path: Path) -> None:
    c = coordinator(session, tmp_path, n_trials=2, scheduler=lambda s: SuccessiveHalving(False, 1, 3))
    (d,) = drivers(session, c, 1)
    for value in (0.5, 0.2):
        task = d.take()
        assert d.ask(c, lambda: d.agent.report(task.ticket, value, 1)) == PAUSE
        d.agent.pause(task)
        turn(c, 2)
    again = d.take()  # the budget is asked: the best paused trial at the rung goes on
    assert again.number == 1 and again.attrs and again.attrs[RESTORE_ATTR]["step"] == 2
    d.agent.finish(again, 0.1)
    for _ in range(5):
        turn(c)
    assert [t.state for t in c.study.trials] == [TrialState.PRUNED, TrialState.COMPLETE] and c.finished()


def test_a_resume_adopts_paused_trials_and_rebuilds_the_rungs(session: FakeSession, tmp_path: Path) -> None:
    make = lambda s: SuccessiveHalving(False, 1, 2)  # noqa: E731
    c = coordinator(session, tmp_path, n_trials=4, scheduler=make)
    (d,) = drivers(session, c, 1)
    task = d.take()
    assert d.ask(c, lambda: d.agent.report(task.ticket, 0.3, 1)) == PAUSE
    d.agent.pause(task)
    turn(c, 2)
    running = d.take()  # trial 1 runs when the coordinator is killed: no clean end
    assert running.number == 1
    study = c.study
    with FakeSession(FakeBackend(slots=4), FakeClock()) as fresh:
        again = coordinator(fresh, tmp_path, n_trials=4, scheduler=make, study=study)
        ledger = fresh.ledger
        assert [r.number for r in ledger.in_state(S.PAUSED)] == [0]  # adopted, not failed
        assert study.trials[0].state == TrialState.RUNNING and study.trials[1].state == TrialState.FAIL
        assert sha(again).brackets[0].values[0] == {0: 0.3}  # the rung, rebuilt from the study
        (e,) = drivers(fresh, again, 1)
        nxt = e.take()
        assert nxt.number != 0  # trial 0 waits for a rung-mate to promote it
        assert e.ask(again, lambda: e.agent.report(nxt.ticket, 0.9, 1)) == PAUSE
        e.agent.pause(nxt)
        turn(again, 2)
        assert e.take().number == 0  # promoted: resumes from its checkpoint


def test_schedulers_answer_a_report_with_a_decision() -> None:
    """Schedulers decide (CONTINUE, PAUSE, STOP), the coordinator answers the trial; the tests
    above show the answers on the wire (False, PAUSE) are those of before."""
    sh = SuccessiveHalving(False, 1, 2, 2)
    record = SimpleNamespace(number=0)
    assert sh.on_report(record, 0, 0.5) is Decision.CONTINUE  # no rung at step 0  # type: ignore[arg-type]
    assert sh.on_report(record, 1, 0.5) is Decision.PAUSE  # alone at rung 0  # type: ignore[arg-type]
    pbt = PopulationBasedTraining(optuna.create_study(), population=2, interval=2, generations=2)
    member = SimpleNamespace(trial=SimpleNamespace(user_attrs={GENERATION: 0}), last_report=None)
    assert pbt.on_report(member, 0, 0.5) is Decision.CONTINUE  # type: ignore[arg-type]
    assert pbt.on_report(member, 1, 0.5) is Decision.PAUSE  # the segment's last step  # type: ignore[arg-type]


def test_hyperband_brackets_start_at_growing_rungs() -> None:
    assert hyperband_brackets(1, 27, 3) == 4 and hyperband_brackets(2, 24, 3) == 3
    sh = SuccessiveHalving(True, 2, 3, 24, brackets=3)
    assert [b.steps for b in sh.brackets] == [[2, 6, 18], [6, 18], [18]]


# --- population-based training ---------------------------------------------------------------------
def pbt(study: optuna.Study, **kw: Any) -> PopulationBasedTraining:
    return PopulationBasedTraining(study, population=4, interval=2, generations=2, seed=0, **kw)


def test_pbt_exploits_the_top_quantile_and_explores_its_params(session: FakeSession, tmp_path: Path) -> None:
    c = coordinator(session, tmp_path, n_trials=8, scheduler=pbt)
    ds = drivers(session, c, 4)
    first = [d.take() for d in ds]
    assert sorted(t.number for t in first) == [0, 1, 2, 3] and len(c.study.trials) == 4  # may_ask stops at the population
    x = {}
    value = {0: 1.0, 1: 0.0, 2: 2.0, 3: 3.0}  # minimize: member 1 is the best
    for d, task in zip(ds, first):  # they finish in member order; 0 waits until 1 is in (a quorum of two)
        x[task.number] = d.ask(c, lambda: d.agent.suggest(task.ticket, "x"))
        assert d.ask(c, lambda: d.agent.report(task.ticket, value[task.number], 0)) is False
        assert d.ask(c, lambda: d.agent.report(task.ticket, value[task.number], 1)) == PAUSE  # the segment ends
        d.agent.pause(task)
        turn(c, 2)
    trials = c.study.trials
    assert [t.state for t in trials[:4]] == [TrialState.COMPLETE] * 4 and [t.value for t in trials[:4]] == [1, 0, 2, 3]
    nxt = {t.user_attrs[MEMBER]: t for t in trials[4:]}
    assert sorted(nxt) == [0, 1, 2, 3] and all(t.user_attrs[GENERATION] == 1 for t in nxt.values())
    fixed = {m: t.system_attrs["fixed_params"] for m, t in nxt.items()}  # what the next segments will suggest
    for member in (0, 2, 3):  # ranked once two had finished: the bottom quarter copies member 1 (the top one)
        attrs = nxt[member].user_attrs
        assert attrs[EXPLOITED] is True and attrs[PARENT] == 1 and attrs[RESTORE_ATTR] == {"from": 1, "step": 2}
        assert fixed[member]["x"] != x[1] and 0.0 <= fixed[member]["x"] <= 1.0  # explored from member 1's params
    assert nxt[1].user_attrs[PARENT] == 1 and nxt[1].user_attrs[EXPLOITED] is False  # the best goes on as it is
    assert fixed[1]["x"] == x[1]
    worst = nxt[3]
    second = [d.take() for d in ds]
    for d, task in zip(ds, second):
        assert d.ask(c, lambda: d.agent.suggest(task.ticket, "x")) == fixed[task.attrs[MEMBER]]["x"]  # type: ignore[index]
        assert d.ask(c, lambda: d.agent.report(task.ticket, 0.5, 3)) is False  # the last generation runs on
        d.agent.finish(task, 0.25 if task.attrs and task.attrs[MEMBER] == 3 else 0.5)
    for _ in range(5):
        turn(c)
    assert c.finished() and len(c.study.trials) == 8 and c.counts.complete == 8  # population x generations
    info = lineage(c.study)
    assert info is not None and info["segments"] == 8 and info["members"] == 4
    assert [s["trial"] for s in info["best_schedule"]] == [1, worst.number]  # member 3's line, exploited from 1
    assert schedule(c.study, worst.number)[1]["start_step"] == 2


def test_pbt_resume_rebuilds_members_and_queues_the_segments_it_held(tmp_path: Path) -> None:
    study = optuna.create_study()
    first = pbt(study)
    for member in range(4):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        first.on_asked(trial)
        trial.report(float(member), 1)
        study.tell(trial, float(member))
    again = pbt(study)
    again.recover(study.get_trials())
    assert again.members == 4 and sorted(again.scores[0]) == [0, 1, 2, 3]
    assert again.scores[0][2].step == 2 and again.scores[0][2].number == 2
    queued = [t for t in study.trials if t.state == TrialState.WAITING]  # the next segments, never queued before
    assert again.pending == 4 and again.may_ask() and sorted(t.user_attrs[MEMBER] for t in queued) == [0, 1, 2, 3]
    assert {t.user_attrs[GENERATION] for t in queued} == {1}
    third = pbt(study)
    third.recover(study.get_trials())
    assert third.pending == 4 and len([t for t in study.trials if t.state == TrialState.WAITING]) == 4  # not twice


@pytest.mark.parametrize("bad, why", [
    (dict(scheduler="pbt", population=4, interval=2, n_trials=10), "multiple of population"),
    (dict(scheduler="pbt", n_trials=8), "population=... and interval"),
    (dict(scheduler="asha-resume", pruner="asha", n_trials=8), "pruner='none'"),
    (dict(scheduler="hyperband-resume", n_trials=8), "max_resource"),
    (dict(scheduler="asha-resume", scheduler_options={"eta": 3}, n_trials=8), "unknown scheduler_options"),
    (dict(scheduler="fifo", n_trials=8), "unknown scheduler"),
])
def test_bad_scheduler_options_name_the_key(bad: dict[str, Any], why: str) -> None:
    with pytest.raises(ConfigError, match=why.replace("(", r"\(").replace(".", r"\.")):
        Search(direction="minimize", **bad)


def test_a_failed_pbt_segment_ends_its_line_and_the_run_still_ends(session: FakeSession, tmp_path: Path) -> None:
    c = coordinator(session, tmp_path, n_trials=4, scheduler=lambda s: PopulationBasedTraining(
        s, population=2, interval=1, generations=2, seed=0))
    ds = drivers(session, c, 2)
    good, bad = ds[0].take(), ds[1].take()
    assert ds[0].ask(c, lambda: ds[0].agent.report(good.ticket, 0.5, 0)) == PAUSE
    ds[0].agent.pause(good)
    ds[1].agent.end.send(Done(bad.ticket, "fail", None, "boom", 0.1))
    turn(c, 3)
    nxt = ds[0].take()
    ds[0].agent.finish(nxt, 0.4)
    for _ in range(5):
        turn(c)
    assert c.finished() and c.counts.complete == 2 and c.counts.fail == 1  # member 1's line ended with its failure


def test_status_shows_paused_trials_as_their_own_count() -> None:
    from hpwf.report import format_status as _format_status

    text = _format_status({"study": "s", "run_dir": "r", "complete": 1, "pruned": 2, "fail": 0, "running": 1,
                           "paused": 3, "waiting": 0, "n_trials": 8})
    assert "1 running, 3 paused, 0 waiting" in text


def test_a_stop_signal_leaves_paused_trials_paused_for_the_requeued_job(session: FakeSession, tmp_path: Path) -> None:
    """Slurm's walltime warning (USR1) or a preemption stops the run; the requeued job resumes it."""
    make = lambda s: SuccessiveHalving(False, 1, 2)  # noqa: E731
    c = coordinator(session, tmp_path, n_trials=4, scheduler=make)
    (d,) = drivers(session, c, 1)
    task = d.take()
    assert d.ask(c, lambda: d.agent.report(task.ticket, 0.3, 1)) == PAUSE
    d.agent.pause(task)
    turn(c, 2)
    running = d.take()
    c.interrupt("SIGUSR1")
    assert c.finished()  # it does not wait for the paused trial
    trials = c.study.trials
    assert trials[0].state == TrialState.RUNNING and trials[0].user_attrs[PAUSED_ATTR] == 2
    assert trials[running.number].state == TrialState.FAIL  # running: queued again, as before
    with FakeSession(FakeBackend(slots=4), FakeClock()) as fresh:
        coordinator(fresh, tmp_path, n_trials=4, scheduler=make, study=c.study)
        assert [r.number for r in fresh.ledger.in_state(S.PAUSED)] == [0]


def test_a_paused_group_resumes_only_once_all_its_ranks_are_back(tmp_path: Path) -> None:
    """Its other rank ends after the leader said "paused"; promoting before that left that rank reserved
    under a dead ticket, and a 2-rank trial could never be placed again (a hang seen on Dask)."""
    with FakeSession(FakeBackend(slots=4, group_mode="mpi"), FakeClock()) as session:
        c = coordinator(session, tmp_path, n_trials=2, ranks_per_trial=2,
                        scheduler=lambda s: SuccessiveHalving(False, 1, 2, 2))
        ds = drivers(session, c, 4)
        for d in ds:
            d.pump()
        by_number: dict[int, list[Driver]] = {}
        for d in ds:
            by_number.setdefault(d.tasks[0].number, []).append(d)
        (lead0, other0), (lead1, other1) = by_number[0], by_number[1]
        t0, t1 = lead0.tasks.pop(0), lead1.tasks.pop(0)
        other0.tasks.clear(), other1.tasks.clear()
        assert lead0.ask(c, lambda: lead0.agent.report(t0.ticket, 0.5, 1)) == PAUSE
        lead0.agent.pause(t0)  # its other rank has not ended yet
        turn(c, 2)
        assert lead1.ask(c, lambda: lead1.agent.report(t1.ticket, 0.9, 1)) == PAUSE  # trial 0 is promotable now
        turn(c, 2)
        assert c.study.trials[0].user_attrs[PAUSED_ATTR] == 2  # still paused: a rank holds its ticket
        other0.agent.end.send(Done(t0.ticket, "member"))
        turn(c, 3)
        again = []
        for d in ds:
            d.pump()
            again += d.tasks
        assert {t.number for t in again} == {0} and len(again) == 2 and again[0].ticket != t0.ticket
        assert not [a for a in session.ledger.agents.values() if a.ticket == t0.ticket]


def test_no_scheduler_on_a_multi_objective_study() -> None:
    search = Search(directions=["minimize", "maximize"], n_trials=2)
    from hpwf.engine.schedulers import make_scheduler

    assert make_scheduler(search, optuna.create_study(directions=["minimize", "maximize"])) is None


# --- issue 20: defects 3 and 10 ------------------------------------------------------------------
def test_a_rung_kept_sorted_answers_as_a_full_sort_would() -> None:
    """Defect 3: the rung is kept sorted (O(log n) a look) and gives the answers of a sort."""
    import random

    from hpwf.engine.schedulers._halving import _Rungs

    rng = random.Random(0)
    for maximize in (False, True):
        rungs = _Rungs(1, 3, None, maximize)
        for _ in range(300):
            number, value = rng.randrange(60), rng.choice([rng.random(), 0.5])  # ties and re-reports
            rungs.record(0, number, value)
            values = rungs.values[0]
            order = sorted(values, key=lambda t: (-values[t] if maximize else values[t], t))
            for quota in (None, 1, 7):
                n = len(values) // 3 if quota is None else quota
                assert all(rungs.in_top(0, t, quota) == (t in order[:n]) for t in values)


def test_promotion_looks_at_paused_trials_only_when_something_changed(session: FakeSession, tmp_path: Path) -> None:
    """Defect 3: `promote` ran the scheduler over every paused trial on every loop turn."""
    c = coordinator(session, tmp_path, n_trials=3, scheduler=lambda s: SuccessiveHalving(False, 1, 2, 2))
    (d,) = drivers(session, c, 1)
    first = d.take()
    assert d.ask(c, lambda: d.agent.report(first.ticket, 0.4, 1)) == PAUSE
    d.agent.pause(first)
    turn(c, 2)
    calls = []
    original = sha(c).promotable
    sha(c).promotable = lambda paused: calls.append(1) or original(paused)  # type: ignore[method-assign]
    c._last_housekeeping = float("inf")  # (housekeeping's own look aside)
    turn(c, 50)
    assert len(calls) <= 1


def test_after_a_time_budget_stop_paused_trials_stay_paused(session: FakeSession, tmp_path: Path) -> None:
    """Defect 10: promote woke paused trials after the stop; housekeeping then failed them "not
    started" and requeued them without their intermediate values."""
    c = coordinator(session, tmp_path, n_trials=3, scheduler=lambda s: SuccessiveHalving(False, 1, 2, 2))
    (d,) = drivers(session, c, 1)
    first = d.take()
    assert d.ask(c, lambda: d.agent.report(first.ticket, 0.4, 1)) == PAUSE
    d.agent.pause(first)
    turn(c, 2)
    second = d.take()
    c.stop_reason = "time budget reached"
    assert d.ask(c, lambda: d.agent.report(second.ticket, 0.9, 1)) == PAUSE  # trial 0 is now promotable
    d.agent.pause(second)
    turn(c, 6)
    assert c.session.ledger.count(S.PAUSED) == 2
    trial = c.study.trials[0]
    assert trial.state == TrialState.RUNNING and trial.intermediate_values == {1: 0.4}
    assert not any(t.user_attrs.get("hpwf:retry_of") == 0 for t in c.study.trials)


def test_pbt_decides_a_segments_end_and_the_coordinator_moves_the_ledger() -> None:
    """Schedulers decide, the coordinator acts: PBT's answer to a paused segment is the result to
    tell (complete, its last value); the trial's state is the coordinator's to change."""
    from hpwf.engine.ledger import Ledger

    study = optuna.create_study()
    scheduler = pbt(study)
    trial = study.ask()
    scheduler.on_asked(trial)
    ledger = Ledger(lambda: 0.0)
    record = ledger.add_trial(trial, 1)
    ledger.move(record, S.PLACED)
    ledger.move(record, S.RUNNING)
    record.last_report = (1, 0.5)
    ending = scheduler.on_paused(record)
    assert isinstance(ending, Done) and ending.state == "complete" and ending.values == [0.5]
    assert record.state == S.RUNNING and record.result is None and ledger.count(S.DONE) == 0
    assert SuccessiveHalving(False).on_paused(record) is None  # halving: it stays paused
