"""The coordinator: one phase's ask/tell loop as named steps over the trial ledger.

Each turn of `Coordinator.step`: accept new agents, place trials on free agents (asking Optuna
for more while a free rank could use one), tell finished results to the store, receive what the
agents sent, and now and then do the housekeeping (health, budget, summary, progress). Agents
come first: a freed agent gets its next trial before the result it brought is stored (the
result is already durable in its trial folder). While trials are short (under `SHORT_TRIAL_S`), idle
turns ask trials ahead, up to one per agent.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution

from hpwf.backends import Backend
from hpwf.engine import health, pausing
from hpwf.engine.ahead import SampleAhead
from hpwf.engine.housekeeping import housekeeping
from hpwf.engine.ledger import AgentState, TrialRecord, TrialState
from hpwf.engine.outcomes import Outcomes
from hpwf.engine.pruning import incremental
from hpwf.engine.placement import choose_from_hosts, may_ask, next_waiting
from hpwf.engine.receive import lose, receive
from hpwf.engine.schedulers import Scheduler
from hpwf.engine.session import Budget, Session
from hpwf.engine.stops import stop_kind
from hpwf.engine.store import STORE_GRACE_S, StoreOutage
from hpwf.engine.summary import SummaryFile, progress_fields, summarize
from hpwf.engine.transitions import Transitions
from hpwf.errors import RunError
from hpwf.progress import Progress
from hpwf.rundir import SEED_ATTR, SnapshotKeeper, carried, trial_seed, write_summary
from hpwf.wire import Assign, Setup, Stop, from_optuna, send_quietly

A, S, RANKS_PARAM = AgentState, TrialState, "ranks_per_trial"
# SIGUSR1: Slurm's warning before the walltime limit (--signal=B:USR1@...); SIGTERM: preemption.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
SHORT_TRIAL_S = 1.0  # trials shorter than this on average are asked ahead
GATHER_S = 30.0  # groups of several ranks wait this long at most for every agent to arrive
HOUSEKEEPING_S = 0.5


class Coordinator(Transitions):
    """Drives one phase: asks Optuna for trials, hands them to agents, tells the results.

    The step modules (receive, housekeeping, pausing, summary) use its public members only."""

    def __init__(
        self, study: optuna.Study, backend: Backend, setup: Setup, run_dir: Path, budget: Budget, *,
        run_id: str, seed: int | None, ranks_per_trial: int | Sequence[int] = 1, retries: int = 0,
        trial_timeout: float | None = None, heartbeat: float = 10.0, own_store: bool = False,
        progress: Progress | None = None, sample_ahead: bool = True, scheduler: Scheduler | None = None,
        store_grace: float = STORE_GRACE_S,
    ) -> None:
        self.study, self.backend, self.setup, self.run_dir, self.budget = study, backend, setup, run_dir, budget
        study.pruner = incremental(study.pruner)  # Optuna's median pruner's answers, in time flat in the study
        self.run_id, self.seed, self.trial_timeout, self.heartbeat = run_id, seed, trial_timeout, heartbeat
        self.own_store = own_store
        self.progress = progress or Progress(enabled=False)
        self.scheduler = scheduler  # pauses and resumes trials (hpwf.engine.schedulers._halving, .pbt)
        self.outcomes = Outcomes(study, run_dir, run_id, retries, self.progress.note)
        if scheduler is not None:
            self.outcomes.on_requeue = scheduler.requeued
        self.ahead = SampleAhead(study) if sample_ahead else None
        self.store = StoreOutage(store_grace, self.progress.note)  # the store failing (hpwf.engine.store)
        self.stop_reason: str | None = None  # a `StopReason` (its message and `StopKind`) once stopping
        self._fixed: dict[str, BaseDistribution] = {}  # sampled at ask time: only a searched group size
        self.fixed_size = ranks_per_trial if isinstance(ranks_per_trial, int) else None  # None: searched
        sizes = [ranks_per_trial] if isinstance(ranks_per_trial, int) else sorted(set(ranks_per_trial))
        self.smallest, self.biggest = min(sizes), max(sizes)
        if self.fixed_size is None:
            self._fixed[RANKS_PARAM] = CategoricalDistribution(sizes)
        self.caught_signal: str | None = None  # a stop signal's name: acted on in the loop
        self.mean_s: float | None = None  # moving average of trial durations
        self.attached: dict[Any, TrialRecord] = {}  # rank 0 of launched groups -> their trial
        self.session: Session = None  # type: ignore[assignment]  # set by `run`
        self._last_housekeeping = self.last_beat = float("-inf")  # engine clock of the last one
        self.starved_since: float | None = None  # waiting trials too big for the live agents since
        self.promote_seen: tuple[Any, ...] = ()  # what `pausing.promote` last looked at
        self.summary_file, self.snapshots = SummaryFile(), SnapshotKeeper(study._storage)  # summary.json; journal snapshot

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
        previous = {s: signal.signal(s, self.on_signal) for s in STOP_SIGNALS} if main else {}
        try:
            while not self.finished():
                self.step()
            return self.conclude()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.end()

    def begin(self, session: Session) -> None:
        """Join ``session``: agents of an earlier phase switch to this one; recover the last run."""
        self.session = session
        session.heartbeat = max(session.heartbeat, self.heartbeat)
        self.started = session.clock.now()
        self.busy_before = session.busy_seconds()  # an earlier phase's busy time is not this one's
        for agent in session.ledger.agents_in(A.IDLE, A.BUSY, A.RESERVED):
            send_quietly(agent.conn, self.setup)
        pausing.adopt(self, self.outcomes.recover(self.own_store, self.scheduler is not None))
        self.stale_watch = health.StaleWatch(self.run_id, self.heartbeat)
        self.store.probe = lambda: health.beat(self.study, self.run_id, self.heartbeat, session.clock.wall())

    def step(self, timeout: float = 0.25) -> None:
        """One turn: accept, place, tell, receive, and (every half second) housekeeping."""
        self.session.check_started()
        self.session.accept()
        store = self.store  # a store error never escapes a step: see hpwf.engine.store
        store.run(self, lambda: pausing.promote(self), lambda: pausing.drain(self), self._place, self._tell)
        spare = self._wants_spare()
        ready = self.session.poll(0.0 if spare else timeout)
        for conn in ready:
            store.guard(self, lambda: receive(self, conn))
        if spare and not ready:
            store.run(self, lambda: self._ask(ahead=True))
        if self.caught_signal and not self.stop_reason:
            self.interrupt(self.caught_signal)
        now = self.session.clock.now()
        if now - self._last_housekeeping >= HOUSEKEEPING_S:
            self._last_housekeeping = now
            store.guard(self, lambda: housekeeping(self, now))
            store.run(self, lambda: pausing.promote(self, always=True))

    def finished(self) -> bool:
        ledger = self.session.ledger
        kind = stop_kind(self.stop_reason)
        if ledger.live() - (ledger.count(S.PAUSED) if self.stop_reason else 0) and not (kind and kind.leaves_trials):
            return False  # a stopped run leaves paused trials paused in the study, for a resume
        n = self.budget.n_trials
        if self.scheduler is not None and not self.scheduler.may_ask():
            pausing.drain(self)  # PBT: members held for a quorum that will not come go on now
            if not self.scheduler.may_ask():  # e.g. a PBT member whose segment failed has no next segment
                if not self.stop_reason and n is not None and self.counts.finished_ok < n:
                    why = getattr(self.scheduler, "why_done", None)
                    self.stop_reason = why(self.counts.finished_ok, n) if why else \
                        f"the scheduler has nothing left to run ({self.counts.finished_ok} of {n} finished)"
                return True
        return bool(self.stop_reason) or (n is not None and self.counts.finished_ok >= n)

    def end(self) -> None:
        """Leave the session: results in hand are told; launched groups still attached are stopped."""
        with contextlib.suppress(Exception):  # their results stay durable in their folders
            self._tell()
        for conn in list(self.attached):
            send_quietly(conn, Stop(str(self.stop_reason or "done")))
            self.session.drop(conn)
        self.attached.clear()
        self.progress.close()
        self.snapshots.close()  # a snapshot being written is whole before the phase's own

    # --- accept and place -----------------------------------------------------------------------
    def can_ask(self) -> bool:
        n = self.budget.n_trials
        if self.store.failing or (self.scheduler is not None and not self.scheduler.may_ask()):
            return False
        return not self.stop_reason and (n is None or self.counts.finished_ok + self.session.ledger.live() < n)

    def _place(self) -> None:
        """Place waiting trials that fit, then ask for new ones while one could use the free ranks."""
        if self.stop_reason:
            return
        ledger = self.session.ledger
        free = ledger.agent_count(A.IDLE)
        gathering = self._gathering()  # groups wait until every host's agents could arrive
        while free >= self.smallest and ledger.count(S.WAITING):
            record = next_waiting(ledger.oldest(S.WAITING), self.session.clock.now(), self._fits(free, gathering))
            if record is None:
                break
            free -= self._send(record)
        while self.can_ask() and may_ask(free, self.smallest, ledger.count(S.WAITING), ledger.working_agents()):
            record = self._ask()
            if record.size <= self._fits(free, gathering):
                free -= self._send(record)
            else:
                ledger.move(record, S.WAITING)
        if not self.session.agents_seen:  # agents are starting: have their first trials ready
            while self.can_ask() and ledger.count(S.WAITING) < self.backend.slots // self.smallest:
                self._ask(ahead=True)

    @property
    def one_host(self) -> bool:
        """A launched group (local, Dask backends) runs all its ranks on its first agent's host
        (``mpirun -np K`` there), so its agents are taken from one host. MPI ranks form groups
        across hosts."""
        return self.backend.group_mode != "mpi" and self.biggest > 1

    def _fits(self, free: int, gathering: bool) -> int:
        """The biggest trial that could be placed now."""
        if gathering:
            return 1
        if self.one_host:
            return max((len(agents) for agents in self.session.ledger.idle_by_host().values()), default=0)
        return free

    def _gathering(self) -> bool:
        """At start-up, while agents are still arriving (up to `GATHER_S`): a group placed now
        could span hosts that would each have held it whole."""
        if self.biggest == 1 or self.session.clock.now() - self.started > GATHER_S:
            return False
        arrived = self.session.ledger.working_agents() + self.backend.unreachable_agents
        return arrived < self.backend.slots

    def _ask(self, ahead: bool = False) -> TrialRecord:
        trial = self.study.ask(dict(self._fixed))
        record = self.session.ledger.add_trial(trial, self.fixed_size or int(trial.params[RANKS_PARAM]))
        self.store.effect(self, lambda: self._mark_asked(trial))  # kept, should the store fail now
        if ahead or self.store.later:
            self.session.ledger.move(record, S.WAITING)
        if self.store.later:  # it waits for its marks, and nothing more is asked until the store answers
            raise self.store.error or OSError("the store failed")
        return record

    def _mark_asked(self, trial: optuna.Trial) -> None:
        trial.set_user_attr(health.RUN_ATTR, self.run_id)
        if self.scheduler is not None:
            self.scheduler.on_asked(trial)

    def _wants_spare(self) -> bool:
        """Ask ahead while trials are short, up to one waiting trial per agent."""
        if self.mean_s is None or self.mean_s >= SHORT_TRIAL_S or not self.can_ask():
            return False
        timeout = self.budget.timeout
        if timeout is not None and timeout - self.elapsed() < 5 * self.mean_s:
            return False  # near the time budget a trial asked ahead might never start
        ledger = self.session.ledger
        return ledger.count(S.WAITING) < ledger.working_agents()

    def _send(self, record: TrialRecord) -> int:
        """Give ``record`` to free agents (one host where one has room); return the ranks taken."""
        ledger = self.session.ledger
        chosen = choose_from_hosts(ledger.idle_by_host(), record.size, rank=lambda a: a.rank, one_host=self.one_host)
        assert chosen is not None
        mpi = self.backend.group_mode == "mpi" and record.size > 1
        trial = record.trial
        params, dists = dict(trial.params), dict(trial.distributions)
        if self.ahead is not None:
            if self.ahead.learns and ledger.count(S.DONE):
                self._tell()  # a sampler that learns proposes from every result in hand, as a round trip would
            before = set(trial._fixed_params)
            values, record.proposed = self.ahead.propose(trial)
            record.ahead_fixed = set(trial._fixed_params) - before
            params.update(values)
            dists.update(record.proposed)
        seed = trial_seed(self.seed, self.run_id, int(trial.user_attrs.get(SEED_ATTR, trial.number)))  # a replay keeps its seed
        task = Assign(record.ticket, trial.number, params, {k: from_optuna(d) for k, d in dists.items()},
                      seed, group=tuple(a.rank for a in chosen) if mpi else (),
                      ranks=record.size, attrs=carried(trial.user_attrs))
        record.agents = chosen
        record.working = set(chosen) if mpi or record.size == 1 else {chosen[0]}
        record.placed_at = self.session.clock.now()
        ledger.move(record, S.PLACED)
        for agent in chosen:  # a launched group's other ranks are busy with the ranks it starts
            ledger.move_agent(agent, A.BUSY, record.ticket)
        unreached = [a for a in chosen if a in record.working and not send_quietly(a.conn, task)]
        if unreached and len(unreached) == len(record.working):
            self._wait_again(record, unreached)  # no rank has it: it never started, so it is no failure
        for agent in unreached:
            lose(self, agent, "could not be reached")
        return len(chosen)

    # --- figures --------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.budget.elapsed_before + self.session.clock.now() - self.started

    def summary(self) -> dict[str, Any]:
        return summarize(self)

    def conclude(self) -> dict[str, Any]:
        summary = self.summary()
        write_summary(self.run_dir, summary)
        self.progress.update(progress_fields(self))
        kind = stop_kind(self.stop_reason)
        if kind is not None and kind.fatal:
            raise RunError(self.stop_reason)
        return summary
