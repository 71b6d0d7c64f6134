"""Search efficiency in virtual time: hpwf's real `Coordinator`, sampler, pruner and scheduler
(built from a real `hpwf.Search`, as a run builds them) against simulated agents that train a
`Benchmark` step by step, each step costing the virtual seconds the benchmark says. No faults.

An agent asks the coordinator for each parameter it was not proposed ahead (`Suggest`), reports
every step (`Report`) when the search prunes or schedules, and obeys the answer: go on, prune,
or pause (its state is kept as the trial's checkpoint; a resumed trial, or a PBT segment that
exploits another member, restores the checkpoint its ``hpwf:restore`` attribute names). Every
value computed is logged with its virtual time, so the anytime regret is exact.

    >>> from hpwf.sim import hartmann, run_search
    >>> from hpwf.workflow import Search
    >>> out = run_search(hartmann(3), Search(sampler="random", pruner="none", n_trials=4, seed=1), workers=2)
    >>> out.trials_done
    4
"""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import InMemoryStorage

from hpwf.engine import Budget, Coordinator
from hpwf.engine.schedulers import make_scheduler
from hpwf.sim._agents import SimAgent
from hpwf.sim._plans import ending_of, restore_point
from hpwf.sim._benchmarks import Benchmark
from hpwf.sim._net import Events, SimBackend, SimClock, SimConn, SimSession
from hpwf.wire import Abort, Assign, Done, DoneState, Reply, Report, Setup, Stop, Suggest, float_dist
from hpwf.workflow import Search

START = 1000.0  # the virtual clock's start (as `hpwf.sim._net.SimClock`)
QUIET = 1e7  # heartbeats this far apart: no agent is ever taken as silent (faults are off)


@dataclass
class Outcome:
    """What a virtual search did: every value with its virtual time, and the engine's own cost."""

    curve: list[tuple[float, float, int]] = field(default_factory=list)  # (virtual s, value, step), in order
    trials_done: int = 0
    virtual_s: float = 0.0
    cpu_s: float = 0.0  # the coordinator's process time (sampler, pruner, scheduler, engine)
    sampler_s: float = 0.0  # of which in the sampler (ask and proposals)
    resumed: int = 0  # attempts that continued from a checkpoint (a promoted trial, a PBT segment)
    paused: int = 0
    trial_s: list[float] = field(default_factory=list)  # each finished attempt's virtual length
    study: optuna.Study | None = None

    def incumbent(self) -> list[tuple[float, float]]:
        """(virtual s, best value so far) at each improvement: monotone non-increasing."""
        out: list[tuple[float, float]] = []
        for t, v, _ in self.curve:
            if not out or v < out[-1][1]:
                out.append((t, v))
        return out


