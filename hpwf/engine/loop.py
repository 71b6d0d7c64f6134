"""The coordinator: one phase's ask/tell loop as named steps over the trial ledger.

Each turn of `Coordinator.step`: accept new agents, place trials on free agents (asking Optuna
for more while a free rank could use one), tell finished results to the store, receive what the
agents sent, and now and then do the housekeeping (health, budget, summary, progress). Agents
come first: a freed agent gets its next trial before the result it brought is stored (the
result is already durable in its trial folder). While trials are short (under
`SHORT_TRIAL_S`), idle turns ask trials ahead, up to one per agent.
"""

from __future__ import annotations

import hashlib
import signal
import threading
from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution

from hpwf._channel import send_quietly
from hpwf._protocol import Abort, Assign, Done, Heartbeat, Hello, Reply, Report, Setup, Stop, Suggest, UserAttr
from hpwf.backends import Backend
from hpwf.engine import health
from hpwf.engine.ledger import AgentRecord, AgentState, TrialRecord, TrialState
from hpwf.engine.outcomes import Outcomes
from hpwf.engine.placement import choose_from_hosts, may_ask
from hpwf.engine.session import Budget, Session
from hpwf.engine.summary import progress_fields, summarize
from hpwf.errors import RunError
from hpwf.progress import Progress
from hpwf.rundir import write_summary

A, S = AgentState, TrialState
RANKS_PARAM = "ranks_per_trial"
# SIGUSR1: Slurm's warning before the walltime limit (--signal=B:USR1@...); SIGTERM: preemption.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
RESERVE_AFTER_S = 30.0  # a waiting big trial that waited this long is placed before smaller ones
SHORT_TRIAL_S = 1.0  # trials shorter than this on average are asked ahead
HOUSEKEEPING_S = 0.5
STARVED_S = 60.0  # waiting trials that no set of live agents can hold, for this long, stop the run


