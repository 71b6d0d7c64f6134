"""The world a simulated run lives in: the real `Coordinator` on a real Optuna study, simulated
agents on simulated hosts, faults, and the invariants checked after every step.

Single-threaded and seeded: `World(config)` with the same config replays bit for bit.
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState as OT

from hpwf.engine.loop import Coordinator
from hpwf.engine.schedulers import make_scheduler
from hpwf.engine.session import Budget
from hpwf.engine.stops import StopKind, stop_kind
from hpwf.errors import RunError
from hpwf.sim._agents import SimAgent
from hpwf.sim._plans import Plan, plans
from hpwf.sim._invariants import CheckedLedger, CheckedStorage, Invariants
from hpwf.sim._net import Events, SimBackend, SimClock, SimConn, SimSession, WouldBlock
from hpwf.rundir import RUN_ATTR
from hpwf.wire import Abort, Setup
from hpwf.sim._config import Config, MAX_RESUMES
from hpwf.sim import _ensemble


@dataclass
class World:
    config: Config
    run_dir: Path
    violations: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    partner: World | None = None  # a run sharing the study, clock and events (hpwf.sim._shared_study)
    in_ensemble: bool = False  # the ensemble's phase began (`hpwf.sim._ensemble`)
    search_study: Any = None
    members_storage: Any = None
    plan_fault: tuple[str, int, str] | None = None  # armed: fired after that many members are queued
    caught: list[str] = field(default_factory=list)  # stop signals caught between the phases
    followers: dict[int, list[Any]] = field(default_factory=dict)  # ticket -> its non-leader ranks, with a scheduler

    def __post_init__(self) -> None:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.rng = random.Random(self.config.seed * 7919 + 1)
        p = self.partner
        self.clock: SimClock = p.clock if p else SimClock()
        self.events: Events = p.events if p else Events(self.clock)
        self.storage: CheckedStorage = p.storage if p else CheckedStorage(self)
        self.invariants = Invariants(self)
        sampler = optuna.samplers.RandomSampler(seed=self.config.seed + (1 if p else 0))
        self.study: optuna.Study = optuna.load_study(study_name=p.study.study_name, storage=self.storage, sampler=sampler) if p \
            else optuna.create_study(storage=self.storage, sampler=sampler)
        self.plans: dict[int, Plan] = {}
        self.n_trials = self.config.n_trials  # the phase's budget (the ensemble's: its K members)
        self.agents: list[SimAgent] = []
        self.lost_hosts: set[str] = set()
        self.durable_live: dict[int, str] = {}  # trial number -> state its durable result had while it was live
        self.ending = False
        self.resumes = 0
        self.backend_stops = 0
        self.steps = 0
        self._conns = 0
        self._names = 0
        self.c: Coordinator | None = None
        self.session: SimSession | None = None
        self.finished = False
        self.start_coordinator()

    # --- the coordinator --------------------------------------------------------------------
    def start_coordinator(self) -> None:
        cfg = self.config
        self.ledger = CheckedLedger(self.clock.now)
        self.session = SimSession(SimBackend(cfg.agents, cfg.group_mode), self.clock, self.events, self.ledger)
        self.session.__enter__()
        setup = Setup(str(self.run_dir), None, None, heartbeat_s=cfg.heartbeat)
        timeout = cfg.time_budget if self.resumes == 0 else None
        budget = Budget(n_trials=cfg.n_trials, timeout=timeout, max_failures=10_000)
        self.c = _ensemble.coordinator(self) if self.in_ensemble else Coordinator(self.study, self.session.backend, setup, self.run_dir, budget, run_id=cfg.run_id,
                             seed=cfg.seed, retries=cfg.retries, trial_timeout=cfg.trial_timeout,
                             heartbeat=cfg.heartbeat, own_store=not cfg.shared, sample_ahead=cfg.sample_ahead,
                             ranks_per_trial=cfg.ranks, store_grace=cfg.store_grace,
                             scheduler=make_scheduler(cfg.search(), self.study) if cfg.scheduler else None)
        self.ending = False
        if self.c is None:  # the ensemble could not be planned (nothing to select from): the run ends
            self.finished = True
            return
        try:
            self.c.begin(self.session)
        except OSError as exc:  # the store failed while the resume read it: that resume exits; another follows
            self.log.append(f"t={self.clock.t:.3f} the coordinator could not start: {exc}")
            self.session.__exit__(None, None, None)
            self.resumes -= 1  # (uncounted: each such start used up a failing write of the store)
            if self.resumes < MAX_RESUMES:
                self.resume()
            else:
                self.finished = True
            return
        self.agents = [a for a in self.agents if not a.dead]
        for i in range(cfg.agents - len(self.agents)):
            self.new_agent(f"h{i % cfg.hosts}", i + 1 if cfg.group_mode == "mpi" else None)

    def new_agent(self, host: str, rank: int | None) -> SimAgent:
        assert self.session is not None
        self._names += 1
        agent = SimAgent(self, f"a{self._names}", host, rank)
        self._conns += 2
        hub_end, agent_end = SimConn(self.events, self._conns - 1), SimConn(self.events, self._conns)
        hub_end.peer, agent_end.peer = agent_end, hub_end
        self.session.hub.new.append(hub_end)
        agent.connect(hub_end, agent_end)
        self.agents.append(agent)
        return agent

    def step(self) -> None:
        """One turn of the coordinator; at a phase's end, a resume while work is left."""
        if self.finished:
            return
        c = self.c
        assert c is not None
        self.steps += 1
        try:
            if c.finished():
                self._end_phase()
                return
            stopped = c.stop_reason
            c.step(self.config.turn_s)
        except (Exception, WouldBlock):  # noqa: BLE001 - the first invariant: nothing escapes step (nor blocks)
            self.violation("an exception escaped Coordinator.step:\n" + traceback.format_exc())
            self.finished = True
            return
        self.invariants.after_step(self.ledger, stopped)

    def _end_phase(self) -> None:
        c, session, cfg = self.c, self.session, self.config
        assert c is not None and session is not None
        self.ending = True
        try:
            c.conclude()
        except RunError:
            pass
        c.end()
        if _ensemble.follows(self, stop_kind(c.stop_reason)):
            return  # the ensemble's phase began on this session
        session.__exit__(None, None, None)
        for agent in self.agents:
            agent.die()
        self.agents = []
        left = c.stop_reason and (c.counts.finished_ok < self.n_trials or (cfg.ensemble and not self.in_ensemble))
        if stop_kind(c.stop_reason) is StopKind.BACKEND:  # the same job again fails again: resume it once
            self.backend_stops += 1
        if left and self.resumes < MAX_RESUMES and self.backend_stops <= 1:
            self.resume()
        else:
            self.finished = True
            self.invariants.at_end(self.ledger, c.stop_reason)
            _ensemble.at_end(self, c.stop_reason) if self.in_ensemble else None

    def resume(self) -> None:
        """``hpwf resume``: a new coordinator on the study as left, with new agents."""
        self.resumes += 1
        self.lost_hosts.clear()  # a new job: its nodes are all there
        self.clock.t = max(self.clock.t, self.storage.failing_until)  # a user resumes once the store answers
        self.log.append(f"t={self.clock.t:.3f} resume #{self.resumes}")
        self.start_coordinator()

    # --- faults -----------------------------------------------------------------------------
    def crash_coordinator(self) -> None:
        """The coordinator dies (SIGKILL): its connections close; agents end; then a resume."""
        if self.finished or self.resumes >= MAX_RESUMES:
            return
        assert self.session is not None
        self.log.append(f"t={self.clock.t:.3f} coordinator killed")
        for conn in list(self.session.watched.values()):
            conn.close()
        for agent in self.agents:
            agent.die()
        self.agents = []
        self.events.run_due()
        self.session.release()  # (the killed process's poller)
        self.resume()

    def signal(self, name: str = "SIGTERM") -> None:
        if self.c is not None and not self.finished:
            import signal as _signal

            self.c.on_signal(getattr(_signal, name), None)

    def live_agents(self) -> list[SimAgent]:
        return [a for a in self.agents if not a.dead]

    def pick(self, index: int) -> SimAgent | None:
        live = self.live_agents()
        return live[index % len(live)] if live else None

    def crash(self, index: int) -> None:
        agent = self.pick(index)
        if agent is not None:
            self.log.append(f"t={self.clock.t:.3f} {agent.name} crashes")
            agent.die()
            self.restart(agent)

    def lose_node(self, index: int) -> None:
        hosts = sorted({a.host for a in self.live_agents()})
        if len(hosts) < 2:
            return  # the last node is never lost: nothing could finish the run
        host = hosts[index % len(hosts)]
        self.lost_hosts.add(host)
        self.log.append(f"t={self.clock.t:.3f} node {host} lost")
        for agent in self.live_agents():
            if agent.host == host:
                agent.die()

    def freeze(self, index: int, seconds: float, beats: bool) -> None:
        agent = self.pick(index)
        if agent is None or agent.frozen:
            return
        agent.frozen, agent.beats_when_frozen = True, beats
        self.log.append(f"t={self.clock.t:.3f} {agent.name} frozen {seconds:g} s (beats={beats})")

        def thaw() -> None:
            agent.frozen = False
            agent.on_message()
        self.events.after(seconds, thaw)

    def half_frame(self, index: int, then: str) -> None:
        """An agent's next `Done` is cut mid-frame; then it is silent for good, or dies."""
        agent = self.pick(index)
        if agent is not None:
            agent.half_frame = then

    def delay_link(self, index: int, seconds: float) -> None:
        agent = self.pick(index)
        if agent is not None:
            agent.delay = seconds

    def run_for(self, seconds: float) -> None:
        end = self.clock.t + seconds
        while not self.finished and self.clock.t < end:
            self.step()

    def restart(self, agent: SimAgent) -> None:
        """A Dask agent's process ends: its worker starts another after a second (not MPI ranks,
        not on a lost node, not once the run ends)."""
        if self.config.group_mode == "mpi" or agent.host in self.lost_hosts or self.ending:
            return
        session = self.session

        def again() -> None:
            if not self.ending and self.session is session and not self.finished:
                self.new_agent(agent.host, None)
        self.events.after(1.0, again)

    # --- what agents report -------------------------------------------------------------------
    def plan_for(self, number: int) -> Plan:
        if number not in self.plans:
            self.plans[number] = plans(random.Random(self.config.seed * 1_000_003 + number), self.config.longest)
        return self.plans[number]

    def durable(self, number: int, state: str, folder: Path, agent: SimAgent) -> None:
        if self.c is None or Path(self.c.run_dir) != folder:
            return  # a trial of an earlier phase (a retired rank's) ended in a later one
        trial = self.storage.get_trial(self.storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number))
        if trial.state == OT.RUNNING and state in ("complete", "pruned"):
            self.durable_live[number] = state
        if trial.user_attrs.get(RUN_ATTR, self.c.run_id) != self.c.run_id:  # (the ensemble's phase: its own run id)
            self.violation(f"{agent.name} of run {self.c.run_id} trained trial {number} of run {trial.user_attrs[RUN_ATTR]}")

    def aborted(self, agent: SimAgent, message: Abort) -> None:
        if self.config.group_mode == "mpi":
            self.violation(f"{agent.name}, an MPI rank, got an Abort (ticket {message.ticket}): it would end the job")
        elif message.ticket not in agent.tickets:
            self.violation(f"{agent.name} got an Abort for ticket {message.ticket}, a trial it never ran")

    def stopped(self, agent: SimAgent) -> None:
        if not self.ending and self.config.group_mode == "mpi":
            self.violation(f"{agent.name}, an MPI rank, was told to stop while the run goes on")

    def coordinator_gone(self, agent: SimAgent) -> None:
        """The coordinator hung up (it dropped this agent): the process ends; Dask starts another."""
        agent.die()
        self.restart(agent)

    def violation(self, text: str) -> None:
        self.violations.append(f"t={self.clock.t:.3f} step {self.steps}: {text}")

    def bound_s(self) -> float:
        """Virtual seconds within which every run must end (liveness)."""
        cfg = self.config
        timeout = cfg.trial_timeout if cfg.group_mode != "mpi" else None  # MPI ranks go on until the trial returns
        per_trial = min(cfg.longest, timeout or cfg.longest) + 10 * cfg.heartbeat + 5
        waves = (cfg.n_trials * (cfg.retries + 2)) / max(1, cfg.agents // 2) + 2
        return 1000.0 + (waves + 10) * per_trial * (MAX_RESUMES + 1)
