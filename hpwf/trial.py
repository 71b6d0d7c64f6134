"""What an objective sees: ``suggest_*``, ``report``, ``should_prune``, its folder and its group."""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.exceptions import TrialPruned

Request = Callable[[Any], Any]  # send a message to the coordinator and return its reply value


@dataclass(frozen=True)
class Group:
    """The ranks that train this trial together (one, unless ``ranks_per_trial > 1``)."""

    rank: int = 0
    size: int = 1
    comm: Any = None  # an mpi4py communicator for the group, where there is one


class Trial:
    """The trial handed to ``objective(trial)``; mirrors ``optuna.Trial`` where it matters.

    Parameters are sampled on the coordinator: values it could sample ahead of time arrive
    with the trial, others cost one round trip. Only the group's rank 0 talks to the coordinator;
    the others receive the same answers from it.

    Example (inside a workflow file)::

        def objective(trial):
            lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
            for epoch in range(10):
                acc = train_one_epoch(lr)
                trial.report(acc, epoch)
                if trial.should_prune():
                    raise hpwf.TrialPruned()
            return acc
    """

    def __init__(
        self,
        number: int,
        params: dict[str, Any],
        distributions: dict[str, BaseDistribution],
        *,
        seed: int,
        folder: Path,
        request: Request,
        group: Group = Group(),
        share: Callable[[Any], Any] = lambda value: value,
    ) -> None:
        self.number = number
        self.seed = seed
        self.folder = folder
        self.group = group
        self._prefetched = dict(params)
        self._prefetched_dists = dict(distributions)
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, BaseDistribution] = {}
        self.user_attrs: dict[str, Any] = {}
        self.intermediate_values: dict[int, float] = {}
        self._request = request
        self._share = share  # rank 0's answer to every rank of the group
        self._prune = False
        self._started = time.time()
        self._metrics = folder / "metrics.csv"

    # --- sampling -------------------------------------------------------------------------
    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        """Sample a float in [low, high] (log scale or on a step grid if asked)."""
        return float(self._suggest(name, FloatDistribution(low, high, log=log, step=step)))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        """Sample an integer in [low, high]."""
        return int(self._suggest(name, IntDistribution(low, high, log=log, step=step)))

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalChoiceType]
    ) -> CategoricalChoiceType:
        """Sample one of ``choices``."""
        return self._suggest(name, CategoricalDistribution(choices))

    def _suggest(self, name: str, distribution: BaseDistribution) -> Any:
        if name in self.params:
            if self.distributions[name] != distribution:
                raise ValueError(f"parameter {name!r} suggested again with another range")
            return self.params[name]
        if self._prefetched_dists.get(name) == distribution:
            value = self._prefetched[name]
        else:
            from hpwf._protocol import Suggest

            value = self._share(
                self._request(Suggest(self.number, name, distribution)) if self.group.rank == 0 else None
            )
        self.params[name] = value
        self.distributions[name] = distribution
        return value

    # --- pruning --------------------------------------------------------------------------
    def report(self, value: float, step: int) -> None:
        """Report an intermediate value (e.g. the epoch's validation metric) to the pruner.

        Only the group's rank 0 reports; average the value over the group first if it differs.
        """
        from hpwf._protocol import Report

        value = float(value)
        step = int(step)
        self.intermediate_values[step] = value
        decision = None
        if self.group.rank == 0:
            self._write_metric(step, value)
            if math.isfinite(value):
                decision = bool(self._request(Report(self.number, step, value)))
            else:
                decision = False
        self._prune = bool(self._share(decision))

    def should_prune(self) -> bool:
        """Whether the pruner wants this trial stopped; the same answer on every rank of the group."""
        return self._prune

    # --- outputs ----------------------------------------------------------------------------
    def save_predictions(self, split: str = "test", **arrays: Any) -> Path:
        """Save this trial's predictions on one split, for ensembles built from the search.

        Args:
            split: "val" (what greedy selection scores), "cal" (calibration set for conformal
                intervals) or "test" (the held-out set ``uq_metrics.json`` scores).
            **arrays: ``y`` plus ``mean`` (and ``var``) for regression, or ``probs`` (N, C);
                optionally ``x`` and ``mc_mean``/``mc_var`` (T, N). The same arrays as
                ``member.save_predictions``.

        Returns:
            The file (``predictions_val.npz``, ``predictions_cal.npz`` or ``predictions.npz``
            in the trial folder), written by the group's rank 0.

        Example (inside an objective)::

            trial.save_predictions("val", y=y_val, mean=mu, var=var)
        """
        from hpwf import predictions

        return predictions.save(self.folder, self.group.rank, split, arrays)

    def save_weights(self, state: Any) -> Path:
        """Save the trial's weights (e.g. ``model.state_dict()``) as ``weights.pt``; rank 0 writes."""
        from hpwf import predictions

        return predictions.save_weights(self.folder, self.group.rank, state)

    def set_user_attr(self, key: str, value: Any) -> None:
        """Attach a JSON-serialisable value to the trial in the study."""
        from hpwf._protocol import UserAttr

        self.user_attrs[key] = value
        if self.group.rank == 0:
            self._request(UserAttr(self.number, key, value))

    def _write_metric(self, step: int, value: float) -> None:
        new = not self._metrics.exists()
        with self._metrics.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "value", "elapsed_s"])
            writer.writerow([step, repr(value), f"{time.time() - self._started:.3f}"])


__all__ = ["Trial", "Group", "TrialPruned"]
