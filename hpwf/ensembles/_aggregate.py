"""Scoring a run's ensemble on held-out predictions: ``uq_metrics.json`` and ``uq_predictions.npz``.

Models scored side by side (each one object in ``uq_metrics.json``):

- ``"ensemble"``: the trained members (equal weights), or the trials the selection chose
  (with its weights);
- ``"best_member"``: the member with the best validation score (as ``train`` returned it);
- ``"best_trial"``: the search's best trial (by its objective) that saved test predictions;
- ``"mc_dropout"``: MC-dropout passes one model saved (``mc_mean``/``mc_var``);
- ``"<model>+<method>"``: the same model calibrated by each method of
  ``Ensemble(calibrate=...)`` (conformal, mondrian, cqr, jackknife+ as "+jackknife+ab" or
  "+cv+"; temperature, aps, raps for classifiers), see `hpwf.ensembles._calibrate`.

A regression model's ``nll``/``crps`` score the moment-matched Gaussian N(mean, total
variance); ``mixture_nll``/``mixture_crps``/``mixture_picp_*`` score the exact mixture beside
them. Every interval has its Winkler score and conditional coverage (``worst_sigma_decile_90``,
``worst_x_bin_90``, ``worst_slab_90``); the per-bin lists are under ``"conditional"``.

``uq_metrics.json`` also holds ``"selection"``: the method, the metric, the weights per trial,
and ``"members"``, one row per member or selected trial (source trial, weight, score).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence, cast

import numpy as np
import optuna

from hpwf.ensembles import _calibrate as calib, _uq as uq
from hpwf.ensembles._conformal import Conformal, calibrated_metrics
from hpwf.workflow import predictions
from hpwf.ensembles._members import (ENSEMBLE_DIR, SOURCE, Ensemble, complete_trials, current_members, read_selection,
                           select_trials, stale_sources, trial_folder, write_selection)
from hpwf.ensembles._selection import combine
from hpwf.errors import ConfigError

Component = tuple[Path, float]  # a trial or member folder and its weight
CURVE_LEVELS = np.linspace(0.05, 0.95, 19)


def aggregate(run_dir: str | Path, spec: Ensemble | None = None) -> dict[str, Any]:
    """Combine the ensemble's test predictions; write ``uq_metrics.json`` and ``uq_predictions.npz``.

    Args:
        run_dir: the run directory.
        spec: the workflow's ensemble; without it, what ``ensemble/selection.json`` recorded.

    Returns:
        The object written to ``uq_metrics.json``.
    """
    run_dir = Path(run_dir)
    saved = read_selection(run_dir)
    calibrate = spec.calibrate if spec is not None else saved.get("calibrate")
    retrains = spec.retrains if spec is not None else (run_dir / ENSEMBLE_DIR / "run.json").exists()
    search = _search_study(run_dir)
    models: dict[str, list[Component]] = {}
    if retrains:
        rows = _members(run_dir, models)
    else:
        if spec is None or search is None:
            raise ConfigError(f"{run_dir}: an ensemble of trials needs the workflow's Ensemble and its search")
        selection = select_trials(spec, search, run_dir)
        saved = {"selection": selection.as_json(), "calibrate": calibrate}
        values = {t.number: t.value for t in complete_trials(search)}
        models["ensemble"] = [(trial_folder(run_dir, n), w) for n, w in selection.weights.items()]
        rows = [{"trial": n, "weight": round(w, 6), "score": values.get(n), "val_score": selection.single.get(n)}
                for n, w in sorted(selection.weights.items(), key=lambda kv: (-kv[1], kv[0]))]
    if search is not None:
        best = _best_trial(search, run_dir)
        if best is not None:
            models["best_trial"] = [(best, 1.0)]
    mc = next((comps[0][0] for comps in (models.get("best_member"), models.get("best_trial"), models["ensemble"])
               if comps and "mc_mean" in (predictions.load(comps[0][0], "test") or {})), None)
    chosen = calib.methods(calibrate)
    opts = calib.options(spec.calibrate_options if spec is not None else saved.get("calibrate_options"))
    metrics, arrays = _score_models(models, mc, chosen, opts)
    selection_record: dict[str, Any] = dict(saved.get("selection") or {"method": "fixed"})
    selection_record["members"] = rows
    selection_record["calibrate"] = calibrate
    selection_record["calibrate_options"] = opts
    if spec is not None and search is not None and retrains:
        note = stale_sources(spec, run_dir, search)
        if note:
            from hpwf.progress import say

            say(f"[hpwf] warning: {note}")
        selection_record["stale"] = note
    metrics["selection"] = selection_record
    write_selection(run_dir, {**saved, "calibrate": calibrate, "calibrate_options": opts, "members": rows})
    from hpwf.rundir import atomic_write, atomic_writer

    atomic_write(run_dir / "uq_metrics.json", json.dumps(metrics, indent=1, default=_json_number))
    with atomic_writer(run_dir / "uq_predictions.npz") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    return metrics


def _json_number(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _search_study(run_dir: Path) -> optuna.Study | None:
    """The run's search study, or None for an ensemble-only run."""
    from hpwf.rundir import RunRecord, load_study

    if not (run_dir / "run.json").exists():
        return None
    record = RunRecord.load(run_dir)
    sub = run_dir / ENSEMBLE_DIR / "run.json"
    if sub.exists() and RunRecord.load(sub.parent).study_name == record.study_name:
        return None
    return load_study(run_dir)


