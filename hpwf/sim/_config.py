"""A simulated run's shape, drawn from its seed: agents, hosts, group sizes, trial lengths, faults."""

from __future__ import annotations

import random
from dataclasses import dataclass

from hpwf.workflow import Search


RUN_ID = "sim-run"


SCHEDULERS = ("asha-resume", "hyperband-resume", "pbt")
MAX_RESUMES = 6
# Events one trial length costs (agents' beats, and the coordinator's idle turns, at least one a
# heartbeat): a day-long trial is drawn with a few agents, 4,096 agents with trials of seconds.
MAX_BEATS = 200_000


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
    turn_s: float = 0.25  # the coordinator's idle turn (its poll timeout): 0.25 s as in `Coordinator.run`, or longer
    scheduler: str | None = None  # None | "asha-resume" | "hyperband-resume" | "pbt": trials report, pause, resume
    steps: int = 1  # steps a trial reports (with a scheduler); each costs its plan's length / steps
    population: int = 2  # PBT: members (n_trials = population x generations)
    interval: int = 2  # PBT: steps per segment
    store_grace: float = 60.0  # Search(store_grace): a store outage longer than this stops the run
    run_id: str = RUN_ID
    shared: bool = False  # another run shares the study (hpwf.sim._shared_study): budgets are per run
    ensemble: int = 0  # K: members trained after the search (`hpwf.sim._ensemble`); 0: none
    top_k: int = 1  # the ensemble's configurations: the search's best k trials

    @classmethod
    def draw(cls, seed: int, big: bool = False) -> Config:
        rng = random.Random(seed)
        agents = rng.choice([1, 2, 3, 4, 8, 16] + ([64, 256, 1024, 4096] if big else []))
        return cls(
            seed=seed, agents=agents, hosts=rng.randint(1, min(agents, 64)), group_mode=rng.choice(["launch", "mpi"]),
            n_trials=rng.randint(1, 40 if not big else max(40, agents * 2)), retries=rng.randint(0, 2),
            heartbeat=(hb := rng.choice([0.5, 2.0, 10.0])), trial_timeout=rng.choice([None, None, 3.0, 60.0]),
            time_budget=rng.choice([None, None, None, 50.0]),
            longest=rng.choice([s for s in [0.01, 1.0, 30.0, 600.0] + ([86400.0] if big else [])
                                if s <= 1.0 or (agents / hb + 2 / hb + 1) * s <= MAX_BEATS]),
            sample_ahead=rng.random() < 0.7,
            ranks=min(agents, rng.choice([1, 1, 1, 2, 4, 8])),
        ).slower_turns(rng).with_scheduler(rng).with_ensemble()

    def slower_turns(self, rng: random.Random) -> Config:
        """Two runs in three take idle turns of half a heartbeat (a coordinator late by that much):
        health deadlines are in heartbeats, and a long idle stretch costs 4x-40x fewer turns."""
        self.turn_s = max(0.25, rng.choice([0.25, self.heartbeat / 2, self.heartbeat / 2]))
        if self.longest > 600:  # trials of a day: a turn every 0.25 virtual s would be a million turns
            self.turn_s = max(0.25, self.heartbeat / 2)
        return self

    def with_scheduler(self, rng: random.Random) -> Config:
        """One run in four has a scheduler (drawn last: the other fields stay as their seed drew them).
        Short: a few steps per trial, PBT with 2-4 members of 2-3 generations."""
        if rng.random() >= 0.25:
            return self
        self.scheduler = rng.choice(SCHEDULERS)
        if self.scheduler == "pbt":
            self.population, generations = rng.choice([2, 3, 4]), rng.choice([2, 3])
            self.n_trials, self.steps = self.population * generations, generations * self.interval
        else:
            self.steps, self.n_trials = rng.choice([4, 8]), min(self.n_trials, 16)
        return self

    def with_ensemble(self) -> Config:
        """One run in four without a scheduler trains an ensemble of 1-6 members after its search
        (drawn from a generator of its own: the other fields stay as their seed drew them)."""
        rng = random.Random(self.seed ^ 0xE75E)
        if self.scheduler is None and rng.random() < 0.25:
            self.ensemble, self.top_k = rng.randint(1, 6), rng.choice([1, 2, 3])
        return self

    def search(self) -> Search:
        """The `Search` whose scheduler this run uses (built by `make_scheduler`, as a run builds it)."""
        if self.scheduler == "pbt":
            return Search(sampler="random", pruner="none", scheduler="pbt", n_trials=self.n_trials,
                          population=self.population, interval=self.interval, seed=self.seed)
        return Search(sampler="random", pruner="none", scheduler=self.scheduler or "none", n_trials=self.n_trials,
                      seed=self.seed, scheduler_options={"min_resource": 1, "reduction_factor": 2,
                                                         "max_resource": self.steps})