class Coordinator:
    """Drives one phase: asks Optuna for trials, hands them to agents, tells the results."""

    def __init__(
        self, study: optuna.Study, backend: Backend, setup: Setup, run_dir: Path, budget: Budget, *,
        run_id: str, seed: int | None, ranks_per_trial: int | Sequence[int] = 1, retries: int = 0,
        trial_timeout: float | None = None, heartbeat: float = 10.0, own_store: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self.study, self.backend, self.setup, self.run_dir, self.budget = study, backend, setup, run_dir, budget
        self.run_id, self.seed = run_id, seed
        self.trial_timeout, self.heartbeat, self.own_store = trial_timeout, heartbeat, own_store
        self.progress = progress or Progress(enabled=False)
        self.outcomes = Outcomes(study, run_dir, run_id, retries, self.progress.note)
        self.stop_reason: str | None = None
        self._fixed: dict[str, BaseDistribution] = {}  # sampled at ask time: only a searched group size
        self._size = ranks_per_trial if isinstance(ranks_per_trial, int) else None
        sizes = [ranks_per_trial] if isinstance(ranks_per_trial, int) else sorted(set(ranks_per_trial))
        self._smallest, self._biggest = min(sizes), max(sizes)
        if self._size is None:
            self._fixed[RANKS_PARAM] = CategoricalDistribution(sizes)
        self._signal: str | None = None
        self._mean_s: float | None = None  # moving average of trial durations
        self._attached: dict[Any, TrialRecord] = {}  # rank 0 of launched groups -> their trial
        self.session: Session = None  # type: ignore[assignment]  # set by `run`
        self._ticks = {"housekeeping": -1e18, "beat": -1e18, "starved": None}

    @property
    def counts(self) -> Any:
        return self.outcomes.counts

    # --- the loop ------------------------------------------------------------------------------
    def run(self, session: Session | None = None) -> dict[str, Any]:
        """Run until the budget is spent or the run stops; return the summary (also in summary.json)."""
        if session is None:
            with Session(self.backend) as own:
                return self.run(own)
        self.begin(session)
        main = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS} if main else {}
        try:
            while not self.finished():
                self.step()
            return self._finish()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.end()

    def begin(self, session: Session) -> None:
        """Join ``session``: agents of an earlier phase switch to this one; recover the last run."""
        self.session = session
        session.heartbeat = max(session.heartbeat, self.heartbeat)
        self._started = session.clock.now()
        for agent in session.ledger.agents_in(A.IDLE, A.BUSY, A.RESERVED):
            send_quietly(agent.conn, self.setup)
        self.outcomes.recover(self.own_store)
        self._stale = health.StaleWatch(self.run_id, self.heartbeat)

    def step(self, timeout: float = 0.25) -> None:
        """One turn: accept, place, tell, receive, and (every half second) housekeeping."""
        self._accept()
        self._place()
        self._tell()
        spare = self._wants_spare()
        ready = self.session.poll(0.0 if spare else timeout)
        for conn in ready:
            self._receive(conn)
        if spare and not ready:
            self._ask(ahead=True)
        if self._signal and not self.stop_reason:
            self.interrupt(self._signal)
        now = self.session.clock.now()
        if now - self._ticks["housekeeping"] >= HOUSEKEEPING_S:
            self._ticks["housekeeping"] = now
            self._housekeeping(now)

    def finished(self) -> bool:
        ledger = self.session.ledger
        if ledger.live():
            return False
        n = self.budget.n_trials
        return bool(self.stop_reason) or (n is not None and self.counts.finished_ok >= n)

    def end(self) -> None:
        """Leave the session: results in hand are told; launched groups still attached are stopped."""
        try:
            self._tell()
        except Exception:  # noqa: BLE001 - their results stay durable in their folders
            pass
        for conn in list(self._attached):
            send_quietly(conn, Stop(self.stop_reason or "done"))
            self.session.drop(conn)
        self._attached.clear()
        self.progress.close()

    # --- accept and place -----------------------------------------------------------------------
    def _accept(self) -> None:
        self.session.accept()

    def _can_ask(self) -> bool:
        n = self.budget.n_trials
        return not self.stop_reason and (n is None or self.counts.finished_ok + self.session.ledger.live() < n)

    def _place(self) -> None:
        """Place waiting trials that fit, then ask for new ones while one could use the free ranks."""
        if self.stop_reason:
            return
        ledger = self.session.ledger
        free = ledger.agent_count(A.IDLE)
        while free >= self._smallest and ledger.count(S.WAITING):
            record = self._next_waiting(free)
            if record is None:
                break
            free -= self._send(record)
        while self._can_ask() and may_ask(free, self._smallest, ledger.count(S.WAITING), ledger.working_agents()):
            record = self._ask()
            if record.size <= free:
                free -= self._send(record)
            else:
                ledger.move(record, S.WAITING)

    def _next_waiting(self, free: int) -> TrialRecord | None:
        """The oldest waiting trial that fits; once the oldest has waited RESERVE_AFTER_S, only it."""
        now = self.session.clock.now()
        for record in self.session.ledger.in_state(S.WAITING):
            if record.size <= free:
                return record
            if now - record.since > RESERVE_AFTER_S:
                return None
        return None

    def _ask(self, ahead: bool = False) -> TrialRecord:
        trial = self.study.ask(dict(self._fixed))
        trial.set_user_attr(health.RUN_ATTR, self.run_id)
        record = self.session.ledger.add_trial(trial, self._size or int(trial.params[RANKS_PARAM]))
        if ahead:
            self.session.ledger.move(record, S.WAITING)
        return record

    def _wants_spare(self) -> bool:
        """Ask ahead while trials are short, up to one waiting trial per agent."""
        if self._mean_s is None or self._mean_s >= SHORT_TRIAL_S or not self._can_ask():
            return False
        timeout = self.budget.timeout
        if timeout is not None and timeout - self.elapsed() < 5 * self._mean_s:
            return False  # near the time budget a trial asked ahead might never start
        ledger = self.session.ledger
        return ledger.count(S.WAITING) < ledger.working_agents()

    def _send(self, record: TrialRecord) -> int:
        """Give ``record`` to free agents (one host where one has room); return the ranks taken."""
        ledger = self.session.ledger
        chosen = choose_from_hosts(ledger.idle_by_host(), record.size, rank=lambda a: a.rank)
        assert chosen is not None
        mpi = self.backend.group_mode == "mpi" and record.size > 1
        trial = record.trial
        task = Assign(record.ticket, trial.number, dict(trial.params), dict(trial.distributions),
                      self._trial_seed(trial.number), group=tuple(a.rank for a in chosen) if mpi else (),
                      ranks=record.size, attrs=_carried(trial.user_attrs))
        record.agents = chosen
        record.working = set(chosen) if mpi or record.size == 1 else {chosen[0]}
        record.placed_at = self.session.clock.now()
        ledger.move(record, S.PLACED)
        for agent in chosen:  # a launched group's other ranks are busy with the ranks it starts
            ledger.move_agent(agent, A.BUSY, record.ticket)
        for agent in chosen:
            if (agent in record.working) and not send_quietly(agent.conn, task):
                self._lose(agent, "could not be reached")
        return len(chosen)

    # --- tell ---------------------------------------------------------------------------------
    def _tell(self) -> None:
        """Store the results that arrived (they are durable already); a refused one fails."""
        for record in self.session.ledger.in_state(S.DONE):
            try:
                self.outcomes.tell(record.trial, record.result)
            except ValueError as exc:
                self._fail(record, f"the study refused the result: {exc}")
                continue
            self.session.ledger.move(record, S.TOLD)

    def _fail(self, record: TrialRecord, reason: str, traceback_text: str | None = None,
              counts_as_failure: bool = True, abort: bool = True) -> None:
        """Record ``record`` as failed (once); abort its ranks that still run."""
        if record.state in (S.TOLD, S.FAILED, S.REQUEUED):
            return
        for conn in [a.conn for a in record.working] + [c for c, r in self._attached.items() if r is record]:
            if abort:
                send_quietly(conn, Abort(record.ticket, reason))
        requeued = self.outcomes.fail(record.trial, reason, traceback_text, may_retry=not self.stop_reason,
                                      counts_as_failure=counts_as_failure)
        self.session.ledger.move(record, S.FAILED)
        if requeued:
            self.session.ledger.move(record, S.REQUEUED)
        self.session.ledger.forget(record)  # once its agents are back
        if counts_as_failure:
            self.progress.note(f"trial {record.number} failed: {reason}")
        max_failures = self.budget.max_failures
        if self.counts.fail_here > max_failures and not self.stop_reason:
            self.stop_reason = f"more than {max_failures} trials failed"

    # --- receive ------------------------------------------------------------------------------
    def _receive(self, conn: Any) -> None:
        agent = self.session.ledger.agents.get(conn)
        try:
            message = conn.recv()
        except Exception as exc:  # noqa: BLE001 - a dead or broken peer must never end the run
            why = "died mid-trial" if isinstance(exc, (EOFError, OSError)) else f"sent an unreadable message ({type(exc).__name__})"
            self._lose(agent, why) if agent is not None else self._detach(conn, why)
            return
        if agent is not None:
            agent.last_seen = self.session.clock.now()
        if isinstance(message, Hello):
            self._hello(conn, agent, message)
        elif isinstance(message, Heartbeat):
            self._started_running(message.ticket)
        elif isinstance(message, Done):
            self._done(conn, agent, message)
        elif isinstance(message, (Suggest, Report, UserAttr)):
            send_quietly(conn, Reply(message.ticket, self._answer(message)))

    def _hello(self, conn: Any, agent: AgentRecord | None, hello: Hello) -> None:
        ledger = self.session.ledger
        if agent is None or agent.state != A.CONNECTING:
            return  # a second Hello: ignored
        if hello.attach is not None:  # rank 0 of a launched group carries its trial's requests
            ledger.forget_agent(agent)
            record = ledger.trials.get(hello.attach)
            if record is None or record.state not in (S.PLACED, S.RUNNING):
                send_quietly(conn, Stop("that trial is over"))
                self.session.drop(conn)
                return
            self._attached[conn] = record
            send_quietly(conn, self.setup)
            return
        agent.name, agent.host, agent.pid = hello.agent, hello.host, hello.pid
        agent.rank = hello.rank if hello.rank is not None else self.session.agents_seen
        self.session.agents_seen += 1
        ledger.move_agent(agent, A.IDLE)
        send_quietly(conn, self.setup)

    def _started_running(self, ticket: int | None) -> TrialRecord | None:
        record = self.session.ledger.trials.get(ticket) if ticket is not None else None
        if record is not None and record.state == S.PLACED:
            self.session.ledger.move(record, S.RUNNING)
        return record

    def _answer(self, message: Suggest | Report | UserAttr) -> Any:
        record = self._started_running(message.ticket)
        if record is None or record.state != S.RUNNING:
            return RuntimeError("this trial is no longer running (it was stopped, failed or timed out)")
        trial = record.trial
        try:
            if isinstance(message, Suggest):
                return _suggest(trial, message.name, message.distribution)
            if isinstance(message, Report):
                if not self.outcomes.single:
                    return False  # Optuna prunes single-objective studies only
                trial.report(message.value, message.step)
                return trial.should_prune()
            trial.set_user_attr(message.key, message.value)
            return None
        except Exception as exc:  # noqa: BLE001 - the trial side raises it in the objective
            return exc

    def _done(self, conn: Any, agent: AgentRecord | None, done: Done) -> None:
        ledger = self.session.ledger
        record = ledger.trials.get(done.ticket)
        if record is not None and done.state != "member" and record.state in (S.PLACED, S.RUNNING):
            self._mean_s = done.duration if self._mean_s is None else 0.8 * self._mean_s + 0.2 * done.duration
            record.result = done
            if done.state in ("complete", "pruned"):
                ledger.move(record, S.DONE)  # told once the agent has its next trial
            else:
                reason = (done.error or "failed").strip().splitlines()[-1]
                self._fail(record, reason, done.error)
        if agent is None or record is None or agent.ticket != done.ticket:
            if agent is not None and agent.ticket == done.ticket:
                ledger.move_agent(agent, A.IDLE)
            return
        launched = self.backend.group_mode != "mpi" and record.size > 1
        record.working.discard(agent)
        if launched or not record.working:
            self._release(record)
        else:
            ledger.move_agent(agent, A.RESERVED, record.ticket)  # the group's ranks come back together

    def _release(self, record: TrialRecord) -> None:
        """The trial's ranks are all done: its agents are free again."""
        ledger = self.session.ledger
        record.working.clear()
        for agent in record.agents:
            if agent.ticket == record.ticket and agent.state in (A.BUSY, A.RESERVED):
                ledger.move_agent(agent, A.IDLE)
        if record.state in (S.PLACED, S.RUNNING) and record.result is None and not self._attached_to(record):
            self._fail(record, "the trial's ranks ended without a result")
        ledger.forget(record)

    def _attached_to(self, record: TrialRecord) -> bool:
        return any(r is record for r in self._attached.values())

    # --- losses ---------------------------------------------------------------------------------
    def _lose(self, agent: AgentRecord, why: str) -> None:
        """An agent is gone: fail its trial; its group's other ranks are retired (MPI) or freed."""
        ledger = self.session.ledger
        record = ledger.trials.get(agent.ticket) if agent.ticket is not None else None
        self.session.busy_ended += agent.busy_total + (self.session.clock.now() - agent.busy_since
                                                       if agent.state == A.BUSY else 0.0)
        ledger.move_agent(agent, A.LOST)
        self.session.drop(agent.conn)
        if record is None:
            return
        self._fail(record, f"{agent.where()} {why}")
        record.working.discard(agent)
        for other in record.agents:
            if other.ticket != record.ticket or other.state not in (A.BUSY, A.RESERVED):
                continue
            if self.backend.group_mode == "mpi" and other in record.working:
                # It may be blocked in a collective with the dead rank, and killing it would make
                # some MPI launchers end the whole job: it gets no more work and exits at the end.
                ledger.move_agent(other, A.RETIRED)
                self.progress.note(f"rank {other.rank} retired: its group lost {agent.where()}")
            elif other not in record.working:
                ledger.move_agent(other, A.IDLE)
        record.working = {a for a in record.working if a.state == A.BUSY}
        if not record.working:
            self._release(record)

    def _detach(self, conn: Any, why: str) -> None:
        record = self._attached.pop(conn, None)
        self.session.drop(conn)
        if record is not None and record.result is None:
            self._fail(record, f"the trial's launched ranks ended without a result ({why})")

    # --- housekeeping ---------------------------------------------------------------------------
    def _housekeeping(self, now: float) -> None:
        ledger = self.session.ledger
        for agent, silent in health.silent_agents(ledger.agents_in(A.CONNECTING, A.IDLE, A.BUSY, A.RESERVED), now,
                                                  self.session.heartbeat):
            self._lose(agent, f"silent for {silent:.0f} s (no heartbeat)")
        for record in health.overdue_trials(ledger.in_state(S.PLACED, S.RUNNING), now, self.trial_timeout):
            self._fail(record, f"exceeded trial_timeout={self.trial_timeout:g} s; its workers were ended")
        if now - self._ticks["beat"] >= self.heartbeat:
            self._ticks["beat"] = now
            health.beat(self.study, self.run_id, self.heartbeat, self.session.clock.wall())
            ours = {r.number for r in ledger.trials.values()}
            for frozen, reason in self._stale.stale(self.study, ours, now, self.session.clock.wall()):
                self.outcomes.fail_stale(frozen, reason)
        self._check_budget(now)
        write_summary(self.run_dir, self.summary())
        self.progress.update(progress_fields(self))

    def _check_budget(self, now: float) -> None:
        timeout = self.budget.timeout
        if timeout is not None and self.elapsed() >= timeout and not self.stop_reason:
            self.stop_reason = "time budget reached"
        ledger = self.session.ledger
        if not self.stop_reason:
            working = ledger.working_agents()
            self.backend.heal(working)
            failure = self.backend.failure(working, self.session.agents_seen)
            if failure and working < min(self._biggest, self.backend.slots):
                self.stop_reason = f"backend failed: {failure}"
        self._check_starved(now)
        if self.stop_reason:
            for record in ledger.in_state(S.ASKED, S.WAITING):
                self._fail(record, f"not started: {self.stop_reason}", counts_as_failure=False)

    def _check_starved(self, now: float) -> None:
        """Waiting trials bigger than every live agent together, with nothing running: stop."""
        ledger = self.session.ledger
        waiting = list(ledger.in_state(S.WAITING))
        starving = waiting and not ledger.count(S.PLACED, S.RUNNING) and \
            min(r.size for r in waiting) > ledger.working_agents()
        if not starving:
            self._ticks["starved"] = None
        elif self._ticks["starved"] is None:
            self._ticks["starved"] = now
        elif now - self._ticks["starved"] > STARVED_S + health.SILENT_BEATS * self.heartbeat and not self.stop_reason:
            self.stop_reason = (f"backend failed: only {ledger.working_agents()} agents are left, "
                                f"and the waiting trials need {min(r.size for r in waiting)} ranks")

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signal = signal.Signals(signum).name  # handled in the loop, never inside a store call

    def interrupt(self, name: str) -> None:
        """Stop now: finished results are kept; running and waiting trials are queued again."""
        self.stop_reason = f"interrupted by {name}"
        self._tell()
        ledger = self.session.ledger
        for record in ledger.in_state(S.ASKED, S.WAITING, S.PLACED, S.RUNNING, S.PAUSED):
            self._fail(record, f"interrupted by {name}; it will run again on resume", counts_as_failure=False,
                       abort=False)  # its agents are stopped with the session

    # --- figures --------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.budget.elapsed_before + self.session.clock.now() - self._started

    def summary(self) -> dict[str, Any]:
        return summarize(self)

    def _finish(self) -> dict[str, Any]:
        summary = self.summary()
        write_summary(self.run_dir, summary)
        self.progress.update(progress_fields(self))
        if self.stop_reason and self.stop_reason.startswith(("backend failed", "more than")):
            raise RunError(self.stop_reason)
        return summary

    def _trial_seed(self, number: int) -> int:
        base = "none" if self.seed is None else str(self.seed)
        salt = self.run_id if self.seed is None else ""
        return int(hashlib.sha256(f"{base}:{salt}:{number}".encode()).hexdigest()[:8], 16)


def _carried(attrs: dict[str, Any]) -> dict[str, Any]:
    """User attributes a trial carries to its agent (not the run's bookkeeping)."""
    skip = (health.RUN_ATTR, health.HEARTBEAT_ATTR, "fail_reason", "traceback", "hpwf:retry_of")
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
