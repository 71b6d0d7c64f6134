"""The ask/tell loop: a free agent gets the next trial at once; reports reach the pruner live.

The coordinator alone talks to Optuna and to the backend. Agents talk to it over `Hub`.
A trial of k ranks holds k agents: on MPI they form the group's communicator themselves;
on the other backends the first of them launches the k ranks (`backends/_launch.py`).

Agents come first: a freed agent gets its next trial before the result it brought is told to
the store, and while trials are short (under `SHORT_TRIAL_S`) the idle loop asks trials
ahead, up to one per agent, so that the next trial is ready without a store round trip.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState

from hpwf._channel import Hub, send_quietly
from hpwf._placement import choose_agents, may_ask, next_fitting
from hpwf._protocol import Abort, Assign, Done, Hello, Report, Reply, Setup, Stop, Suggest, UserAttr
from hpwf.agent import trial_folder
from hpwf.backends import Backend
from hpwf.errors import RunError
from hpwf.progress import Progress
from hpwf.rundir import write_summary

RUN_ATTR = "hpwf:run"
HEARTBEAT_ATTR = "hpwf:heartbeat"
ATTEMPT_ATTR = "hpwf:attempt"
RANKS_PARAM = "ranks_per_trial"
# SIGUSR1: Slurm's warning before the walltime limit (--signal=B:USR1@...); SIGTERM: preemption.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
RESERVE_AFTER_S = 30.0  # a waiting big trial that waited this long is placed before smaller ones
# Trials shorter than this on average are asked ahead: there the store's latency would keep
# agents idle. Longer trials are asked only when an agent is free, so the sampler always
# sees every finished result (asking ahead is like running one more trial at once per agent).
SHORT_TRIAL_S = 1.0


@dataclass
class Budget:
    """When to stop asking: ``n_trials`` finished (COMPLETE/PRUNED), ``timeout`` seconds overall."""

    n_trials: int | None
    timeout: float | None
    max_failures: int
    elapsed_before: float = 0.0  # seconds spent by earlier sessions of this run


@dataclass
class _Agent:
    name: str = "?"
    host: str = "?"
    pid: int = 0
    rank: int = 0
    ready: bool = False
    trial: int | None = None  # the trial this agent holds a rank for
    retired: bool = False  # its group lost a rank: it may be stuck in a collective
    group_of: int | None = None  # its last trial's number, while other ranks of that group still run
    busy_since: float = 0.0
    busy_total: float = 0.0
    last_seen: float = field(default_factory=time.time)


@dataclass
class _Running:
    trial: optuna.Trial
    members: list[Connection]  # agents holding a rank for it, leader first
    told: bool = False
    result: Done | None = None  # a finished trial's result, waiting for the loop to tell it
    attach: Connection | None = None  # the launched group's rank 0 (local/Dask backends)
    started: float = field(default_factory=time.time)


@dataclass
class _Counts:
    complete: int = 0
    pruned: int = 0
    fail: int = 0
    fail_here: int = 0  # failures in this session (for max_failures)
    best_value: float | None = None
    best_number: int | None = None
    best_params: dict[str, Any] = field(default_factory=dict)

    @property
    def finished_ok(self) -> int:
        return self.complete + self.pruned


class Session:
    """The hub, the backend and the agents: shared by the phases of a run (search, ensemble)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.hub: Hub | None = None
        self.agents: dict[Connection, _Agent] = {}

    def __enter__(self) -> Session:
        self.hub = Hub(self.backend.listen_host, self.backend.advertise_host)
        self.backend.start(self.hub.address, self.hub.authkey)
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in list(self.agents):
            send_quietly(conn, Stop("done"))
            conn.close()
        self.agents.clear()
        self.backend.close()
        if self.hub is not None:
            self.hub.close()


