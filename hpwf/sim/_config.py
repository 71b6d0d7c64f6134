"""A simulated run's shape, drawn from its seed: agents, hosts, group sizes, trial lengths, faults."""

from __future__ import annotations

import random
from dataclasses import dataclass


RUN_ID = "sim-run"


MAX_RESUMES = 6


@dataclass
class Config:
    """One simulated run: its agents, hosts, budget, and how its trials behave."""

    seed: int = 0
    agents: int = 4
    hosts: int = 2
    group_mode: str = "launch"  # "mpi": agents are MPI ranks (never aborted, never restarted)
    n_trials: int = 12
    retries: int = 1
    heartbeat: float = 2.0
    trial_timeout: float | None = None
    time_budget: float | None = None
    longest: float = 5.0  # the longest trial, seconds
    sample_ahead: bool = True
    ranks: int = 1  # ranks per trial (an MPI group, or a group launched by its first agent)

    @classmethod
    def draw(cls, seed: int, big: bool = False) -> Config:
        rng = random.Random(seed)
        agents = rng.choice([1, 2, 3, 4, 8, 16] + ([64, 256, 1024, 4096] if big else []))
        return cls(
            seed=seed, agents=agents, hosts=rng.randint(1, min(agents, 64)), group_mode=rng.choice(["launch", "mpi"]),
            n_trials=rng.randint(1, 40 if not big else max(40, agents * 2)), retries=rng.randint(0, 2),
            heartbeat=rng.choice([0.5, 2.0, 10.0]), trial_timeout=rng.choice([None, None, 3.0, 60.0]),
            time_budget=rng.choice([None, None, None, 50.0]),
            longest=rng.choice([0.01, 1.0, 30.0, 600.0] + ([86400.0] if big else [])),
            sample_ahead=rng.random() < 0.7,
            ranks=min(agents, rng.choice([1, 1, 1, 2, 4, 8])),
        )
