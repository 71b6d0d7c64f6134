"""Bootstrap ensembles: K members trained on resamples, spread over the same backends as trials.

Members are trials of a sibling study (``<name>-ensemble``) run in ``RUN_DIR/ensemble``: each
one carries its member index, configuration and seed as user attributes, so a resumed run never
retrains a finished member, and a failed member runs again with the same attributes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, cast

import numpy as np
import optuna
from optuna.trial import TrialState

from hpwf.errors import ConfigError
from hpwf.trial import Trial

MEMBER, CONFIG, SOURCE, SEED = "member", "config", "source_trial", "member_seed"


@dataclass
class Ensemble:
    """A bootstrap ensemble, declared at module level in a workflow file.

    Args:
        members: how many members (K).
        train: ``train(member: hpwf.Member) -> float | None``: trains one member on
            ``member.bootstrap(n)``, saves its held-out predictions, returns its validation score.
        top_k: members take the k best configurations of the finished search, in turn.
        params: one fixed configuration for every member (instead of ``top_k``).
        direction: whether a lower ("minimize") or higher member score is better.
        seed: members' seeds derive from it (member i: ``seed * 1000 + i``).
        ranks_per_trial: ranks per member (Horovod, as for trials).
        max_retries: a failed member runs again at most this many times.

    Example:
        >>> Ensemble(members=4, train=lambda m: 0.0, params={"lr": 0.01}).members
        4
    """

    members: int
    train: Callable[[Member], Any]
    top_k: int | None = None
    params: Mapping[str, Any] | None = None
    direction: str = "minimize"
    seed: int = 0
    ranks_per_trial: int = 1
    max_retries: int = 2
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.members, bool) or not isinstance(self.members, int) or not 1 <= self.members <= 10**5:
            raise ConfigError(f"members must be an integer in 1..100000, not {self.members!r}")
        if not callable(self.train):
            raise ConfigError("train must be a function taking one member")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ConfigError(f"top_k must be a positive integer, not {self.top_k!r}")
        if self.top_k is not None and self.params is not None:
            raise ConfigError("give either top_k= or params=, not both")
        if self.direction not in ("minimize", "maximize"):
            raise ConfigError(f"direction {self.direction!r} must be 'minimize' or 'maximize'")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, not {self.seed!r}")


class Member:
    """What ``train(member)`` sees: its index, configuration, seed, group and folder."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial
        self.index: int = int(trial.user_attrs[MEMBER])
        self.params: dict[str, Any] = dict(trial.user_attrs.get(CONFIG) or {})
        self.seed: int = int(trial.user_attrs[SEED])
        self.source_trial: int | None = trial.user_attrs.get(SOURCE)
        self.folder = trial.folder
        self.group = trial.group

    def bootstrap(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """In-bag indices (n draws with replacement, from the member's seed) and out-of-bag ones."""
        rng = np.random.default_rng(self.seed)
        in_bag = rng.integers(0, n, size=n)
        out_of_bag = np.setdiff1d(np.arange(n), in_bag)
        if self.group.rank == 0:
            np.savez(self.folder / "bootstrap.npz", in_bag=in_bag, out_of_bag=out_of_bag)
        return in_bag, out_of_bag

    def save_predictions(self, **arrays: Any) -> Path:
        """Held-out predictions: ``y`` plus ``mean`` (and ``var``) for regression, or ``probs``.

        Optional ``mc_mean``/``mc_var`` (T, N) hold MC-dropout passes of this member's model.
        """
        path = self.folder / "predictions.npz"
        if self.group.rank == 0:
            named: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
            np.savez(path, **named)
        return path

    def save_weights(self, state: Any) -> Path:
        """The member's weights (e.g. ``model.state_dict()``), saved by rank 0."""
        import torch

        path = self.folder / "weights.pt"
        if self.group.rank == 0:
            torch.save(state, path)
        return path


class MemberObjective:
    """Wraps ``train(member)`` as an objective the coordinator runs like any trial."""

    def __init__(self, train: Callable[[Member], Any]) -> None:
        self.train = train

    def __call__(self, trial: Trial) -> float:
        score = self.train(Member(trial))
        return 0.0 if score is None else float(score)


def plan(ensemble: Ensemble, source: optuna.Study | None) -> list[dict[str, Any]]:
    """The members' attributes: index, configuration (from ``params`` or the search's top-k), seed."""
    if ensemble.params is not None:
        configs: list[tuple[dict[str, Any], int | None]] = [(dict(ensemble.params), None)]
    else:
        if source is None:
            raise ConfigError("the ensemble needs params= or a finished search to take top_k from")
        done = [t for t in source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
        if not done:
            raise ConfigError(f"study {source.study_name!r} has no complete trial to build an ensemble from")
        reverse = source.direction == optuna.study.StudyDirection.MAXIMIZE
        ranked = sorted(done, key=lambda t: cast(float, t.value), reverse=reverse)[: ensemble.top_k or 1]
        configs = [({k: v for k, v in t.params.items() if k != "ranks_per_trial"}, t.number) for t in ranked]
    return [
        {MEMBER: i, CONFIG: configs[i % len(configs)][0], SOURCE: configs[i % len(configs)][1],
         SEED: ensemble.seed * 1000 + i}
        for i in range(ensemble.members)
    ]


def finished_members(run_dir: Path) -> dict[int, tuple[Path, float]]:
    """Member index -> (folder, validation score) of its (first) complete run."""
    from hpwf.trialdir import trial_folder
    from hpwf.rundir import load_study

    sub = run_dir / "ensemble"
    study = load_study(sub)
    found: dict[int, tuple[Path, float]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        found.setdefault(int(t.user_attrs[MEMBER]), (trial_folder(sub, t.number), float(cast(float, t.value))))
    return dict(sorted(found.items()))


def aggregate(run_dir: str | Path) -> dict[str, dict[str, float]]:
    """Combine the members' held-out predictions; write ``uq_metrics.json`` and ``uq_predictions.npz``.

    Models: "ensemble" (all members as a mixture), "best_member" (the member with the best
    validation score, as its ``train`` returned: chosen without looking at the held-out set),
    and "mc_dropout" when a member saved MC-dropout passes.
    """
    from hpwf import uq
    from hpwf.rundir import RunRecord

    run_dir = Path(run_dir)
    members = finished_members(run_dir)
    preds = {i: dict(np.load(f / "predictions.npz")) for i, (f, _) in members.items()
             if (f / "predictions.npz").exists()}
    if not preds:
        raise ConfigError(f"{run_dir}: no ensemble member saved predictions (member.save_predictions)")
    first = next(iter(preds.values()))
    y = first["y"]
    metrics: dict[str, dict[str, float]] = {}
    arrays: dict[str, Any] = {"y": y}
    if "probs" in first:
        probs = np.stack([p["probs"] for p in preds.values()])
        metrics["ensemble"] = uq.classification_metrics(y, probs)
        per = {i: uq.classification_metrics(y, p["probs"]) for i, p in preds.items()}
        arrays["probs"] = probs.mean(0)
        arrays["mutual_information"] = uq.mutual_information(probs)
    else:
        means = np.stack([p["mean"] for p in preds.values()])
        variances = np.stack([p["var"] for p in preds.values()]) if "var" in first else None
        mix = uq.mixture(means, variances)
        metrics["ensemble"] = uq.regression_metrics(y, mix.mean, mix.total)
        per = {i: uq.regression_metrics(y, p["mean"], p["var"] if "var" in p else np.full_like(y, 1e-12))
               for i, p in preds.items()}
        arrays.update(mean=mix.mean, aleatoric=mix.aleatoric, epistemic=mix.epistemic)
        if "x" in first:
            arrays["x"] = first["x"]
        mc = next((p for p in preds.values() if "mc_mean" in p), None)
        if mc is not None:
            mc_mix = uq.mixture(mc["mc_mean"], mc["mc_var"] if "mc_var" in mc else None)
            metrics["mc_dropout"] = uq.regression_metrics(y, mc_mix.mean, mc_mix.total)
            arrays.update(mc_mean=mc_mix.mean, mc_total=mc_mix.total)
    maximize = RunRecord.load(run_dir / "ensemble").options.get("direction") == "maximize"
    best = (max if maximize else min)(per, key=lambda i: members[i][1])
    if "mean" in preds[best]:
        arrays.update(best_mean=preds[best]["mean"], best_var=preds[best].get("var", np.full_like(y, 1e-12)))
    metrics["best_member"] = {**per[best], "member": best}
    metrics["ensemble"]["members"] = len(preds)
    (run_dir / "uq_metrics.json").write_text(json.dumps(metrics, indent=1))
    np.savez(run_dir / "uq_predictions.npz", **arrays)
    return metrics
