"""The defects of issue 20, each reproduced on the fake hub and clock (`tests.engine_fakes`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from hpwf.wire._protocol import Abort, Done
from tests.engine_fakes import FakeBackend, FakeClock, FakeSession, coordinator, turn


def connect(session: FakeSession, c: Any, n: int, host: str = "h1") -> list[Any]:
    agents = [session.connect(f"a{i}", rank=i + 1, host=host) for i in range(n)]
    turn(c)
    for a in agents:
        a.messages()
    return agents


def test_an_mpi_rank_past_its_trial_timeout_is_never_aborted_and_takes_work_once_it_returns(tmp_path: Path) -> None:
    """Defect 1: an `Abort` ends an MPI rank's process, and with it the whole MPI job."""
    with FakeSession(FakeBackend(slots=2, group_mode="mpi"), FakeClock()) as session:
        c = coordinator(session, tmp_path, n_trials=3, trial_timeout=3.0, heartbeat=2.0, sample_ahead=False)
        slow, quick = connect(session, c, 2)
        turn(c)
        (task,) = slow.assigns()
        for _ in range(10):  # past the timeout; the slow rank keeps beating
            session.clock.advance(1.0)
            slow.beat(task.ticket)
            for t in quick.assigns():
                quick.finish(t)
            turn(c)
        assert not any(isinstance(m, Abort) for m in slow.messages())
        assert "trial_timeout" in c.study.trials[0].user_attrs["fail_reason"]
        assert slow.assigns() == []  # busy with the trial it still runs
        slow.end.send(Done(task.ticket, "complete", [0.5], None, 10.0))  # it returns: ignored, the rank is free
        for _ in range(10):
            turn(c)
            for a in (slow, quick):
                for t in a.assigns():
                    a.finish(t)
        states = [t.state for t in c.study.trials]
        assert states.count(TrialState.COMPLETE) == 3 and states[0] == TrialState.FAIL
        assert c.finished() and c.counts.complete == 3


def test_a_half_sent_frame_never_blocks_the_coordinator(tmp_path: Path) -> None:
    """Defect 7: a 4-byte header and 9 payload bytes, then nothing: ``step`` blocked for good in
    ``Connection.recv``. Now it returns, the frozen agent is lost for its silence, and another
    agent runs the trials (real hub, real sockets; the engine's clock is the fake one)."""
    import os
    import struct
    import threading

    from hpwf.engine import Session
    from hpwf.wire._handshake import connect
    from hpwf.wire._protocol import Assign, Heartbeat, Hello

    clock = FakeClock()
    with Session(FakeBackend(slots=2), clock=clock) as session:
        c = coordinator(session, tmp_path, n_trials=2, heartbeat=1.0, sample_ahead=False)  # type: ignore[arg-type]
        frozen, good = (connect(session.hub.address, session.hub.authkey) for _ in range(2))
        frozen.send(Hello("frozen", "h1", 1, 1, None))
        good.send(Hello("good", "h1", 2, 2, None))

        def steps(n: int) -> threading.Thread:
            thread = threading.Thread(target=lambda: [c.step(0.05) for _ in range(n)], daemon=True)
            thread.start()
            thread.join(60)  # a liveness bound, not a timing: the fixed loop takes milliseconds
            return thread

        while c.session.ledger.working_agents() < 2:
            assert not steps(1).is_alive()
        os.write(frozen.fileno(), struct.pack("!i", 100) + b"123456789")  # half of a frame
        assert not steps(5).is_alive(), "Coordinator.step blocked on a half-sent message"
        for _ in range(200):
            while good.poll(0):
                message = good.recv()
                if isinstance(message, Assign):
                    good.send(Done(message.ticket, "complete", [1.0], None, 0.01))
            good.send(Heartbeat(None))
            clock.advance(0.5)
            assert not steps(1).is_alive()
            if c.finished():
                break
        assert c.finished() and c.counts.complete == 2
        assert all(a.name != "frozen" for a in c.session.ledger.agents.values() if a.state.value == "idle")
        frozen.close()
        good.close()