def _members(run_dir: Path, models: dict[str, list[Component]]) -> list[dict[str, Any]]:
    """Fill "ensemble" and "best_member" from the trained members; return one row per member."""
    from hpwf.rundir import RunRecord

    members = {i: (t, f) for i, (t, f) in current_members(run_dir).items()
               if predictions.path(f, "test").exists()}
    if not members:
        raise ConfigError(f"{run_dir}: no ensemble member saved predictions (member.save_predictions)")
    weight = 1.0 / len(members)
    models["ensemble"] = [(f, weight) for _, f in members.values()]
    maximize = RunRecord.load(run_dir / ENSEMBLE_DIR).options.get("direction") == "maximize"
    best = (max if maximize else min)(members, key=lambda i: cast(float, members[i][0].value))
    models["best_member"] = [(members[best][1], 1.0)]
    return [{"member": i, "source_trial": t.user_attrs.get(SOURCE), "weight": round(weight, 6), "score": t.value,
             "best": i == best} for i, (t, _) in members.items()]


def _best_trial(search: optuna.Study, run_dir: Path) -> Path | None:
    done = [t for t in complete_trials(search) if predictions.path(trial_folder(run_dir, t.number), "test").exists()]
    if not done:
        return None
    maximize = search.direction == optuna.study.StudyDirection.MAXIMIZE
    best = (max if maximize else min)(done, key=lambda t: cast(float, t.value))
    return trial_folder(run_dir, best.number)


def _load(components: Sequence[Component], split: str) -> list[dict[str, np.ndarray]] | None:
    loaded = [predictions.load(folder, split) for folder, _ in components]
    if any(p is None for p in loaded):
        return None
    return cast(list[dict[str, np.ndarray]], loaded)


