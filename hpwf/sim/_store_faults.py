"""Store faults in simulated runs: the study's store failing for a while (a journal on NFS answering
EIO, a dropped database connection), drawn into one schedule in five.

An outage makes every write of the store (a new trial, a trial's state, its attributes) raise
`OSError` for a stretch of virtual time: a short burst, or (one outage in four) longer than the
run's `Config.store_grace`, which stops the run (`StopKind.STORE`); the simulator then resumes it
once the store answers, from the run directory and the store as left, as a user would.

Invariants (`check`): nothing escapes `Coordinator.step` (the world's first invariant); once the
store has answered for longer than the longest backoff, the coordinator keeps no effect and no
failure for it (everything kept was stored); the study agrees with the ledger and the budget is
exact (the world's invariants, after every step and at the end).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from hpwf.engine.store import MAX_BACKOFF_S

if TYPE_CHECKING:
    from hpwf.sim._config import Config
    from hpwf.sim._world import World

SHARE = 0.2  # the fraction of drawn schedules with store outages


def with_outages(seed: int, config: Config, actions: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``actions`` with 1-3 store outages put among them, for one seed in five (its own random
    stream: the other faults stay as their seed drew them)."""
    rng = random.Random(seed ^ 0x570E)
    if rng.random() >= SHARE:
        return actions
    out = list(actions)
    for _ in range(rng.randint(1, 3)):
        long = rng.random() < 0.25
        seconds = config.store_grace * rng.uniform(1.2, 2.0) if long else rng.choice([0.05, 0.6, 3.0, 2 * config.heartbeat])
        out.insert(rng.randint(0, len(out)), ("store_outage", round(seconds, 3)))
    return out


def outage(world: World, seconds: float) -> None:
    """Every store write fails from now for ``seconds`` virtual seconds."""
    storage = world.storage
    storage.failing_until = max(storage.failing_until, world.clock.t + seconds)
    world.log.append(f"t={world.clock.t:.3f} the store fails for {seconds:g} s")


def failing(world: World) -> bool:
    return world.clock.t < world.storage.failing_until


def check(world: World) -> None:
    """Once the store has answered for longer than the longest backoff (and a turn), nothing is kept for it."""
    c = world.c
    if c is None or world.storage.failing_writes or c.stop_reason or \
            world.clock.t <= world.storage.failed_at + MAX_BACKOFF_S + 2 * world.config.turn_s + 1:
        return  # (a stopping run ends with what it kept: the resume settles it)
    store = c.store
    if store.failing or store.later or store.failures:
        world.violation(f"the store answers since t={world.storage.failed_at:.3f}, yet the coordinator still "
                        f"waits for it ({len(store.later)} effect(s), {len(store.failures)} failure(s) kept)")