class Coordinator:
    """Drives one phase of a run: asks Optuna for trials, hands them to agents, tells results."""

    def __init__(
        self,
        study: optuna.Study,
        backend: Backend,
        setup: Setup,
        run_dir: Path,
        budget: Budget,
        *,
        run_id: str,
        seed: int | None,
        ranks_per_trial: int | Sequence[int] = 1,
        retries: int = 0,
        trial_timeout: float | None = None,
        heartbeat: float = 10.0,
        own_store: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self.study = study
        self.backend = backend
        self.setup = setup
        self.run_dir = run_dir
        self.budget = budget
        self.run_id = run_id
        self.seed = seed
        self.progress = progress or Progress(enabled=False)
        self.retries = retries  # a failed trial runs again (same params and attrs) this many times
        self.trial_timeout = trial_timeout
        self.heartbeat = heartbeat
        self.own_store = own_store  # the run's own journal: every trial in it is this run's
        self._last_beat = 0.0
        self.agents: dict[Connection, _Agent] = {}  # the session's, once `run` starts
        self.running: dict[int, _Running] = {}
        self.waiting: list[tuple[optuna.Trial, float]] = []  # asked, too big for the free ranks yet
        self.counts = _Counts()
        self.stop_reason: str | None = None
        # Parameters sampled at ask time: only a searched group size. Everything else is sampled
        # when the objective asks, so conditional search spaces stay exact.
        self._fixed: dict[str, BaseDistribution] = {}
        self._size = ranks_per_trial if isinstance(ranks_per_trial, int) else None
        self._smallest = ranks_per_trial if isinstance(ranks_per_trial, int) else min(ranks_per_trial)
        if self._size is None:
            self._fixed[RANKS_PARAM] = CategoricalDistribution(sorted(set(ranks_per_trial)))  # type: ignore[arg-type]
        self._single = len(study.directions) == 1
        self._started = time.time()
        self._agents_seen = 0
        self._signal: str | None = None
        self._busy_ended = 0.0  # busy seconds of agents that are gone
        self._untold: deque[int] = deque()  # finished trials whose results are not stored yet
        self._mean_s: float | None = None  # moving average of trial durations

    # --- the loop ---------------------------------------------------------------------------
    def run(self, session: Session | None = None) -> dict[str, Any]:
        """Run until the budget is spent; return the summary (also written to summary.json).

        Without a ``session`` the coordinator starts the backend and stops it at the end.
        """
        if session is None:
            with Session(self.backend) as own:
                return self.run(own)
        assert session.hub is not None
        self.agents = session.agents
        for conn, agent in self.agents.items():  # agents of an earlier phase switch to this one
            agent.busy_total = 0.0
            if agent.ready:
                send_quietly(conn, self.setup)
        self._recover_previous_session()
        previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        last_tick = 0.0
        try:
            while not self._finished():
                for conn in session.hub.take_new():
                    self.agents[conn] = _Agent()
                self._hand_out()  # freed agents get their next trial first,
                self._tell_all()  # then the results they brought are stored
                spare = self._wants_spare()
                ready = session.hub.wait([*self.agents, *self._attached()], timeout=0.0 if spare else 0.25)
                for conn in ready:
                    self._receive(conn)
                if spare and not ready:
                    self._ask_ahead()
                if self._signal and not self.stop_reason:
                    self._interrupt(self._signal)
                now = time.time()
                if now - last_tick > 0.5:
                    last_tick = now
                    self._check_budget_and_health()
                    self.progress.update(self._progress_fields())
            return self._finish()
        finally:
            with contextlib.suppress(Exception):  # results already in hand are kept if we can
                self._tell_all()
            for s, handler in previous.items():
                signal.signal(s, handler)
            for conn in self._attached():
                send_quietly(conn, Stop(self.stop_reason or "done"))
                conn.close()
            self.progress.close()

    def _finished(self) -> bool:
        if self.running or self.waiting:
            return False
        if self.stop_reason:
            return True
        n = self.budget.n_trials
        return n is not None and self.counts.finished_ok >= n

    def _can_ask(self) -> bool:
        if self.stop_reason:
            return False
        n = self.budget.n_trials
        return n is None or self.counts.finished_ok + len(self.running) + len(self.waiting) < n

    def _hand_out(self) -> None:
        """Place waiting trials that fit, then ask for new ones while one could use the free ranks.

        Trials too big for the free ranks wait (up to one per agent) while smaller ones fill
        them; once the oldest has waited RESERVE_AFTER_S, nothing passes it.
        """
        free = self._free_agents()
        while self.waiting and free:
            head_first = time.time() - self.waiting[0][1] > RESERVE_AFTER_S
            i = next_fitting([self._trial_size(t) for t, _ in self.waiting], len(free), head_first)
            if i is None:
                if head_first:
                    return
                break
            trial, _ = self.waiting.pop(i)
            free = self._place(trial, free)
        while self._can_ask() and may_ask(len(free), self._smallest, len(self.waiting), self._live_agents()):
            trial = self.study.ask(dict(self._fixed))
            trial.set_user_attr(RUN_ATTR, self.run_id)
            if self._trial_size(trial) <= len(free):
                free = self._place(trial, free)
            else:
                self.waiting.append((trial, time.time()))

    def _wants_spare(self) -> bool:
        """Ask ahead while trials are short, up to one waiting trial per agent."""
        if self._mean_s is None or self._mean_s >= SHORT_TRIAL_S or not self._can_ask():
            return False
        timeout = self.budget.timeout
        if timeout is not None and timeout - self._elapsed() < 5 * self._mean_s:
            return False  # near the time budget a trial asked ahead might never start
        return len(self.waiting) < self._live_agents()

    def _live_agents(self) -> int:
        return sum(a.ready and not a.retired for a in self.agents.values())

    def _ask_ahead(self) -> None:
        trial = self.study.ask(dict(self._fixed))
        trial.set_user_attr(RUN_ATTR, self.run_id)
        self.waiting.append((trial, time.time()))

    def _tell_next(self) -> None:
        running = self.running.get(self._untold.popleft())
        if running is None or running.result is None:
            return
        if not running.told:
            self._tell(running, running.result)
        if not running.members:
            self.running.pop(running.trial.number, None)

    def _tell_all(self) -> None:
        while self._untold:
            self._tell_next()

    def _free_agents(self) -> list[tuple[Connection, str, int]]:
        """Idle agents; the ranks of a group come back together, once its last rank is done."""
        return [(c, a.host, a.rank) for c, a in self.agents.items()
                if a.ready and a.trial is None and not a.retired and not self._group_still_running(a)]

    def _group_still_running(self, agent: _Agent) -> bool:
        if agent.group_of is None:
            return False
        running = self.running.get(agent.group_of)
        if running is None or not running.members:
            agent.group_of = None
            return False
        return True

    def _trial_size(self, trial: optuna.Trial) -> int:
        return self._size or int(trial.params[RANKS_PARAM])

    def _place(self, trial: optuna.Trial, free: list[tuple[Connection, str, int]]) -> list[tuple[Connection, str, int]]:
        """Give ``trial`` to agents chosen from ``free``; return the agents still free."""
        size = self._trial_size(trial)
        chosen = choose_agents(free, size)
        assert chosen is not None
        mpi = self.backend.group_mode == "mpi" and size > 1
        group = tuple(self.agents[c].rank for c in chosen) if mpi else ()
        task = Assign(trial.number, dict(trial.params), dict(trial.distributions),
                      self._trial_seed(trial.number), group=group, ranks=size, attrs=_carried(trial.user_attrs))
        self.running[trial.number] = _Running(trial, list(chosen))
        now = time.time()
        for i, conn in enumerate(chosen):
            agent = self.agents[conn]
            agent.trial, agent.busy_since = trial.number, now
            if (mpi or i == 0) and not send_quietly(conn, task):
                self._agent_lost(conn)
        taken = set(chosen)
        return [f for f in free if f[0] not in taken]

    def _attached(self) -> list[Connection]:
        return [r.attach for r in self.running.values() if r.attach is not None]

    def _receive(self, conn: Connection) -> None:
        if conn in self.agents:
            self.agents[conn].last_seen = time.time()
        try:
            message = conn.recv()
        except (EOFError, OSError):
            if conn in self.agents:
                self._agent_lost(conn)
            else:
                self._attach_lost(conn)
            return
        if isinstance(message, Hello):
            self._hello(conn, message)
        elif isinstance(message, Done):
            self._done(conn, message)
        elif isinstance(message, (Suggest, Report, UserAttr)):
            send_quietly(conn, Reply(message.number, self._answer(message)))
        # a Heartbeat needs no answer: receiving it was the point

    def _hello(self, conn: Connection, hello: Hello) -> None:
        if hello.attach is not None:  # rank 0 of a launched group takes over its trial's requests
            self.agents.pop(conn, None)
            running = self.running.get(hello.attach)
            if running is None or running.told or running.result is not None:
                send_quietly(conn, Stop("that trial is over"))
                conn.close()
                return
            running.attach = conn
            send_quietly(conn, self.setup)
            return
        agent = self.agents[conn]
        agent.name, agent.host, agent.pid, agent.ready = hello.agent, hello.host, hello.pid, True
        agent.rank = hello.rank if hello.rank is not None else self._agents_seen
        self._agents_seen += 1
        send_quietly(conn, self.setup)

    def _answer(self, message: Suggest | Report | UserAttr) -> Any:
        trial = self.running[message.number].trial
        try:
            if isinstance(message, Suggest):
                return _suggest(trial, message.name, message.distribution)
            if isinstance(message, Report):
                if not self._single:
                    return False  # Optuna prunes single-objective studies only
                trial.report(message.value, message.step)
                return trial.should_prune()
            trial.set_user_attr(message.key, message.value)
            return None
        except Exception as exc:  # noqa: BLE001 - the trial side raises it in the objective
            return exc

    # --- results -----------------------------------------------------------------------------
    def _done(self, conn: Connection, done: Done) -> None:
        running = self.running.get(done.number)
        if running is None:
            return
        if done.state != "member" and not running.told and running.result is None:
            d = done.duration
            self._mean_s = d if self._mean_s is None else 0.8 * self._mean_s + 0.2 * d
            if done.state in ("complete", "pruned"):
                running.result = done  # stored once the agent has its next trial
                self._untold.append(done.number)
            else:
                self._tell(running, done)
        if conn in self.agents:
            leader_of_launch = self.backend.group_mode != "mpi" and running.members[:1] == [conn]
            for member in (list(running.members) if leader_of_launch else [conn]):
                self._release(member, running)
        if not running.members and (running.told or running.result is None):
            self.running.pop(done.number, None)
            if not running.told:
                self._fail(running, "the trial's ranks ended without a result")

    def _tell(self, running: _Running, done: Done) -> None:
        trial = running.trial
        running.told = True
        if done.state == "complete":
            frozen = self.study.tell(trial, done.values[0] if self._single and done.values else done.values)
            self.counts.complete += 1
            self._consider_best(frozen)
        elif done.state == "pruned":
            frozen = self.study.tell(trial, state=TrialState.PRUNED)
            self.counts.pruned += 1
        else:
            running.told = False
            self._fail(running, (done.error or "failed").strip().splitlines()[-1], done.error)
            return
        self._write_result(frozen, done.duration)

    def _release(self, conn: Connection, running: _Running) -> None:
        if conn in running.members:
            running.members.remove(conn)
        agent = self.agents.get(conn)
        if agent is not None and agent.trial == running.trial.number:
            agent.trial = None
            agent.group_of = running.trial.number if running.members else None
            agent.busy_total += time.time() - agent.busy_since

    def _fail(self, running: _Running, reason: str, traceback_text: str | None = None) -> None:
        if running.told:
            return
        running.told = True
        trial = running.trial
        trial.set_user_attr("fail_reason", reason[:1000])
        if traceback_text:
            trial.set_user_attr("traceback", traceback_text[-8000:])
        else:
            folder = trial_folder(self.run_dir, trial.number)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "traceback.txt").write_text(reason + "\n")
        frozen = self.study.tell(trial, state=TrialState.FAIL)
        self.counts.fail += 1
        self.counts.fail_here += 1
        self._write_result(frozen, 0.0)
        attempt = int(frozen.user_attrs.get(ATTEMPT_ATTR, 0))
        if attempt < self.retries and not self.stop_reason:
            self._requeue(frozen.params, frozen.user_attrs, frozen.number, attempt + 1)
        self.progress.note(f"trial {trial.number} failed: {reason}")
        if self.counts.fail_here > self.budget.max_failures:
            self.stop_reason = self.stop_reason or f"more than {self.budget.max_failures} trials failed"

    def _agent_lost(self, conn: Connection, why: str = "died mid-trial") -> None:
        """An agent died: fail its trial, and make the rest of its group give up (no hang)."""
        agent = self.agents.pop(conn)
        conn.close()
        self._busy_ended += agent.busy_total + (time.time() - agent.busy_since if agent.trial is not None else 0.0)
        running = self.running.get(agent.trial) if agent.trial is not None else None
        if running is None:
            return
        where = f"rank {agent.rank} ({agent.name}, host {agent.host}, pid {agent.pid})"
        self._fail(running, f"{where} {why}")
        if conn in running.members:
            running.members.remove(conn)
        for member in list(running.members):
            if self.backend.group_mode == "mpi":
                # Its peers may be blocked in a collective with the dead rank, and killing them
                # would make some MPI launchers end the whole job: retire them instead. They
                # get no more work and exit once the run is over.
                running.members.remove(member)
                self.agents[member].retired = True
                self.progress.note(f"rank {self.agents[member].rank} retired: its group lost {where}")
            else:  # reserved ranks of a launched group are simply free again
                self._release(member, running)
        if running.attach is not None:
            send_quietly(running.attach, Abort(running.trial.number, f"{where} {why}"))
        if not running.members:
            self.running.pop(running.trial.number, None)

    def _attach_lost(self, conn: Connection) -> None:
        conn.close()
        for running in self.running.values():
            if running.attach is conn:
                running.attach = None
                self._fail(running, "the trial's launched ranks ended without a result")

    def _write_result(self, frozen: optuna.trial.FrozenTrial, duration: float) -> None:
        folder = trial_folder(self.run_dir, frozen.number)
        folder.mkdir(parents=True, exist_ok=True)
        result = {
            "number": frozen.number, "state": frozen.state.name, "values": frozen.values,
            "params": frozen.params, "duration_s": round(duration, 3),
        }
        (folder / "result.json").write_text(json.dumps(result, indent=1, default=str))

    # --- bookkeeping ---------------------------------------------------------------------------
    def _recover_previous_session(self) -> None:
        """Count what this run finished before; re-queue trials a dead coordinator left RUNNING.

        The budget is per run: runs that share one study each finish their own ``n_trials``.
        """
        for frozen in self.study.get_trials(deepcopy=False):
            ours = frozen.user_attrs.get(RUN_ATTR) == self.run_id
            if frozen.state == TrialState.COMPLETE:
                self.counts.complete += ours
                self._consider_best(frozen)
            elif frozen.state == TrialState.PRUNED:
                self.counts.pruned += ours
            elif frozen.state == TrialState.FAIL:
                self.counts.fail += ours
            elif frozen.state == TrialState.RUNNING and (ours or (self.own_store and RUN_ATTR not in frozen.user_attrs)):
                # (the latter: asked, then the store failed before it was marked, e.g. a full disk)
                # We hold the run lock, so whoever ran this trial is gone: fail it and run it again.
                self._fail_stale(frozen, "interrupted: its coordinator stopped; it runs again on resume")
        self._fail_silent_runs()

    def _fail_stale(self, frozen: optuna.trial.FrozenTrial, reason: str) -> None:
        stale = optuna.trial.Trial(self.study, frozen._trial_id)
        stale.set_user_attr("fail_reason", reason)
        self.study.tell(stale, state=TrialState.FAIL)
        self._requeue(frozen.params, frozen.user_attrs, frozen.number)

    def _fail_silent_runs(self) -> None:
        """RUNNING trials of other runs whose stored heartbeat is 3 heartbeats old: their
        coordinator vanished. Works on every storage (Optuna's own heartbeat is RDB-only)."""
        limit = time.time() - 3 * self.heartbeat
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            beat = frozen.user_attrs.get(HEARTBEAT_ATTR)
            if frozen.number not in self.running and isinstance(beat, (int, float)) and beat < limit:
                self._fail_stale(frozen, f"stale: no heartbeat for {time.time() - beat:.0f} s; it runs again")

    def _requeue(self, params: dict[str, Any], attrs: dict[str, Any], number: int, attempt: int | None = None) -> None:
        """Queue a trial to run again with the same parameters and the same member attributes."""
        carried = {**_carried(attrs), "hpwf:retry_of": number}
        if attempt is not None:
            carried[ATTEMPT_ATTR] = attempt
        self.study.enqueue_trial(params, user_attrs=carried)

    def _consider_best(self, frozen: optuna.trial.FrozenTrial) -> None:
        if not self._single or frozen.value is None:
            return
        best = self.counts.best_value
        better = best is None or (
            frozen.value > best if self.study.direction == optuna.study.StudyDirection.MAXIMIZE
            else frozen.value < best
        )
        if better:
            self.counts.best_value, self.counts.best_number = frozen.value, frozen.number
            self.counts.best_params = dict(frozen.params)

    def _trial_seed(self, number: int) -> int:
        base = "none" if self.seed is None else str(self.seed)
        salt = self.run_id if self.seed is None else ""
        return int(hashlib.sha256(f"{base}:{salt}:{number}".encode()).hexdigest()[:8], 16)

    def _elapsed(self) -> float:
        return self.budget.elapsed_before + time.time() - self._started

    def _check_liveness(self) -> None:
        """Heartbeats in the store; silent agents are lost; over-long trials are ended."""
        now = time.time()
        for conn, agent in list(self.agents.items()):
            if agent.trial is not None and now - agent.last_seen > 3 * self.heartbeat:
                self._agent_lost(conn, f"silent for {now - agent.last_seen:.0f} s (no heartbeat)")
        if self.trial_timeout is not None:
            for running in list(self.running.values()):
                if not running.told and running.result is None and now - running.started > self.trial_timeout:
                    self._fail(running, f"exceeded trial_timeout={self.trial_timeout:g} s; its workers were ended")
                    for conn in running.members + ([running.attach] if running.attach else []):
                        send_quietly(conn, Abort(running.trial.number, "trial_timeout"))
        if now - self._last_beat >= self.heartbeat:
            self._last_beat = now
            for running in self.running.values():
                if not running.told and running.result is None:
                    running.trial.set_user_attr(HEARTBEAT_ATTR, now)
            self._fail_silent_runs()

    def _check_budget_and_health(self) -> None:
        self._check_liveness()
        timeout = self.budget.timeout
        if timeout is not None and self._elapsed() >= timeout and not self.stop_reason:
            self.stop_reason = "time budget reached"
        if not self.stop_reason:
            ready = sum(a.ready and not a.retired for a in self.agents.values())
            self.backend.heal(len(self.agents))
            failure = self.backend.failure(ready, self._agents_seen)
            biggest = max(self._fixed[RANKS_PARAM].choices) if self._size is None else self._size  # type: ignore[attr-defined]
            if failure and ready < min(biggest, self.backend.slots):
                self.stop_reason = f"backend failed: {failure}"
        for trial, _ in list(self.waiting) if self.stop_reason else []:
            self.waiting.remove((trial, _))
            self._fail(_Running(trial, []), f"not started: {self.stop_reason}")
            self._requeue(trial.params, trial.user_attrs, trial.number)
            self.counts.fail_here -= 1
        write_summary(self.run_dir, self.summary())

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signal = signal.Signals(signum).name  # handled in the loop, never inside a store call

    def _interrupt(self, name: str) -> None:
        """Stop now: running trials are failed and queued again, so a resume re-runs them."""
        self.stop_reason = f"interrupted by {name}"
        self._tell_all()  # finished trials keep their results
        for number, running in list(self.running.items()):
            self.running.pop(number)
            for member in list(running.members):
                self._release(member, running)
            if running.told:
                continue
            self._fail(running, f"interrupted by {name}; it will run again on resume")
            self._requeue(running.trial.params, running.trial.user_attrs, number)
            self.counts.fail_here -= 1

    def _progress_fields(self) -> dict[str, Any]:
        c = self.counts
        return {
            "done": c.finished_ok, "total": self.budget.n_trials, "pruned": c.pruned, "failed": c.fail,
            "running": len(self.running), "best": c.best_value, "agents": len(self.agents),
        }

    def summary(self) -> dict[str, Any]:
        """Counts, best trial, elapsed time and rank utilisation (busy rank-seconds / available)."""
        now = time.time()
        wall = max(now - self._started, 1e-9)
        busy = self._busy_ended + sum(
            a.busy_total + (now - a.busy_since if a.trial is not None else 0.0) for a in self.agents.values()
        )
        slots = max(self.backend.slots, 1)
        c = self.counts
        return {
            "study": self.study.study_name, "complete": c.complete, "pruned": c.pruned, "fail": c.fail,
            "running": len(self.running), "n_trials": self.budget.n_trials, "timeout": self.budget.timeout,
            "best_value": c.best_value, "best_trial": c.best_number, "best_params": c.best_params,
            "elapsed_s": round(self._elapsed(), 3), "session_wall_s": round(wall, 3),
            "slots": self.backend.slots, "agents_seen": self._agents_seen,
            "utilisation": round(min(busy / (slots * wall), 1.0), 4),
            "stop_reason": self.stop_reason,
        }

    def _finish(self) -> dict[str, Any]:
        summary = self.summary()
        write_summary(self.run_dir, summary)
        self.progress.update(self._progress_fields())
        if self.stop_reason and self.stop_reason.startswith(("backend failed", "more than")):
            raise RunError(self.stop_reason)
        return summary


def _carried(attrs: dict[str, Any]) -> dict[str, Any]:
    """User attributes a re-run keeps (not the bookkeeping of the failed attempt)."""
    skip = (RUN_ATTR, HEARTBEAT_ATTR, "fail_reason", "traceback", "hpwf:retry_of")
    return {k: v for k, v in attrs.items() if k not in skip}


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """Sample with the public ``suggest_*`` API of the coordinator's Optuna trial."""
    if isinstance(dist, optuna.distributions.FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"unsupported distribution {dist!r}")