def test_a_trial_another_run_finished_never_crashes_the_loop(tmp_path: Path) -> None:
    """Defect 8: another run sharing the study failed our running trials as stale; their `Done`
    (a result, or a failure) then raised UpdateFinishedTrialError out of ``step``."""
    with FakeSession(FakeBackend(slots=2), FakeClock()) as session:
        c = coordinator(session, tmp_path, n_trials=2, sample_ahead=False)
        a, b = connect(session, c, 2)
        turn(c)
        (ta,), (tb,) = a.assigns(), b.assigns()
        for task in (ta, tb):  # the other run fails them as stale
            c.study.tell(task.number, state=TrialState.FAIL)
        a.finish(ta)
        b.end.send(Done(tb.ticket, "fail", None, "Traceback ...\nValueError: boom", 0.1))
        for _ in range(20):
            turn(c)
            for agent in (a, b):
                for t in agent.assigns():
                    agent.finish(t)
        assert c.finished() and c.counts.complete == 2
        assert [t.state for t in c.study.trials].count(TrialState.COMPLETE) == 2


def test_sigterm_keeps_a_result_saved_on_disk_as_sigkill_would(tmp_path: Path) -> None:
    """Defect 9: a graceful stop failed a RUNNING trial whose leader had already saved its
    result.json (a resume after SIGKILL tells it): SIGTERM must never be worse than SIGKILL."""
    from hpwf.rundir._trialdir import trial_folder, write_result

    with FakeSession(FakeBackend(slots=1), FakeClock()) as session:
        c = coordinator(session, tmp_path, n_trials=3, sample_ahead=False)
        (a,) = connect(session, c, 1)
        turn(c)
        (task,) = a.assigns()
        a.suggest(task.ticket)
        turn(c)
        x = c.study.trials[0].params["x"]
        folder = trial_folder(tmp_path, task.number)
        folder.mkdir(parents=True, exist_ok=True)
        write_result(tmp_path, task.number, "COMPLETE", [0.25], {"x": x}, 1.0)  # its Done is still on the way
        c.on_signal(15, None)
        turn(c)
        trials = c.study.trials
        assert trials[0].state == TrialState.COMPLETE and trials[0].value == 0.25
        assert not any(t.user_attrs.get("hpwf:retry_of") == 0 for t in trials)  # never trained again


def test_status_reads_a_live_journal_without_taking_or_breaking_its_lock(tmp_path: Path) -> None:
    """Defect 2: `hpwf status` waited 30 s on ``study.journal.lock`` held by the live run, then
    broke it ("Forcibly releasing the lock file")."""
    import threading

    import hpwf
    from optuna.storages.journal import JournalFileOpenLock

    run_dir = tmp_path / "run"
    hpwf.run(str(Path(__file__).parent / "workflows" / "where.py"), run_dir=run_dir, workers=2, progress=False)
    lock = JournalFileOpenLock(str(run_dir / "study.journal"))
    assert lock.acquire()  # the live run is writing
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(status=hpwf.status(run_dir)), daemon=True)
    thread.start()
    thread.join(20)  # a liveness bound: the lock's own grace period is 30 s
    try:
        assert not thread.is_alive(), "hpwf status waited for the writer's lock"
        assert box["status"]["complete"] == 6
        assert Path(str(run_dir / "study.journal") + ".lock").exists()  # still the writer's
    finally:
        lock.release()


