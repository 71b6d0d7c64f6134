"""The report of a large study (more than `LARGE` trials): plots that summarise instead of
drawing every trial, so that ``report.html`` stays a few MB and a browser draws it in seconds.

- history: the best-so-far line over every trial, and the values of an even sample of trials;
- parameter importances: Optuna's PED-ANOVA (no model to fit) on a random sample of complete trials;
- intermediate values: the 10-50-90 % quantiles at each step over every trial that reported,
  and the best few trials' curves;
- parallel coordinates: the best trials and a random sample of the others;
- the trial table: the best and the latest trials (every trial is in ``trials.csv``).

Each plot says in its heading what it shows. Example::

    hpwf report runs/big     # 100,000 trials: a report of a few MB
"""

from __future__ import annotations

import csv
import html
import io
import math
import random
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

LARGE = 2000  # more trials than this: the summarised report
SAMPLE = 2000  # points of the history's sample
TOP = 100  # best trials drawn in parallel coordinates and listed in the table
OTHERS = 400  # a random sample of the other trials in parallel coordinates
CURVES = 5  # best trials' intermediate-value curves
IMPORTANCE_SAMPLE = 2000


def is_large(trials: Sequence[FrozenTrial]) -> bool:
    return len(trials) > LARGE


def large_figures(study: optuna.Study, trials: Sequence[FrozenTrial], figure_html: Callable[[Any], str],
                  note: Callable[[str], str]) -> list[str]:
    """One HTML chunk per plot of a large single- or multi-objective study."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    if not complete:
        return [f"<h2>Plots</h2>\n{note('Not drawn: no complete trial yet.')}"]
    multi = len(study.directions) > 1
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    ranked = sorted(complete, key=lambda t: t.values[0], reverse=maximize)
    rng = random.Random(0)
    chunks = [_history(trials, complete, maximize, rng, figure_html)] if not multi else []
    chunks.append(_importances(study, complete, rng, figure_html, note))
    chunks.append(_intermediate(trials, ranked, figure_html, note))
    chunks.append(_parallel(study, ranked, rng, figure_html, note, "objective 0" if multi else "objective value"))
    return chunks


def _history(trials: Sequence[FrozenTrial], complete: list[FrozenTrial], maximize: bool, rng: random.Random,
             figure_html: Callable[[Any], str]) -> str:
    import plotly.graph_objects as go

    xs, best, current = [], [], None
    for t in complete:  # best so far: one point where it changes, and the last trial
        v = t.values[0]
        if current is None or (v > current if maximize else v < current):
            current = v
            xs.append(t.number)
            best.append(v)
    xs.append(trials[-1].number)
    best.append(current)
    sample = complete if len(complete) <= SAMPLE else sorted(rng.sample(complete, SAMPLE), key=lambda t: t.number)
    fig = go.Figure()
    fig.add_scatter(x=[t.number for t in sample], y=[t.values[0] for t in sample], mode="markers",
                      name=f"objective value (sample of {len(sample):,})", marker={"size": 3, "opacity": 0.4})
    fig.add_scatter(x=xs, y=best, mode="lines", line={"shape": "hv", "color": "#d62728"}, name="best so far")
    fig.update_layout(xaxis_title="trial", yaxis_title="objective value")
    return (f"<h2>Optimization history: best so far over all {len(complete):,} complete trials; dots: an even "
            f"random sample of {len(sample):,}</h2>\n" + figure_html(fig))


def _sub_study(study: optuna.Study, trials: Sequence[FrozenTrial]) -> optuna.Study:
    """An in-memory study holding ``trials`` only (what Optuna's plots and importances take)."""
    sub = optuna.create_study(directions=study.directions)
    sub.add_trials(trials)
    return sub


def _importances(study: optuna.Study, complete: list[FrozenTrial], rng: random.Random,
                 figure_html: Callable[[Any], str], note: Callable[[str], str]) -> str:
    names = {p for t in complete for p in t.params}
    title = "Parameter importances"
    if len(names) < 2:
        return f"<h2>{title}</h2>\n" + note(f"Not drawn: needs at least 2 parameters (this study has {len(names)}).")
    sample = complete if len(complete) <= IMPORTANCE_SAMPLE else rng.sample(complete, IMPORTANCE_SAMPLE)
    import plotly.graph_objects as go

    try:  # (Optuna's plot_param_importances deep-copies the sample once per parameter for its hover text)
        importances = optuna.importance.get_param_importances(
            _sub_study(study, sample), evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
            target=(lambda t: t.values[0]) if len(study.directions) > 1 else None)
    except Exception as exc:  # e.g. a search space Optuna's evaluator cannot take
        return f"<h2>{title}</h2>\n" + note(f"Not drawn: Optuna cannot compute it: {type(exc).__name__}: {exc}")
    names_by_rank = list(importances)[::-1]  # the most important on top
    fig = go.Figure(go.Bar(x=[importances[n] for n in names_by_rank], y=names_by_rank, orientation="h",
                           text=[f"{importances[n]:.2f}" for n in names_by_rank], textposition="outside"))
    fig.update_layout(xaxis_title=f"importance for the {'objective 0' if len(study.directions) > 1 else 'objective value'}",
                      yaxis_title="parameter")
    return f"<h2>{title} (PED-ANOVA on a random sample of {len(sample):,} complete trials)</h2>\n" + figure_html(fig)


def _intermediate(trials: Sequence[FrozenTrial], ranked: list[FrozenTrial], figure_html: Callable[[Any], str],
                  note: Callable[[str], str]) -> str:
    import numpy as np
    import plotly.graph_objects as go

    title = "Intermediate values"
    by_step: dict[int, list[float]] = {}
    reporting = 0
    for t in trials:
        if t.intermediate_values:
            reporting += 1
            for step, v in t.intermediate_values.items():
                if math.isfinite(v):
                    by_step.setdefault(step, []).append(v)
    if not by_step:
        return f"<h2>{title}</h2>\n" + note("Not drawn: no trial reported intermediate values.")
    steps = sorted(by_step)
    q = np.array([np.quantile(by_step[s], (0.1, 0.5, 0.9)) for s in steps])
    fig = go.Figure()
    fig.add_scatter(x=steps, y=q[:, 2], mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip")
    fig.add_scatter(x=steps, y=q[:, 0], mode="lines", line={"width": 0}, fill="tonexty",
                    fillcolor="rgba(31,119,180,0.25)", name="10-90 % of trials")
    fig.add_scatter(x=steps, y=q[:, 1], mode="lines", line={"color": "#1f77b4"}, name="median")
    best = [t for t in ranked if t.intermediate_values][:CURVES]
    for t in best:
        points = sorted(t.intermediate_values.items())
        fig.add_scatter(x=[s for s, _ in points], y=[v for _, v in points], mode="lines+markers",
                        name=f"trial {t.number}")
    fig.update_layout(xaxis_title="step", yaxis_title="intermediate value")
    return (f"<h2>{title}: 10-50-90 % quantiles at each step over {reporting:,} reporting trials, and the "
            f"{len(best)} best trials</h2>\n" + figure_html(fig))


def _parallel(study: optuna.Study, ranked: list[FrozenTrial], rng: random.Random, figure_html: Callable[[Any], str],
              note: Callable[[str], str], target_name: str) -> str:
    title = "Parallel coordinates"
    if not {p for t in ranked for p in t.params}:
        return f"<h2>{title}</h2>\n" + note("Not drawn: no parameters.")
    top, rest = ranked[:TOP], ranked[TOP:]
    others = rest if len(rest) <= OTHERS else rng.sample(rest, OTHERS)
    try:
        fig = optuna.visualization.plot_parallel_coordinate(
            _sub_study(study, top + others), target=lambda t: t.values[0], target_name=target_name)
    except Exception as exc:
        return f"<h2>{title}</h2>\n" + note(f"Not drawn: Optuna cannot draw it: {type(exc).__name__}: {exc}")
    return (f"<h2>{title}: the {len(top)} best trials and a random sample of {len(others):,} of the other "
            f"{len(rest):,} complete trials</h2>\n" + figure_html(fig))


def large_table(trials: Sequence[FrozenTrial], study: optuna.Study, row: Callable[[FrozenTrial], str], head: str) -> str:
    """The best `TOP` complete trials and the latest `TOP` trials; the rest are in trials.csv."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    best = sorted(complete, key=lambda t: t.values[0], reverse=maximize)[:TOP]
    latest = list(trials[-TOP:])
    return (f"<h2>Trials: the {len(best)} best (by the first objective)</h2>\n<table><tr>{head}</tr>\n"
            + "\n".join(map(row, best)) + "</table>\n"
            f"<h2>Trials: the {len(latest)} latest</h2>\n<table><tr>{head}</tr>\n" + "\n".join(map(row, latest))
            + f"</table>\n<p class=\"note\">All {len(trials):,} trials are in {html.escape('trials.csv')}.</p>")


def trials_csv(trials: Sequence[FrozenTrial]) -> str:
    """trials.csv of a large study: the columns of the small study's (number, value(s), times,
    params, user attributes, state), written without building a dataframe of objects."""
    params = list(dict.fromkeys(p for t in trials for p in t.params))
    attrs = list(dict.fromkeys(k for t in trials for k in t.user_attrs if not k.startswith("hpwf:")))
    n_values = max((len(t.values) for t in trials if t.values), default=1)
    values = ["value"] if n_values == 1 else [f"values_{i}" for i in range(n_values)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["number", *values, "datetime_start", "datetime_complete", "duration",
                     *(f"params_{p}" for p in params), *(f"user_attrs_{a}" for a in attrs), "state"])
    for t in trials:
        vals = list(t.values) if t.values else [""] * n_values
        start, end = t.datetime_start, t.datetime_complete
        writer.writerow([t.number, *vals, start or "", end or "", (end - start) if start and end else "",
                         *(t.params.get(p, "") for p in params), *(t.user_attrs.get(a, "") for a in attrs), t.state.name])
    return out.getvalue()
