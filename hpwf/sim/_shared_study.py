"""Two runs sharing one study: two `World` s (each its own `Coordinator`, agents and run directory)
on one Optuna storage, one virtual clock and one event queue, their turns interleaved
deterministically, drawn into one seed in ten (`python -m hpwf.sim --seed N --shared-study` for any).

Faults: each run's own (crashes, frozen agents, signals, a coordinator killed then resumed), and
a coordinator frozen (no turn at all) long enough, or not, that the other run sees its heartbeat
stale, fails its RUNNING trials and queues them again.

Invariants, besides each run's own (`hpwf.sim._invariants`): nothing escapes either ``step``; every
trial of the shared study is finished exactly once (the shared storage reports a second tell); no
run trains a trial another run owns (`World.durable`); the budget is per run, as the README says
("several runs share one storage: each run has its own budget"): each run that ends without a stop
finishes exactly its ``n_trials`` trials of its own (``hpwf:run``); no trial is left RUNNING.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from optuna.trial import TrialState as OT

from hpwf.rundir import close_results_logs
from hpwf.sim._config import Config
from hpwf.sim._world import World

SHARE = 0.1  # the fraction of drawn schedules that are two runs on one study
Action = tuple[Any, ...]


def drawn(seed: int) -> bool:
    return random.Random(seed ^ 0x5A5E).random() < SHARE


def draw(seed: int, config: Config) -> tuple[list[Config], list[Action]]:
    """Two runs' configs (the second with its own agents and budget) and the faults, each
    aimed at one run: ``(run, action...)``."""
    rng = random.Random(seed ^ 0x5A5E)
    rng.random()
    base = replace(config, scheduler=None, shared=True, time_budget=None, ensemble=0)  # (no ensemble after it)
    other = replace(base, run_id="sim-run-b", agents=(k := rng.choice([1, 2, 4])), hosts=min(k, base.hosts),
                    ranks=min(base.ranks, k), n_trials=rng.randint(1, 20))
    hb = base.heartbeat
    actions: list[Action] = []
    for _ in range(rng.randint(1, 8)):
        run, kind = rng.randrange(2), rng.choices(["advance", "freeze_coordinator", "crash", "freeze", "signal",
                                                   "kill_coordinator"], [35, 30, 10, 10, 5, 5])[0]
        if kind == "advance":
            actions.append((run, "advance", round(rng.uniform(0, max(1.0, base.longest * 2)), 3)))
        elif kind == "freeze_coordinator":  # beyond 4 heartbeats, the other run sees its beat stale
            actions.append((run, kind, round(rng.choice([0.5, 2, 6, 12, 12]) * hb, 3)))
        elif kind == "freeze":
            actions.append((run, kind, rng.randrange(1 << 16), round(rng.uniform(0.1, 10 * hb), 3), rng.random() < 0.5))
        elif kind == "signal":
            actions.append((run, kind, rng.choice(["SIGTERM", "SIGUSR1", "SIGINT"])))
        elif kind == "crash":
            actions.append((run, kind, rng.randrange(1 << 16)))
        else:
            actions.append((run, kind))
    return [replace(base, run_id="sim-run-a"), other], actions


class Shared:
    """Two worlds on one study; ``advance`` gives each its turns in order, one frozen skips its own."""

    def __init__(self, configs: list[Config], folder: Path) -> None:
        (folder / "a").mkdir()
        (folder / "b").mkdir()
        first = World(configs[0], folder / "a")
        self.worlds = [first, World(configs[1], folder / "b", partner=first)]
        self.frozen_until = [float("-inf"), float("-inf")]
        self.clock = first.clock

    @property
    def violations(self) -> list[str]:
        return [f"run {w.config.run_id}: {v}" for w in self.worlds for v in w.violations]

    @property
    def finished(self) -> bool:
        return all(w.finished for w in self.worlds)

    def turn(self) -> None:
        moved = False
        for i, w in enumerate(self.worlds):
            if not w.finished and self.clock.t >= self.frozen_until[i]:
                w.step()
                moved = True
        if not moved:  # one run has ended, the other is frozen: time goes on without turns
            self.clock.t = min(t for t in self.frozen_until if t > self.clock.t)
            self.worlds[0].events.run_due()

    def advance(self, seconds: float) -> None:
        end = self.clock.t + seconds
        while not self.finished and not self.violations and self.clock.t < end:
            self.turn()

    def apply(self, action: Action) -> None:
        run, kind, args = action[0], action[1], action[2:]
        w = self.worlds[run]
        w.log.append(f"t={self.clock.t:.3f} {action}")
        if kind == "advance":
            self.advance(args[0])
        elif kind == "freeze_coordinator":
            self.frozen_until[run] = self.clock.t + args[0]
        elif kind == "freeze":
            w.freeze(*args)
        elif kind == "crash":
            w.crash(args[0])
        elif kind == "signal":
            w.signal(args[0])
        elif kind == "kill_coordinator":
            w.crash_coordinator()

    def finish(self) -> None:
        deadline = self.clock.t + sum(w.bound_s() for w in self.worlds)
        while not self.finished and not self.violations:
            if self.clock.t > deadline:
                self.worlds[0].violation("liveness: the two runs have not ended")
                return
            self.turn()
        if not self.violations:
            trials = self.worlds[0].study.get_trials(deepcopy=False)
            for t in trials:
                if t.state == OT.RUNNING:
                    self.worlds[0].violation(f"trial {t.number} of the shared study left RUNNING")


def run_shared(seed: int, config: Config) -> tuple[Shared, list[Action]]:
    configs, actions = draw(seed, config)
    with tempfile.TemporaryDirectory(prefix="hpwf-sim-shared-") as tmp:
        shared = Shared(configs, Path(tmp))
        try:
            for action in actions:
                if shared.finished or shared.violations:
                    break
                shared.apply(action)
            if not shared.violations:
                shared.finish()
        finally:  # this process's results logs of both runs, and their pollers
            close_results_logs(Path(tmp))
            for world in shared.worlds:
                if world.session is not None:
                    world.session.release()
    return shared, actions