class _Timed(optuna.samplers.BaseSampler):
    """Wraps a sampler to count its process time (the rest is the engine's)."""

    def __init__(self, inner: optuna.samplers.BaseSampler, outcome: Outcome) -> None:
        self.inner, self.outcome = inner, outcome

    def _timed(self, name: str, *args: Any) -> Any:
        t0 = time.process_time()
        try:
            return getattr(self.inner, name)(*args)
        finally:
            self.outcome.sampler_s += time.process_time() - t0

    def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
        return self._timed("infer_relative_search_space", study, trial)

    def sample_relative(self, study: Any, trial: Any, space: Any) -> Any:
        return self._timed("sample_relative", study, trial, space)

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        return self._timed("sample_independent", study, trial, name, dist)

    def before_trial(self, study: Any, trial: Any) -> None:
        self._timed("before_trial", study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self._timed("after_trial", study, trial, state, values)


class BenchAgent(SimAgent):
    """A simulated agent whose trials train a `Benchmark` (the sim's agent contract, no faults)."""

    runner: _Runner
    _asking: str | None = None  # the parameter asked for and not answered yet

    def _handle(self, message: Any) -> None:
        if isinstance(message, Setup):
            self.setup = message
        elif isinstance(message, Assign):
            self._begin(message)
        elif isinstance(message, Reply):
            if self.task is not None and message.ticket == self.task.ticket:
                self._answer(message.value)
        elif isinstance(message, Abort):
            if self.task is not None and message.ticket == self.task.ticket:
                self.task = None
        elif isinstance(message, Stop):
            self.stopped = True
            self.die()

    def _begin(self, task: Assign) -> None:
        bench = self.runner.bench
        self.task, self._epoch = task, self._epoch + 1
        self._params = {k: v for k, v in task.params.items() if k in bench.space}
        self._used = dict(self._params)
        restore = restore_point(task)
        if restore:
            self.runner.outcome.resumed += 1
            self._step, self._state = restore[1], self.runner.checkpoints[restore[0]]
        else:
            self._step, self._state = 0, bench.initial_state
        self._started = self.world.clock.t
        self._ask_next()

    def _ask_next(self) -> None:
        missing = [n for n in self.runner.bench.space if n not in self._params]
        if missing:
            self._asking = missing[0]
            low, high, log = self.runner.bench.space[self._asking]
            self._send(Suggest(self.task.ticket, self._asking, float_dist(low, high, None, log)))  # type: ignore[union-attr]
        else:
            self._asking = None
            self._train()

    def _answer(self, value: Any) -> None:
        if self._asking is not None:
            self._params[self._asking] = float(value)
            self._ask_next()
        elif (ending := ending_of(value)) is not None:
            self._end(ending)
        else:
            self._step += 1
            self._train()

    def _train(self) -> None:
        """Schedule the next step's end after its virtual cost; the last step completes the trial."""
        epoch, bench = self._epoch, self.runner.bench
        if self._step >= bench.steps:
            self._end(DoneState.COMPLETE)
            return

        def stepped() -> None:
            if epoch != self._epoch or self.dead or self.task is None:
                return
            task = self.task
            rng = random.Random(f"{self.runner.seed}:{task.number}:{self._step}")
            value, self._state = bench.value(self._params, self._step, self._state, rng)
            self._value = value
            self.runner.outcome.curve.append((self.world.clock.t - START, value, self._step))
            if self.runner.reports:
                used, self._used = self._used or None, {}
                self._send(Report(task.ticket, self._step, value, used=used))
            else:
                self._step += 1
                self._train()
        self.world.events.after(bench.step_s(self._step), stepped)

    def _end(self, state: DoneState) -> None:
        task = self.task
        assert task is not None
        if state == DoneState.PAUSED:
            self.runner.checkpoints[task.number] = self._state
            self.runner.outcome.paused += 1
        values = [self._value] if state == DoneState.COMPLETE else None
        self.runner.outcome.trial_s.append(self.world.clock.t - self._started)
        self.task = None
        self._send(Done(task.ticket, state, values, None, self.world.clock.t - self._started,
                        used=self._used or None))


class _Runner:
    """The world of one virtual search: clock, events, agents, checkpoints (the `World` calls
    its agents make are answered here; no fault ever happens)."""

    def __init__(self, bench: Benchmark, search: Search, workers: int, seed: int, run_dir: Path) -> None:
        self.bench, self.seed, self.outcome = bench, seed, Outcome()
        self.clock = SimClock(START)
        self.events = Events(self.clock)
        self.checkpoints: dict[int, Any] = {}
        self.reports = search.scheduler != "none" or search.pruner_name not in ("none", None)
        self.config = type("Cfg", (), {"group_mode": "launch"})()
        sampler = _Timed(search.make_sampler(seed), self.outcome)
        pruner = search.make_pruner() if search.scheduler == "none" else optuna.pruners.NopPruner()
        self.study = optuna.create_study(storage=InMemoryStorage(), sampler=sampler, pruner=pruner)
        self.session = SimSession(SimBackend(workers), self.clock, self.events)
        self.session.__enter__()
        budget = Budget(n_trials=search.n_trials, timeout=search.timeout, max_failures=10_000)
        self.c = Coordinator(self.study, self.session.backend, Setup(str(run_dir), None, None, heartbeat_s=QUIET),
                             run_dir, budget, run_id="virtual", seed=seed, heartbeat=QUIET, own_store=True,
                             sample_ahead=search.sample_ahead, scheduler=make_scheduler(search, self.study))
        self.c.begin(self.session)
        for i in range(workers):
            self._agent(i)

    def _agent(self, i: int) -> None:
        agent = BenchAgent(self, f"a{i}", f"h{i // 16}", None)  # type: ignore[arg-type]
        agent.runner = self
        hub_end, agent_end = SimConn(self.events, 2 * i + 1), SimConn(self.events, 2 * i + 2)
        hub_end.peer, agent_end.peer = agent_end, hub_end
        self.session.hub.new.append(hub_end)
        agent.connect(hub_end, agent_end)

    # what `SimAgent` asks its world (no faults here)
    def aborted(self, agent: SimAgent, message: Abort) -> None:
        pass

    def stopped(self, agent: SimAgent) -> None:
        pass

    def restart(self, agent: SimAgent) -> None:
        pass

    def coordinator_gone(self, agent: SimAgent) -> None:
        agent.die()

    def run(self, max_virtual_s: float | None) -> Outcome:
        t0 = time.process_time()
        while not self.c.finished():
            if max_virtual_s is not None and self.clock.t - START >= max_virtual_s:
                break
            self.c.step(QUIET)
        self.c.end()
        self.session.__exit__(None, None, None)
        out = self.outcome
        out.cpu_s = time.process_time() - t0
        out.virtual_s = self.clock.t - START
        out.trials_done = self.c.counts.finished_ok
        out.study = self.study
        return out


def run_search(bench: Benchmark, search: Search, workers: int, seed: int | None = None,
               max_virtual_s: float | None = None) -> Outcome:
    """Run ``search`` (its sampler, pruner, scheduler, budget) on ``bench`` with ``workers``
    simulated agents; stop at its budget or at ``max_virtual_s`` virtual seconds."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    seed = search.seed if seed is None else seed
    shm = Path("/dev/shm")  # the engine's summary file is rewritten often: in memory where there is one
    with tempfile.TemporaryDirectory(prefix="hpwf-virtual-", dir=shm if shm.is_dir() else None) as tmp:
        return _Runner(bench, search, workers, seed or 0, Path(tmp)).run(max_virtual_s)