def test_a_pause_saved_on_disk_counts_as_paused_for_a_resume_and_for_status(tmp_path: Path) -> None:
    """Defect 11: ``read_result`` returned None for a PAUSED result, so a trial whose pause was
    saved but not yet marked (its coordinator killed in between) was trained from scratch."""
    import optuna

    from hpwf.rundir import is_paused, state_counts
    from hpwf.rundir._trialdir import trial_folder, write_result

    study = optuna.create_study()
    trial = study.ask()
    folder = trial_folder(tmp_path, trial.number)
    folder.mkdir(parents=True)
    write_result(tmp_path, trial.number, "PAUSED", None, {}, 1.0)
    frozen = study.trials[0]
    assert is_paused(frozen, tmp_path)
    assert state_counts([frozen], tmp_path)["paused"] == 1


def test_a_non_leader_rank_hung_after_its_leaders_done_is_retired_and_the_run_ends(tmp_path: Path) -> None:
    """Defect 5: a rank that never returns after its leader's `Done` (heartbeat still beating)
    kept its group's ranks reserved: no trial was placed and the run never ended."""
    from hpwf.engine.ledger import AgentState
    from hpwf.wire._protocol import Stop

    with FakeSession(FakeBackend(slots=3, group_mode="mpi"), FakeClock()) as session:
        c = coordinator(session, tmp_path, n_trials=2, ranks_per_trial=2, heartbeat=2.0, sample_ahead=False)
        agents = connect(session, c, 3)
        turn(c)
        placed = {a.name: a.assigns() for a in agents}
        leader, other = [a for a in agents if placed[a.name]]  # ranks 1 and 2
        spare = next(a for a in agents if not placed[a.name])
        (task,) = placed[leader.name]
        leader.finish(task)  # the other rank hangs in its shutdown and never sends its Done
        for _ in range(400):  # 100 s of engine time
            session.clock.advance(0.25)
            for a in (leader, spare):
                a.beat()
                for t in a.assigns():
                    if t.group[0] == (1 if a is leader else 3):
                        a.finish(t)
                    else:
                        a.end.send(Done(t.ticket, "member", None, None, 0.01))
            other.beat(task.ticket)
            turn(c)
            if c.finished():
                break
        assert not any(isinstance(m, (Abort, Stop)) for m in other.messages())  # never told to exit
        assert [a.state for a in session.ledger.agents.values()].count(AgentState.RETIRED) == 1
        assert c.finished() and c.counts.complete == 2  # the second trial ran on the rank set free


def test_too_few_agents_left_for_a_group_and_nothing_waiting_still_ends_the_run(tmp_path: Path) -> None:
    """Found by the simulator (seed 71): the agents left are fewer than a trial's ranks, no trial
    waits (the one lost failed, no retries), and the backend never says it failed: the run
    waited forever. It now stops, as it did when a waiting trial starved."""
    from hpwf.engine.housekeeping import STARVED_S

    with FakeSession(FakeBackend(slots=2), FakeClock()) as session:
        c = coordinator(session, tmp_path, n_trials=3, ranks_per_trial=2, heartbeat=2.0, sample_ahead=False)
        a, b = connect(session, c, 2)
        turn(c)
        b.end.close()  # its process is gone mid-trial
        for _ in range(int((STARVED_S + 60) / 0.5)):
            session.clock.advance(0.5)
            a.beat()
            a.messages()
            turn(c)
            if c.finished():
                break
        assert c.finished() and (c.stop_reason or "").startswith("backend failed")


_STOP_WHILE_PLANNING = """
import signal, sys
import hpwf
from hpwf.engine import phases
original = phases.EnsemblePhase.prepare
def prepare(self, study, existing):
    signal.raise_signal(signal.SIGTERM)  # the preemption lands while the members are queued
    original(self, study, existing)
phases.EnsemblePhase.prepare = prepare
hpwf.run(sys.argv[1], run_dir=sys.argv[2], workers=2, progress=False)
print("returned")
"""


