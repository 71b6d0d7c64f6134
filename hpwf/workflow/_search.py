"""`Search`: what a workflow file declares about its search, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field
import contextlib
import contextvars
import importlib
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence, cast

from hpwf.errors import ConfigError
from hpwf.workflow._checks import check_number

if TYPE_CHECKING:
    import optuna

# Optuna's class for each name (imported when a sampler or pruner is made, never by agents).
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler", "qmc": "QMCSampler",
            "nsga2": "NSGAIISampler", "gp": "GPSampler", "grid": "GridSampler"}
PRUNERS = {"asha": "SuccessiveHalvingPruner", "hyperband": "HyperbandPruner", "median": "MedianPruner",
           "none": "NopPruner"}
_checked_elsewhere = contextvars.ContextVar("hpwf_search_checked_elsewhere", default=False)


@contextlib.contextmanager
def checked_elsewhere() -> Iterator[None]:
    """Within it, a `Search` skips the checks that make an Optuna sampler and pruner: agents load
    the file the coordinator has checked already, and need neither."""
    token = _checked_elsewhere.set(True)
    try:
        yield
    finally:
        _checked_elsewhere.reset(token)

DIRECTIONS = ("minimize", "maximize")
SCHEDULERS = ("none", "asha-resume", "hyperband-resume", "pbt")
_SCHEDULER_OPTIONS = {
    "asha-resume": {"min_resource", "reduction_factor", "max_resource"},
    "hyperband-resume": {"min_resource", "reduction_factor", "max_resource"},
    "pbt": {"quantile", "perturb", "resample_probability", "explore", "initial"},
}


@dataclass
class Search:
    """The description of a search, declared at module level in a workflow file.

    Args:
        direction: "minimize" or "maximize" (single objective).
        directions: a list of directions, for multi-objective searches (instead of ``direction``).
        metric_names: a name per objective (as Optuna's ``study.set_metric_names``), used by the
            report's axes; default: "objective 0", "objective 1", ...
        n_trials: how many trials must finish (COMPLETE or PRUNED); failed trials do not count.
        timeout: wall-clock budget in seconds over the whole run (resumes included).
        sampler: an Optuna sampler name ("tpe", "random", "cmaes", "qmc", "nsga2", "gp", "grid")
            or an ``optuna.samplers.BaseSampler`` object.
        sampler_options: keyword arguments for the named sampler (``search_space`` for "grid").
        pruner: "asha", "hyperband", "median", "none", or an ``optuna.pruners.BasePruner``.
            Default: "median", as an Optuna study's (``MedianPruner()``: it prunes only trials
            that call ``should_prune``), or "none" for several directions or with ``scheduler``.
        pruner_options: keyword arguments for the named pruner.
        ranks_per_trial: how many ranks train each trial data-parallel (Horovod); a list such as
            ``[1, 2, 4]`` makes it a searched hyperparameter (``ranks_per_trial`` in the params).
        storage: an Optuna storage URL; default: a journal file in the run directory.
        seed: seeds the sampler and each trial's ``trial.seed``.
        name: the study name; default: the workflow file's stem.
        max_failures: stop the run after this many failed trials (default: ``n_trials``).
        retries: a failed trial (it raised, returned NaN, lost its worker or ran out of time)
            runs again with the same parameters, at most this many times.
        trial_timeout: seconds a trial may run; past it the trial fails and its worker process
            is ended (and restarted where the backend can).
        heartbeat: seconds between heartbeats. A worker silent for 3 heartbeats is taken as
            lost; a RUNNING trial whose stored heartbeat is that old (its coordinator vanished)
            is failed and queued again, on every storage.
        store_grace: seconds the study's store may fail (a journal on NFS answering EIO, a
            dropped database connection) while the run waits for it, retrying with backoff and
            asking nothing new; past it the run stops, resumable (exit 130, `hpwf resume`).
        sample_ahead: propose values for the search space seen so far when a trial is handed
            out, so a matching ``suggest_*`` costs no round trip (recorded only if used; a new
            name or distribution still asks the coordinator). ``False``: every suggest asks.
        scheduler: "none"; "asha-resume" (successive halving that pauses trials at a rung and
            resumes them from their checkpoint once promoted; ``scheduler_options``:
            ``min_resource`` (default 1), ``reduction_factor`` (3), ``max_resource``);
            "hyperband-resume" (the same in Hyperband brackets; ``max_resource`` required); or
            "pbt" (population-based training: ``population`` and ``interval`` required,
            ``scheduler_options``: ``quantile`` (0.25), ``perturb`` ((0.8, 1.2)),
            ``resample_probability`` (0.25), ``explore`` (the params PBT may change; default:
            the float ones), ``initial`` (starting values apart from the explore ranges:
            {name: value | [a value per member] | callable(random.Random)})). With "pbt",
            ``n_trials`` counts segments: population x generations (it must be a multiple of
            ``population``); or give ``generations`` instead.
            The objective uses ``trial.restore()``, ``trial.should_pause()`` and ``trial.pause(state)``.
        threads_per_trial: threads each rank of a trial uses (torch, OpenMP, MKL, OpenBLAS);
            default: the host's cores shared among the agents on it, unless the user set
            ``OMP_NUM_THREADS`` (and friends) explicitly (`hpwf.worker._threads`).
        population: PBT's number of members.
        interval: PBT's steps per segment (exploit/explore every ``interval`` reported steps).
        generations: PBT's segments per member (``n_trials`` = population x generations). With
            it, each member's last segment stops by itself at step ``generations x interval``
            (without it, the last segment runs the objective to its end).

    Example:
        >>> search = Search(direction="maximize", n_trials=16, sampler="tpe", pruner="asha")
        >>> search.n_trials
        16
    """

    direction: str | None = None
    directions: Sequence[str] | None = None
    metric_names: Sequence[str] | None = None
    n_trials: int | None = None
    timeout: float | None = None
    sampler: str | optuna.samplers.BaseSampler = "tpe"
    sampler_options: Mapping[str, Any] = field(default_factory=dict)
    pruner: str | optuna.pruners.BasePruner | None = None  # None: Optuna's default (see `pruner_name`)
    pruner_options: Mapping[str, Any] = field(default_factory=dict)
    ranks_per_trial: int | Sequence[int] = 1
    storage: str | None = None
    seed: int | None = None
    name: str | None = None
    max_failures: int | None = None
    retries: int = 0
    trial_timeout: float | None = None
    heartbeat: float = 10.0
    store_grace: float = 600.0
    sample_ahead: bool = True
    scheduler: str = "none"
    scheduler_options: Mapping[str, Any] = field(default_factory=dict)
    population: int | None = None
    interval: int | None = None
    threads_per_trial: int | None = None
    generations: int | None = None

    def __post_init__(self) -> None:
        if self.generations is not None and self.n_trials is None and isinstance(self.population, int) \
                and isinstance(self.generations, int) and not isinstance(self.generations, bool):
            self.n_trials = self.population * self.generations  # PBT's budget in segments
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first bad option."""
        if self.direction is not None and self.directions is not None:
            raise ConfigError("give either direction= or directions=, not both")
        for d in self.study_directions:
            if d not in DIRECTIONS:
                raise ConfigError(f"direction {d!r} must be 'minimize' or 'maximize'")
        if self.metric_names is not None:
            names = self.metric_names
            if isinstance(names, str) or not all(isinstance(n, str) and n for n in names) or \
                    len(set(names)) != len(names) or len(names) != len(self.study_directions):
                raise ConfigError(f"metric_names must be {len(self.study_directions)} different non-empty names "
                                  f"(one per direction), not {names!r}")
        if self.n_trials is None and self.timeout is None:
            raise ConfigError("the search needs a budget: n_trials=... and/or timeout=...")
        check_number("n_trials", self.n_trials, integer=True, low=1, high=10**9)
        check_number("timeout", self.timeout, integer=False, low=0, strict=True, high=10**9)
        if isinstance(self.ranks_per_trial, (list, tuple)):
            if not self.ranks_per_trial:
                raise ConfigError("ranks_per_trial must be a positive integer or a non-empty list of them")
            for k in self.ranks_per_trial:
                check_number("ranks_per_trial", k, integer=True, low=1, high=10**6)
        else:
            check_number("ranks_per_trial", self.ranks_per_trial, integer=True, low=1, high=10**6)
        check_number("seed", self.seed, integer=True, low=0, high=2**32 - 1)
        check_number("max_failures", self.max_failures, integer=True, low=0, high=10**9)
        check_number("retries", self.retries, integer=True, low=0, high=1000)
        check_number("trial_timeout", self.trial_timeout, integer=False, low=0, strict=True, high=10**9)
        check_number("heartbeat", self.heartbeat, integer=False, low=0, strict=True, high=3600)
        check_number("store_grace", self.store_grace, integer=False, low=0, high=10**9)
        check_number("threads_per_trial", self.threads_per_trial, integer=True, low=1, high=4096)
        if isinstance(self.sampler, str) and self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}; choose one of: {', '.join(SAMPLERS)}")
        if not isinstance(self.sampler, str) and not _is_optuna(self.sampler, "samplers", "BaseSampler"):
            raise ConfigError(f"sampler must be a name or an Optuna sampler, not {type(self.sampler).__name__}")
        if isinstance(self.pruner, str) and self.pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner {self.pruner!r}; choose one of: {', '.join(PRUNERS)}")
        if self.pruner is not None and not isinstance(self.pruner, str) and \
                not _is_optuna(self.pruner, "pruners", "BasePruner"):
            raise ConfigError(f"pruner must be a name or an Optuna pruner, not {type(self.pruner).__name__}")
        if self.sampler == "grid" and "search_space" not in self.sampler_options:
            raise ConfigError("sampler 'grid' needs sampler_options={'search_space': {...}}")
        if self.storage is not None and not isinstance(self.storage, str):
            raise ConfigError("storage must be an Optuna storage URL string")
        if len(self.study_directions) > 1 and self.pruner not in ("none", None):
            raise ConfigError("pruning is not defined for multi-objective searches; use pruner='none'")
        self._validate_scheduler()
        if not _checked_elsewhere.get():
            self.make_sampler(self.seed)  # bad sampler_options fail here, before any study exists
            self.make_pruner()

    def _validate_scheduler(self) -> None:
        name, options = self.scheduler, dict(self.scheduler_options)
        if name not in SCHEDULERS:
            raise ConfigError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")
        if name == "none":
            if options or self.population is not None or self.interval is not None or self.generations is not None:
                raise ConfigError("scheduler_options, population, interval and generations need a scheduler "
                                  "(e.g. scheduler='pbt')")
            return
        if self.pruner not in ("none", None):
            raise ConfigError(f"scheduler {name!r} decides what to stop itself; use pruner='none'")
        if len(self.study_directions) > 1:
            raise ConfigError(f"scheduler {name!r} needs a single-objective search")
        unknown = set(options) - _SCHEDULER_OPTIONS[name]
        if unknown:
            raise ConfigError(f"scheduler {name!r}: unknown scheduler_options {sorted(unknown)}; "
                              f"allowed: {sorted(_SCHEDULER_OPTIONS[name])}")
        for key in ("min_resource", "reduction_factor", "max_resource"):
            check_number(key, options.get(key), integer=True, low=2 if key == "reduction_factor" else 1, high=10**9)
        if name == "hyperband-resume" and options.get("max_resource") is None:
            raise ConfigError("scheduler 'hyperband-resume' needs scheduler_options={'max_resource': ...}")
        if name != "pbt":
            if self.population is not None or self.interval is not None or self.generations is not None:
                raise ConfigError("population, interval and generations are options of scheduler='pbt'")
            return
        if self.population is None or self.interval is None:
            raise ConfigError("scheduler 'pbt' needs population=... and interval=...")
        check_number("population", self.population, integer=True, low=2, high=10**6)
        check_number("interval", self.interval, integer=True, low=1, high=10**9)
        check_number("generations", self.generations, integer=True, low=1, high=10**9)
        initial = options.get("initial", {})
        if not isinstance(initial, dict) or not all(isinstance(k, str) for k in initial) or any(
                isinstance(v, (list, tuple)) and not v for v in initial.values()):
            raise ConfigError(f"scheduler_options initial must map parameter names to a value, a non-empty list "
                              f"(one per member, cycled) or a callable(random.Random), not {initial!r}")
        if self.n_trials is None or self.n_trials % self.population:
            raise ConfigError(f"scheduler 'pbt': n_trials counts segments (population x generations) and must be "
                              f"a multiple of population={self.population}, not {self.n_trials}")
        check_number("quantile", options.get("quantile"), integer=False, low=0, strict=True, high=0.5)
        check_number("resample_probability", options.get("resample_probability"), integer=False, low=0, high=1)
        explore = options.get("explore", [])
        if isinstance(explore, str) or not isinstance(explore, (list, tuple)) or \
                not all(isinstance(name, str) for name in explore):
            raise ConfigError(f"scheduler_options explore must be a list of parameter names, not {explore!r}")
        perturb = options.get("perturb", (0.8, 1.2))
        if not isinstance(perturb, (list, tuple)) or not perturb or \
                not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in perturb):
            raise ConfigError(f"scheduler_options perturb must be a list of positive factors, not {perturb!r}")

    @property
    def study_directions(self) -> list[str]:
        """The directions as a list (one entry for a single objective)."""
        if self.directions is not None:
            if isinstance(self.directions, str) or not self.directions:
                raise ConfigError("directions must be a non-empty list such as ['minimize', 'maximize']")
            return list(self.directions)
        return [self.direction or "minimize"]

    @property
    def rank_choices(self) -> list[int]:
        """The group sizes trials may have (one entry unless the size is searched)."""
        k = self.ranks_per_trial
        return sorted(set(k)) if isinstance(k, (list, tuple)) else [cast(int, k)]

    def make_sampler(self, seed: int | None) -> optuna.samplers.BaseSampler:
        """The Optuna sampler this search names, seeded with ``seed``."""
        if not isinstance(self.sampler, str):
            return self.sampler
        options = dict(self.sampler_options)
        if self.sampler == "tpe":
            options.setdefault("constant_liar", True)  # trials run in parallel
        try:
            return cast("optuna.samplers.BaseSampler", _optuna_class("samplers", SAMPLERS[self.sampler])(seed=seed, **options))
        except (TypeError, ValueError, ImportError) as exc:
            raise ConfigError(f"sampler {self.sampler!r} with options {dict(self.sampler_options)}: {exc}") from None

    @property
    def pruner_name(self) -> str | None:
        """The pruner's name (``None`` for an Optuna object): the default follows Optuna's study,
        "median", except where pruning is not defined (several directions, a scheduler)."""
        if self.pruner is None:
            return "median" if len(self.study_directions) == 1 and self.scheduler == "none" else "none"
        return self.pruner if isinstance(self.pruner, str) else None

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """The Optuna pruner this search names."""
        name = self.pruner_name
        if name is None:
            return cast("optuna.pruners.BasePruner", self.pruner)
        try:
            return cast("optuna.pruners.BasePruner", _optuna_class("pruners", PRUNERS[name])(**dict(self.pruner_options)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"pruner {name!r} with options {dict(self.pruner_options)}: {exc}") from None


def _optuna_class(module: str, name: str) -> Any:
    return getattr(importlib.import_module(f"optuna.{module}"), name)


def _is_optuna(value: Any, module: str, base: str) -> bool:
    """Whether ``value`` is an instance of ``optuna.<module>.<base>`` (made by the user, so imported)."""
    return isinstance(value, _optuna_class(module, base))
