"""Schedules of faults, drawn from a seed, run against a `World`; a failing one replays from its seed.

A schedule is a list of actions, each a tuple: ``("advance", seconds)`` (let the run go on in
virtual time), ``("crash", i)``, ``("lose_node", i)``, ``("freeze", i, seconds, beats)``,
``("delay", i, seconds)``, ``("signal", name)``, ``("kill_coordinator",)``, ``("hang_rank", i)``,
``("store_errors", n)`` (the store's next n writes of a trial raise OSError), ``("store_outage", seconds)``
(every store write fails for that long: `hpwf.sim._store_faults`, drawn into one seed in five), ``("half_frame", i, then)``
(agent i's next Done is cut mid-frame, then it is "silent" or dies), ``("plan_kill", j)`` and
``("plan_signal", j, name)`` (the coordinator killed, or a stop signal, once the ensemble's j-th
member is queued: `hpwf.sim._ensemble`), ``("hang_leader", i)`` (the next MPI trial agent i leads never
returns; it beats on); the last four come from `extra_faults`. After the last action
the run goes on, without faults, until it ends (it must, within `World.bound_s`).
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpwf.sim import _shared_study as shared_study, _store_faults as store_faults
from hpwf.rundir import close_results_logs
from hpwf.sim._world import World
from hpwf.sim._config import Config

Action = tuple[Any, ...]
MAX_STEPS = 400_000
SCRATCH = Path("/dev/shm")  # in memory where there is one: a run directory's writes cost no disk


@dataclass
class Outcome:
    seed: int
    config: Config
    actions: list[Action]
    violations: list[str]
    steps: int
    virtual_s: float
    shared: bool = False  # two runs on one study

    def replay_line(self) -> str:
        store = " --store-errors" if any(a[0] == "store_errors" for a in self.actions) else ""
        return f"python -m hpwf.sim --seed {self.seed}" + (" --big" if self.config.agents > 16 else "") + store + \
            (" --shared-study" if self.shared else " --no-shared-study")


def draw_actions(rng: random.Random, config: Config, count: int, store_errors: bool = False) -> list[Action]:
    """``count`` faults for ``config``; counted store errors only when asked (store outages are
    drawn into the default schedules by `hpwf.sim._store_faults.with_outages`)."""
    horizon = max(1.0, config.longest * 2)
    out: list[Action] = []
    for _ in range(count):
        kind = rng.choices(["advance", "crash", "lose_node", "freeze", "delay", "signal", "kill_coordinator",
                            "hang_rank", "store_errors"], [40, 12, 5, 12, 10, 6, 5, 5, 4 if store_errors else 0])[0]
        i = rng.randrange(1 << 16)
        if kind == "advance":
            out.append(("advance", round(rng.uniform(0, horizon), 3)))
        elif kind in ("crash", "lose_node", "hang_rank"):
            out.append((kind, i))
        elif kind == "freeze":
            out.append(("freeze", i, round(rng.uniform(0.1, 10 * config.heartbeat), 3), rng.random() < 0.5))
        elif kind == "delay":
            out.append(("delay", i, round(rng.choice([0.0, 0.01, 0.5, 3.0, 2 * config.heartbeat]), 3)))
        elif kind == "signal":
            out.append(("signal", rng.choice(["SIGTERM", "SIGUSR1", "SIGINT"])))
        elif kind == "store_errors":
            out.append(("store_errors", rng.choice([1, 2, 5])))
        else:
            out.append(("kill_coordinator",))
    return out


def extra_faults(seed: int, config: Config, actions: list[Action]) -> list[Action]:
    """Faults added after the first draw, from their own generator (so a seed's older faults stay
    as they were): in one seed of four, a half-sent frame at a random point; with an ensemble, in
    one of two, the coordinator killed or a stop signal while its members are queued."""
    rng, out = random.Random(seed ^ 0xF7A3E), list(actions)
    if rng.random() < 0.25:
        out.insert(rng.randint(0, len(out)), ("half_frame", rng.randrange(1 << 16), rng.choice(["silent", "die"])))
    if config.ensemble and rng.random() < 0.5:
        j = rng.randint(1, config.ensemble)
        out.insert(0, ("plan_kill", j) if rng.random() < 0.5 else
                   ("plan_signal", j, rng.choice(["SIGTERM", "SIGUSR1", "SIGINT"])))
    if config.group_mode == "mpi" and config.ranks > 1 and config.trial_timeout and rng.random() < 0.5:
        out.insert(rng.randint(0, len(out)), ("hang_leader", rng.randrange(1 << 16)))
    return out


def apply(world: World, action: Action) -> None:
    kind = action[0]
    if kind == "advance":
        world.run_for(action[1])
    elif kind == "crash":
        world.crash(action[1])
    elif kind == "lose_node":
        world.lose_node(action[1])
    elif kind == "hang_rank":  # a non-leader MPI rank will hang after its leader's Done (still beating)
        agent = world.pick(action[1])
        if agent is not None and world.config.group_mode == "mpi" and world.config.ranks > 1:
            agent.hangs_after_done = True
            world.log.append(f"t={world.clock.t:.3f} {agent.name} will hang after its leaders' Done")
    elif kind == "freeze":
        world.freeze(action[1], action[2], action[3])
    elif kind == "delay":
        world.delay_link(action[1], action[2])
    elif kind == "signal":
        world.signal(action[1])
    elif kind == "kill_coordinator":
        world.crash_coordinator()
    elif kind == "store_errors":  # the store's next n writes of a trial raise OSError
        world.storage.failing_writes = action[1]
        world.log.append(f"t={world.clock.t:.3f} the next {action[1]} store write(s) fail")
    elif kind == "store_outage":
        store_faults.outage(world, action[1])
    elif kind == "half_frame":
        world.half_frame(action[1], action[2])
    elif kind == "hang_leader":  # the next MPI trial it leads never returns, its heartbeat thread beating on
        agent = world.pick(action[1])
        if agent is not None and world.config.group_mode == "mpi" and world.config.trial_timeout:
            agent.hangs_as_leader = True
            world.log.append(f"t={world.clock.t:.3f} {agent.name} will hang in the next trial it leads")
    elif kind in ("plan_kill", "plan_signal"):
        world.plan_fault = None if world.in_ensemble else (kind, action[1], action[2] if len(action) > 2 else "")
    else:
        raise ValueError(f"unknown action {action!r}")


def finish(world: World) -> None:
    """Run on without faults until the run ends; a run that does not end in time is a violation."""
    for agent in world.agents:
        agent.delay = 0.0
    deadline = world.clock.t + world.bound_s()
    while not world.finished:
        if world.clock.t > deadline or world.steps > MAX_STEPS:
            world.violation(f"liveness: the run has not ended after {world.clock.t - 1000:.0f} virtual s "
                            f"({world.steps} steps)")
            return
        world.step()


def run(config: Config, actions: list[Action], run_dir: Path | None = None) -> World:
    if run_dir is None:
        with tempfile.TemporaryDirectory(prefix="hpwf-sim-", dir=SCRATCH if SCRATCH.is_dir() else None) as tmp:
            return run(config, actions, Path(tmp))
    world = World(config, run_dir)
    try:
        for action in actions:
            if world.finished or world.violations:
                break
            world.log.append(f"t={world.clock.t:.3f} {action}")
            apply(world, action)
        if not world.violations:
            finish(world)
    finally:  # the simulated agents share this process: their results logs and pollers close with the run
        close_results_logs(run_dir)
        if world.session is not None:
            world.session.release()
    return world


def run_seed(seed: int, big: bool = False, store_errors: bool = False, shared: bool | None = None) -> Outcome:
    """The schedule of ``seed``: its config and its faults, drawn and run; two runs on one study
    (`hpwf.sim._shared_study`) for one seed in ten, or as ``shared`` says."""
    config = Config.draw(seed, big)
    if shared if shared is not None else shared_study.drawn(seed):
        two, pairs = shared_study.run_shared(seed, config)
        return Outcome(seed, config, pairs, two.violations, sum(w.steps for w in two.worlds), two.clock.t - 1000.0,
                       shared=True)
    rng = random.Random(seed ^ 0x5EED)
    actions = store_faults.with_outages(seed, config, extra_faults(seed, config, draw_actions(rng, config, rng.randint(0, 12), store_errors)))
    world = run(config, actions)
    return Outcome(seed, config, actions, world.violations, world.steps, world.clock.t - 1000.0)