def test_a_stop_between_the_search_and_the_ensemble_is_recoverable(tmp_path: Path) -> None:
    """Defect 6: SIGTERM while the ensemble's members were queued killed the process (exit 143),
    with ``ensemble/run.json`` saved before every member was queued; every resume then failed."""
    import subprocess
    import sys

    import hpwf

    root = Path(__file__).resolve().parents[1]
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", _STOP_WHILE_PLANNING, str(root / "tests/workflows/toy_search_ensemble.py"),
                           str(run_dir)], capture_output=True, text=True, timeout=300, cwd=root,
                          env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0 and proc.stdout.strip().endswith("returned"), proc.stderr[-3000:]
    assert (run_dir / "ensemble" / "run.json").exists()
    hpwf.resume(run_dir, workers=2, progress=False)
    members = hpwf.load_study(run_dir / "ensemble").trials
    assert sum(t.state.name == "COMPLETE" for t in members) == 4, [(t.number, t.state) for t in members]


_KILLED_WHILE_PLANNING = """
import os, signal, sys
import optuna
import hpwf
original, queued = optuna.Study.enqueue_trial, []
def enqueue(self, *args, **kwargs):
    original(self, *args, **kwargs)
    queued.append(1)
    if len(queued) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # the node dies with 2 of the 4 members queued
optuna.Study.enqueue_trial = enqueue
hpwf.run(sys.argv[1], run_dir=sys.argv[2], workers=2, progress=False)
"""


def test_a_coordinator_killed_while_it_queues_the_members_is_resumed_with_every_member(tmp_path: Path) -> None:
    """Found by the simulator (`test_sim.py::test_an_ensemble_after_the_search_trains_each_member_once_...`):
    a SIGKILL after 2 of 4 members were queued left no ``ensemble/run.json``; the resume planned
    afresh, saw a members' study with trials in it and queued nothing, so 2 members ran as trials
    without member attributes ("carries no member attributes") and never trained."""
    import subprocess
    import sys

    import hpwf

    root = Path(__file__).resolve().parents[1]
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", _KILLED_WHILE_PLANNING, str(root / "tests/workflows/toy_search_ensemble.py"),
                           str(run_dir)], capture_output=True, text=True, timeout=300, cwd=root,
                          env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert proc.returncode == -9 and not (run_dir / "ensemble" / "run.json").exists(), proc.stderr[-3000:]
    hpwf.resume(run_dir, workers=2, progress=False)
    members = hpwf.load_study(run_dir / "ensemble").trials
    done = sorted(t.user_attrs["member"] for t in members if t.state.name == "COMPLETE")
    assert done == [0, 1, 2, 3], [(t.number, t.state, t.user_attrs) for t in members]


def test_a_proposal_never_answers_a_request_for_another_distribution(tmp_path: Path) -> None:
    """Defect 4: a value proposed ahead for x in [0, 1] answered ``suggest_float("x", 5, 10)``
    (0.60, stored with FloatDistribution(5, 10))."""
    from hpwf.wire._dists import float_dist
    from hpwf.wire._protocol import Reply, Suggest

    with FakeSession(FakeBackend(slots=1), FakeClock()) as session:
        c = coordinator(session, tmp_path, n_trials=4)  # samples ahead
        (a,) = connect(session, c, 1)
        second = None
        for _ in range(4):
            turn(c, 2)
            (task,) = a.assigns()
            if "x" in task.params:  # proposed ahead, for [0, 1]
                second = task
                break
            a.suggest(task.ticket)  # x in [0, 1]
            turn(c)
            a.messages()
            a.finish(task)
        assert second is not None
        a.end.send(Suggest(second.ticket, "x", float_dist(5.0, 10.0, None, False)))  # a range that depends on more
        turn(c)
        (reply,) = [m for m in a.messages() if isinstance(m, Reply)]
        assert 5.0 <= reply.value <= 10.0
        assert 5.0 <= c.study.trials[second.number].params["x"] <= 10.0


