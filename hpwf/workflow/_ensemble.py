"""The ensemble a workflow file declares (`Ensemble`) and the member its ``train`` sees (`Member`).

How members are planned, chosen and aggregated lives in `hpwf.ensembles`; this is the part a user
writes and an agent runs, so it imports neither numpy nor Optuna until a member needs them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, cast

from hpwf.errors import ConfigError
from hpwf.rundir import CONFIG, MEMBER, SEED, SOURCE, atomic_write
from hpwf.workflow import _predictions as predictions
from hpwf.workflow._compat import OptunaOldNames
from hpwf.workflow._ensemble_options import SELECT_OPTIONS, methods, options
from hpwf.workflow._trial import Trial

if TYPE_CHECKING:
    import numpy as np
    from optuna.distributions import CategoricalChoiceType

ENSEMBLE_DIR = "ensemble"  # RUN_DIR/ensemble: the members' study, plan and metrics
MEMBER_FILE = "member.json"
SELECTS = ("topk", "greedy")
DEFAULT_SIZE = 5
METRIC_NAMES = ("nll", "crps", "rmse", "ece", "brier", "accuracy")


@dataclass
class Ensemble:
    """An ensemble, declared at module level in a workflow file.

    Args:
        members: how many bootstrap members to train (K); needs ``train``.
        train: ``train(member: hpwf.Member) -> float | None``: trains one member (on
            ``member.bootstrap(n)``), saves its predictions, returns its validation score.
            Without it nothing is retrained: the ensemble is made of the search's trials.
        select: "topk" (the k best trials by the search's objective, equal weights) or
            "greedy" (Caruana's greedy selection with replacement on the trials' validation
            predictions; the weights are how often each trial was picked).
        size: greedy: rounds of selection (the ensemble size, repeats counted); default 5.
        top_k: topk: how many trials (default 1 with ``train``, else 5).
        params: one fixed configuration for every member (instead of a selection).
        metric: greedy selection's validation metric: "nll" (default), "crps", "rmse", "ece"
            (regression), "nll", "brier", "ece", "accuracy" (classification), or a function
            ``metric(y, combined) -> float`` where lower is better.
        calibrate: a method or a list: "conformal" (split), "mondrian", "cqr", "jackknife+"
            (regression), "temperature", "aps", "raps" (classifiers); from calibration
            predictions (``save_predictions("cal", ...)``) or, for "jackknife+", the members'
            out-of-bag ones ("oob"). ``uq_metrics.json`` keeps raw and calibrated.
        calibrate_options: level, beta, bins, raps_lambda, raps_k, jackknife (`CALIBRATE_OPTIONS`).
        select_options: greedy's init (start from the top k), tolerance (best prefix),
            min_distinct, bags (bagged selection), see `hpwf.ensembles` greedy.
        direction: whether a lower ("minimize") or higher member score is better; default: the
            search's direction (required when there is no search).
        seed: members' seeds derive from it (member i: ``seed * 1000 + i``).
        ranks_per_trial: ranks per member (Horovod, as for trials).
        max_retries: a failed member runs again at most this many times.

    Example:
        >>> Ensemble(members=4, train=lambda m: 0.0, params={"lr": 0.01}).members
        4
        >>> Ensemble(select="greedy", size=8, calibrate="conformal").retrains
        False
    """

    members: int | None = None
    train: Callable[[Member], Any] | None = None
    select: str = "topk"
    size: int | None = None
    top_k: int | None = None
    params: Mapping[str, Any] | None = None
    metric: str | Callable[..., float] = "nll"
    calibrate: str | Sequence[str] | None = None
    calibrate_options: Mapping[str, Any] | None = None
    select_options: Mapping[str, Any] | None = None
    direction: str | None = None
    seed: int = 0
    ranks_per_trial: int = 1
    max_retries: int = 2
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.train is not None and not callable(self.train):
            raise ConfigError("train must be a function taking one member")
        if self.train is not None and self.members is None:
            raise ConfigError("train= needs members= (how many members to train)")
        if self.train is None and self.members is not None:
            raise ConfigError("members= needs train= (the function that trains one member)")
        if self.members is not None and (isinstance(self.members, bool) or not isinstance(self.members, int)
                                         or not 1 <= self.members <= 10**5):
            raise ConfigError(f"members must be an integer in 1..100000, not {self.members!r}")
        if self.select not in SELECTS:
            raise ConfigError(f"select {self.select!r} must be one of {', '.join(SELECTS)}")
        for name in ("size", "top_k"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer, not {value!r}")
        if self.size is not None and self.select != "greedy":
            raise ConfigError("size= is for select='greedy'; use top_k= with select='topk'")
        if self.top_k is not None and self.select != "topk":
            raise ConfigError("top_k= is for select='topk'; use size= with select='greedy'")
        if self.params is not None and (self.top_k is not None or self.select == "greedy"):
            raise ConfigError("give either params= or a selection (top_k=, select='greedy'), not both")
        if self.params is not None and self.train is None:
            raise ConfigError("params= needs train= (members retrain that configuration)")
        if not callable(self.metric) and self.metric not in METRIC_NAMES:
            raise ConfigError(f"metric {self.metric!r} must be one of {', '.join(METRIC_NAMES)} or a function")
        methods(self.calibrate)
        options(self.calibrate_options)
        options(self.select_options, SELECT_OPTIONS, "select_options")
        if self.select_options and self.select != "greedy":
            raise ConfigError("select_options= is for select='greedy'")
        if self.direction not in (None, "minimize", "maximize"):
            raise ConfigError(f"direction {self.direction!r} must be 'minimize' or 'maximize'")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, not {self.seed!r}")

    @property
    def retrains(self) -> bool:
        """Whether members are trained (``train=``), rather than trials reused as they are."""
        return self.train is not None

    @property
    def k(self) -> int:
        """How many trials select='topk' takes."""
        return self.top_k or (1 if self.retrains else DEFAULT_SIZE)


class Member(OptunaOldNames):
    """What ``train(member)`` sees: its index, configuration, seed, group and folder.

    It answers ``suggest_float``/``suggest_int``/``suggest_categorical`` (and the other
    ``suggest_*``) with the member's fixed parameters, so the objective's own model builder
    runs unchanged: ``build_model(member)`` replays the source trial's configuration.
    ``report`` records the value (members are never pruned).
    """

    def __init__(self, trial: Trial) -> None:
        if MEMBER not in trial.user_attrs or SEED not in trial.user_attrs:
            raise RuntimeError(f"trial {trial.number} of the members' study carries no member attributes; "
                               "members are planned by hpwf (hpwf run, hpwf ensemble), not asked for")
        self.trial = trial
        self.index: int = int(trial.user_attrs[MEMBER])
        self.params: dict[str, Any] = dict(trial.user_attrs.get(CONFIG) or {})
        self.seed: int = int(trial.user_attrs[SEED])
        self.source_trial: int | None = trial.user_attrs.get(SOURCE)
        self.folder = trial.folder
        self.group = trial.group
        self.number = trial.number
        self.user_attrs = trial.user_attrs

    # --- replay: the same calls as hpwf.Trial, answered with the fixed configuration ----------
    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        """The member's value of float parameter ``name`` (the range is not re-sampled)."""
        return float(self._fixed(name))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        """The member's value of integer parameter ``name``."""
        return int(self._fixed(name))

    def suggest_categorical(self, name: str, choices: Sequence[CategoricalChoiceType]) -> CategoricalChoiceType:
        """The member's value of categorical parameter ``name``."""
        value = self._fixed(name)
        return cast("CategoricalChoiceType", value)

    def _fixed(self, name: str) -> Any:
        if name not in self.params:
            source = f" (from trial {self.source_trial})" if self.source_trial is not None else ""
            raise KeyError(f"member {self.index}: parameter {name!r} is not in its configuration{source}: "
                           f"{sorted(self.params)}")
        return self.params[name]

    def report(self, value: float, step: int) -> None:
        """Record an intermediate value in the member's ``metrics.csv``."""
        self.trial.report(value, step)

    def should_prune(self) -> bool:
        """Always False: members are never pruned."""
        return False

    def set_user_attr(self, key: str, value: Any) -> None:
        self.trial.set_user_attr(key, value)

    # --- outputs ----------------------------------------------------------------------------
    def bootstrap(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """In-bag indices (n draws with replacement, from the member's seed) and out-of-bag ones."""
        import numpy as np

        rng = np.random.default_rng(self.seed)
        in_bag = rng.integers(0, n, size=n)
        out_of_bag = np.setdiff1d(np.arange(n), in_bag)
        if self.group.rank == 0:
            np.savez(self.folder / "bootstrap.npz", in_bag=in_bag, out_of_bag=out_of_bag)
        return in_bag, out_of_bag

    def folds(self, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows to train on and the held-out fold (member i holds out fold i mod k): members for CV+.

        Every member shuffles ``range(n)`` alike (from the ensemble's seed), so the folds partition it.
        """
        import numpy as np

        order = np.random.default_rng(self.seed // 1000).permutation(n)
        held = np.sort(np.array_split(order, k)[self.index % k])
        return np.setdiff1d(np.arange(n), held), held

    def save_predictions(self, split: str = "test", **arrays: Any) -> Path:
        """Predictions on ``split`` ("test": held-out, scored; "cal": for conformal; "val"; "oob":
        on this member's out-of-bag or held-out-fold training rows, with ``index=``, for jackknife+).

        Arrays: ``y`` plus ``mean`` (and ``var``) for regression, or ``probs``; optional
        ``mc_mean``/``mc_var`` (T, N) hold MC-dropout passes of this member's model.
        """
        return predictions.save(self.folder, self.group.rank, split, arrays)

    def save_weights(self, state: Any) -> Path:
        """The member's weights (e.g. ``model.state_dict()``), saved by rank 0."""
        return predictions.save_weights(self.folder, self.group.rank, state)


class MemberObjective:
    """Wraps ``train(member)`` as an objective the coordinator runs like any trial.

    The member's folder gets ``member.json`` (index, seed, source trial, parameters) and, as
    for trials, ``params.json`` (its parameters).
    """

    def __init__(self, train: Callable[[Member], Any]) -> None:
        self.train = train

    def __call__(self, trial: Trial) -> float:
        member = Member(trial)
        if member.group.rank == 0:
            record = {"member": member.index, "source_trial": member.source_trial, "seed": member.seed,
                      "params": member.params}
            atomic_write(member.folder / MEMBER_FILE, json.dumps(record, indent=1, default=str))
        try:
            score = self.train(member)
        finally:  # params.json (written by the agent from trial.params) records the configuration
            for key, value in member.params.items():
                trial.params.setdefault(key, value)
        return 0.0 if score is None else float(score)