def _score_models(models: dict[str, list[Component]], mc: Path | None, chosen: tuple[str, ...],
                  opts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    metrics: dict[str, Any] = {}
    conditional: dict[str, dict[str, list[float]]] = {}
    arrays: dict[str, np.ndarray] = {"curve_expected": CURVE_LEVELS}
    y: np.ndarray | None = None
    for name, comps in models.items():
        test = _load(comps, "test")
        assert test is not None
        weights = [w for _, w in comps]
        w = uq.normalised_weights(weights, len(test))
        if y is None:
            y = test[0]["y"]
            arrays["y"] = y
            if "x" in test[0]:
                arrays["x"] = test[0]["x"]
        for (folder, _), p in zip(comps, test):
            if not np.array_equal(p["y"], y):
                raise ConfigError(f"{folder}: its test targets y differ from the other models': "
                                  "every trial and member must predict the same test set")
        cal = _calibration(comps, chosen, "probs" in test[0], name == "ensemble")
        if "probs" in test[0]:
            probs = np.stack([p["probs"] for p in test])
            metrics[name] = uq.classification_metrics(y, probs, weights)
            if name == "ensemble":
                arrays["probs"] = np.tensordot(w, probs, axes=1)
                arrays["mutual_information"] = uq.mutual_information(probs, weights)
            if cal is not None:
                cal_probs = np.tensordot(w, np.stack([c["probs"] for c in cal]), axes=1)
                entries, lists = calib.classification_entries(name, y, np.tensordot(w, probs, axes=1),
                                                              cal[0]["y"], cal_probs, chosen, opts)
                metrics.update(entries)
                conditional.update(lists)
            continue
        combined = combine(test, weights)
        metrics[name] = uq.regression_metrics(y, combined["mean"], combined["var"])
        extra, conditional[name] = calib.raw_extras(y, test, w, combined["mean"], combined["var"], opts)
        metrics[name].update(extra)
        _keep_arrays(arrays, name, combined)
        _curves(arrays, name, y, combined["mean"], combined["var"])
        fitted = combine(cal, weights) if cal is not None else None
        oob = _load(comps, "oob") if "jackknife+" in chosen and name == "ensemble" else None
        if "jackknife+" in chosen and name == "ensemble" and oob is None:
            missing = next(f for f, _ in comps if predictions.load(f, "oob") is None)
            raise ConfigError(f"calibrate='jackknife+' needs out-of-bag predictions: {missing} has no "
                              f"{predictions.FILES['oob']} (member.save_predictions('oob', index=..., y=..., mean=...))")
        entries, lists = calib.regression_entries(
            name, y, test, cal, oob, w, combined["mean"], combined["var"],
            None if fitted is None else fitted["mean"], None if fitted is None else fitted["var"], chosen, opts)
        metrics.update(entries)
        conditional.update(lists)
        if cal is not None and "conformal" in chosen:
            cp = Conformal.fit(cal[0]["y"], fitted["mean"], fitted["var"])  # type: ignore[index]
            arrays[f"curve_conformal__{name}"] = cp.coverage(y, combined["mean"], combined["var"], CURVE_LEVELS)
    if "ensemble" in metrics and "n" in metrics["ensemble"]:
        metrics["ensemble"]["members"] = float(len(models["ensemble"]))
    if mc is not None and y is not None:
        _mc_dropout(metrics, arrays, mc, y, "conformal" in chosen)
    out = _ordered(metrics)
    out["conditional"] = conditional
    return out, arrays


def _calibration(comps: Sequence[Component], chosen: tuple[str, ...], classification: bool,
                 ensemble: bool) -> list[dict[str, np.ndarray]] | None:
    """The components' calibration predictions when a method needs them; the splits checked."""
    needs = [m for m in chosen if m in (calib.CLASSIFICATION if classification else calib.REGRESSION)
             and m != "jackknife+"]
    if not needs:
        if ensemble and chosen and not any(m in (calib.CLASSIFICATION if classification else calib.REGRESSION)
                                           for m in chosen):
            from hpwf.progress import say

            kind = "classifiers" if classification else "regression models"
            say(f"[hpwf] note: calibrate={list(chosen)} has no method for {kind}; they are scored raw")
        return None
    cal = _load(comps, "cal")
    if cal is None:
        missing = next(f for f, _ in comps if predictions.load(f, "cal") is None)
        raise ConfigError(f"calibrate={needs[0]!r} needs calibration predictions: {missing} has no "
                          f"{predictions.FILES['cal']} (save_predictions('cal', y=..., mean=..., var=...))")
    calib.shared_cal_targets([f for f, _ in comps], cal)
    for (folder, _), c in zip(comps, cal):
        note = calib.check_disjoint(folder, {"cal": c, "val": predictions.load(folder, "val"),
                                             "test": predictions.load(folder, "test")})
        if note:
            from hpwf.progress import say

            say(f"[hpwf] warning: {note}")
    return cal


def _keep_arrays(arrays: dict[str, np.ndarray], name: str, combined: dict[str, np.ndarray]) -> None:
    if name == "ensemble":
        arrays.update(mean=combined["mean"], aleatoric=combined["aleatoric"], epistemic=combined["epistemic"])
    elif "best_mean" not in arrays:
        arrays.update(best_mean=combined["mean"], best_var=combined["var"])


def _curves(arrays: dict[str, np.ndarray], name: str, y: np.ndarray, mean: np.ndarray, var: np.ndarray) -> None:
    arrays[f"curve_raw__{name}"] = uq.calibration_curve(y, mean, np.sqrt(np.maximum(var, 0.0)), CURVE_LEVELS)[1]


def _mc_dropout(metrics: dict[str, Any], arrays: dict[str, np.ndarray], folder: Path, y: np.ndarray,
                conformal: bool) -> None:
    test = predictions.load(folder, "test")
    assert test is not None
    mix = uq.mixture(test["mc_mean"], test.get("mc_var"))
    metrics["mc_dropout"] = uq.regression_metrics(y, mix.mean, mix.total)
    arrays.update(mc_mean=mix.mean, mc_total=mix.total)
    _curves(arrays, "mc_dropout", y, mix.mean, mix.total)
    cal = predictions.load(folder, "cal")
    if conformal and cal is not None and "mc_mean" in cal:
        fitted = uq.mixture(cal["mc_mean"], cal.get("mc_var"))
        cp = Conformal.fit(cal["y"], fitted.mean, fitted.total)
        metrics["mc_dropout+conformal"] = calibrated_metrics(cp, y, mix.mean, mix.total)
        arrays["curve_conformal__mc_dropout"] = cp.coverage(y, mix.mean, mix.total, CURVE_LEVELS)


def _ordered(metrics: dict[str, Any]) -> dict[str, Any]:
    """Each raw model followed by its calibrated entries ("<model>+<method>")."""
    base = [k for k in metrics if "+" not in k]
    return {k: metrics[k] for name in base for k in metrics if k == name or k.startswith(f"{name}+")}