def test_what_is_kept_per_trial_is_freed_when_the_trial_is(tmp_path: Path) -> None:
    """Growth: StaleWatch kept every trial it had judged by the trial's own heartbeat; PBT's
    may_ask read every waiting trial of the study on every loop turn."""
    import optuna

    from hpwf.engine.health import HEARTBEAT_ATTR, RUN_ATTR, StaleWatch
    from hpwf.engine.schedulers._pbt import PopulationBasedTraining

    study = optuna.create_study()
    watch = StaleWatch("ours", 10.0)
    trials = [study.ask() for _ in range(20)]
    for t in trials:
        t.set_user_attr(RUN_ATTR, "theirs")
        t.set_user_attr(HEARTBEAT_ATTR, 1.7e9)
    watch.stale(study, set(), 0.0, 1.7e9)
    assert len(watch._seen) == 20
    for t in trials:
        study.tell(t, 1.0)
    watch.stale(study, set(), 1.0, 1.7e9)
    assert watch._seen == {}

    pbt = PopulationBasedTraining(optuna.create_study(), population=2, interval=1, generations=2)
    pbt.members = 2
    looks = []
    original = pbt.study.get_trials
    pbt.study.get_trials = lambda *a, **k: looks.append(1) or original(*a, **k)  # type: ignore[method-assign]
    assert not any(pbt.may_ask() for _ in range(100))
    assert len(looks) == 1
    pbt.study.enqueue_trial({})  # a segment queued again (a retry): the engine says so
    pbt.requeued()
    assert pbt.may_ask() and len(looks) == 2


def test_a_launched_group_takes_its_ranks_from_one_host(tmp_path: Path) -> None:
    """Defect 12, shown on the engine: under the local and Dask backends a group of K ranks runs
    ``mpirun -np K`` (no host list) on its first agent's host, yet placement gave it agents on two
    hosts (all K ranks then landed on one host, the other's slot idle). Now a launched group is
    placed on one host only; when no host can ever hold it, the run stops saying so."""
    from hpwf.engine.housekeeping import STARVED_S

    with FakeSession(FakeBackend(slots=3), FakeClock()) as session:
        c = coordinator(session, tmp_path, n_trials=1, ranks_per_trial=2, heartbeat=2.0, sample_ahead=False)
        a = session.connect("a", rank=1, host="h1")
        b = session.connect("b", rank=2, host="h2")
        turn(c, 2)
        assert a.assigns() == [] and b.assigns() == []  # one rank per host: no group of two here
        d = session.connect("d", rank=3, host="h2")
        turn(c, 2)
        (task,) = b.assigns()  # h2 now holds two: the group goes there
        assert task.ranks == 2 and d.assigns() == [] and a.assigns() == []

    with FakeSession(FakeBackend(slots=2), FakeClock()) as session:
        c = coordinator(session, tmp_path, n_trials=1, ranks_per_trial=2, heartbeat=2.0, sample_ahead=False)
        agents = [session.connect("a", rank=1, host="h1"), session.connect("b", rank=2, host="h2")]
        for _ in range(int((STARVED_S + 60) / 0.5)):
            session.clock.advance(0.5)
            for x in agents:
                x.beat()
                assert x.assigns() == []
            turn(c)
            if c.finished():
                break
        assert c.finished() and "on one host" in (c.stop_reason or "")


def test_the_stop_reason_is_a_value_not_a_prefix(tmp_path: Path) -> None:
    """Design: the stop reason carries its `StopKind`; the summary says it (``stop_kind``)."""
    import pickle

    from hpwf.engine.stops import StopKind

    with FakeSession(FakeBackend(slots=1), FakeClock()) as session:
        c = coordinator(session, tmp_path, n_trials=3)
        connect(session, c, 1)
        c.on_signal(15, None)
        turn(c)
        assert c.stop_reason == "interrupted by SIGTERM" and c.stop_reason.kind == StopKind.INTERRUPTED  # type: ignore[union-attr]
        assert c.summary()["stop_kind"] == "interrupted" and not StopKind.INTERRUPTED.fatal
        assert pickle.loads(pickle.dumps(c.stop_reason)).kind == StopKind.INTERRUPTED
