"""``hpwf report``: ``trials.csv`` and one self-contained ``report.html`` (plotly.js inline, no server)."""

from __future__ import annotations

import contextlib
import csv
import html
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpwf.report._figure import figure_html
from hpwf.report._large import is_large, large_figures, large_table, trials_csv
from hpwf.report._schedule import scheduler_section
from hpwf.report._uq import uq_section
from hpwf.rundir import (
    is_file, open_file,
    PBT_GENERATION, PBT_MEMBER, check_run_store, open_run_study, read_study, read_summary, state_counts, trial_folder,
    trial_folders)

LOGGED_CURVES = 20  # a large study: the logged metrics of its best trials only

# The sections around the generic plots, in order, each (study, run_dir) -> an HTML chunk or None: one
# explicit list, so `write_report` from Python writes the same report as `hpwf report`. Sections that
# explain the run better than the generic plots (PBT's schedule) lead, right after the summary.
LEAD_SECTIONS: tuple[Callable[[optuna.Study, Path], str | None], ...] = (scheduler_section,)
EXTRA_SECTIONS: tuple[Callable[[optuna.Study, Path], str | None], ...] = (uq_section,)
METRICS_BOOKKEEPING = ("step", "value", "elapsed_s", "time")  # metrics.csv columns that are not logged metrics

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;
vertical-align:top}th{background:#f3f3f3}.note{color:#666;font-style:italic}.FAIL{color:#b00}
.PRUNED{color:#888}"""


def write_report(run_dir: str | Path, storage: str | None = None) -> list[Path]:
    """Write trials.csv and report.html into run_dir; return both paths.

    The run directory must be the user's; a store outside it opens only as ``storage`` (`open_run_store`).
    """
    run_dir = Path(run_dir)
    check_run_store(run_dir, storage)  # ours, and its store inside it (or given)
    study = read_study(run_dir) if storage is None else open_run_study(run_dir, storage)
    csv_path, html_path = run_dir / "trials.csv", run_dir / "report.html"
    trials = study.get_trials(deepcopy=False)
    with _quiet():
        _atomic(csv_path, trials_csv(trials) if is_large(trials) else trials_table(study).to_csv(index=False))
        chunks = _sections(study, run_dir)
    _atomic(html_path, _page(f"hpwf report: {study.study_name}", chunks))
    return [csv_path, html_path]


def trials_table(study: optuna.Study) -> Any:
    """Optuna's trials dataframe without hpwf's bookkeeping (``hpwf:*`` attributes, system attributes)."""
    frame = study.trials_dataframe()
    internal = [c for c in frame.columns if c.startswith(("system_attrs_", "user_attrs_hpwf:"))]
    return frame.drop(columns=internal)


def _sections(study: optuna.Study, run_dir: Path) -> list[str]:
    """The report's HTML chunks in order: header, figures, trial table, then ``EXTRA_SECTIONS``."""
    trials = study.get_trials(deepcopy=False)
    figures = large_figures(study, trials, figure_html, _note) if is_large(trials) else _figures(study)
    return [_header(study, run_dir, read_summary(run_dir)), *_extra(LEAD_SECTIONS, study, run_dir),
            *figures, *_logged_metrics(study, run_dir), _trial_table(study, run_dir),
            *_extra(EXTRA_SECTIONS, study, run_dir)]


def _extra(sections: Sequence[Callable[[optuna.Study, Path], str | None]], study: optuna.Study, run_dir: Path) -> list[str]:
    chunks = []
    for section in sections:
        try:
            chunk = section(study, run_dir)
        except Exception as exc:  # a broken add-on section must not cost the whole report
            chunk = _note(f"section {getattr(section, '__name__', section)!r} failed: {type(exc).__name__}: {exc}")
        if chunk is not None:
            chunks.append(chunk)
    return chunks


def _page(title: str, chunks: list[str]) -> str:
    """A complete HTML document around ``chunks``."""
    body = "\n".join(chunks)
    script = ""
    if "Plotly.newPlot" in body:  # plotly.js inline, once, only when something was drawn
        from plotly.offline import get_plotlyjs

        script = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style>{script}</head>\n<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def _header(study: optuna.Study, run_dir: Path, summary: dict[str, Any]) -> str:
    """The run at a glance: study, directions, counts by state, best, elapsed time, utilisation."""
    trials = study.get_trials(deepcopy=False)
    counts = ", ".join(f"{n} {name}" for name, n in state_counts(trials, run_dir).items())
    rows = [("study", study.study_name), ("directions", ", ".join(d.name.lower() for d in study.directions)),
            ("trials", f"{len(trials)} ({counts})")]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        rows.append(("best", "no complete trial"))
    elif len(study.directions) == 1:
        best = study.best_trial
        rows += [("best value", f"{_fmt(best.value)} (trial {best.number})"), ("best params", _params(best))]
    else:
        front = sorted(study.best_trials, key=lambda t: t.number)
        more = f" and {len(front) - 10} more" if len(front) > 10 else ""
        named = ", ".join(metric_names(study))
        rows.append((f"Pareto front ({named})", "; ".join(f"trial {t.number}: {_values(t)}" for t in front[:10]) + more))
    if summary:
        util = summary.get("utilisation")
        rows += [("elapsed", f"{_fmt(summary.get('elapsed_s'))} s"),
                 ("utilisation", "-" if util is None else f"{100 * util:.0f}% of {summary.get('slots', '?')} slots"),
                 ("stop reason", str(summary.get("stop_reason") or "-"))]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<h2>Summary</h2>\n<table>{body}</table>"


def metric_names(study: optuna.Study) -> list[str]:
    """The objectives' names (``Search(metric_names=...)``, Optuna's ``set_metric_names``), else "objective i"."""
    names = study.metric_names
    return list(names) if names else [f"objective {i}" for i in range(len(study.directions))]


def final_segments(study: optuna.Study) -> tuple[optuna.Study, str] | None:
    """For a PBT run: an in-memory study of its last generation's complete segments and a label
    saying so; None for any other run. A segment's params are those of its last interval only,
    so importances and parallel coordinates over every segment would mislead."""
    trials = study.get_trials(deepcopy=False)
    segments = [t for t in trials if PBT_MEMBER in t.user_attrs and t.state == TrialState.COMPLETE]
    if not segments:
        return None
    last = max(int(t.user_attrs.get(PBT_GENERATION, 0)) for t in segments)
    finals = [t for t in segments if int(t.user_attrs.get(PBT_GENERATION, 0)) == last]
    view = optuna.create_study(directions=study.directions)
    view.add_trials(finals)
    return view, (f" (PBT: the {len(finals)} final segments of generation {last}, each with the params of its "
                  f"last interval; {len(segments)} complete segments in all)")


def _coordinates(study: optuna.Study, i: int, name: str) -> Callable[[], Any]:
    """Draws the parallel coordinates of objective ``i``."""
    from optuna import visualization as vis

    return lambda: vis.plot_parallel_coordinate(study, target=lambda t: t.values[i], target_name=name)


def _figures(study: optuna.Study) -> list[str]:
    """One chunk per plot: the figure, or a note saying why Optuna cannot draw it for this study."""
    from optuna import visualization as vis

    trials = study.get_trials(deepcopy=False)
    finals = final_segments(study)
    view, label = finals if finals else (study, "")
    complete = [t for t in view.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    names = {p for t in complete for p in t.params}
    multi = len(study.directions) > 1
    objectives = metric_names(study)
    no_complete = None if complete else "no complete trial yet"
    plots: list[tuple[str, Callable[[], Any], str | None]] = [
        (f"Parallel coordinates{label}", lambda: vis.plot_parallel_coordinate(view), no_complete or (
            None if names else "no parameters")),
    ] if not multi else [  # one per objective, each named
        (f"Parallel coordinates: {name}",
         _coordinates(view, i, name),
         no_complete or (None if names else "no parameters")) for i, name in enumerate(objectives)
    ]
    plots.append(("Intermediate values", lambda: vis.plot_intermediate_values(study),
                  None if any(t.intermediate_values for t in trials) else "no trial reported intermediate values"))
    if multi:
        plots.insert(0, ("Pareto front", lambda: vis.plot_pareto_front(study, target_names=objectives),
                         no_complete or (None if len(study.directions) <= 3
                                         else f"{len(study.directions)} objectives (at most 3 can be drawn)")))
    else:
        plots[:0] = [
            ("Optimization history" + (" (every PBT segment is a trial)" if finals else ""),
             lambda: vis.plot_optimization_history(study, target_name=objectives[0]), no_complete),
            (f"Parameter importances{label}", lambda: vis.plot_param_importances(view, target_name=objectives[0]),
             "needs at least 2 complete trials" if len(complete) < 2
             else None if len(names) >= 2 else f"needs at least 2 parameters (this study has {len(names)})"),
        ]
    chunks = []
    for title, plot, why_not in plots:
        fig = None
        if why_not is None:
            try:
                fig = plot()
            except Exception as exc:  # e.g. ValueError for a study shape Optuna does not support
                why_not = f"Optuna cannot draw it: {type(exc).__name__}: {exc}"
        if fig is None or not fig.data:
            chunks.append(f"<h2>{html.escape(title)}</h2>\n"
                          + _note(f"Not drawn: {why_not or 'Optuna had nothing to draw'}."))
            continue
        chunks.append(f"<h2>{html.escape(title)}</h2>\n" + figure_html(fig))
    return chunks


def read_metrics(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """The named metrics a trial logged (``trial.log_metrics``): name -> [(step, value)], from its metrics.csv."""
    path = folder / "metrics.csv"
    if not is_file(path):
        return {}
    with open_file(path, "r", newline="") as f:
        rows = list(csv.DictReader(f))
    names = [c for c in (rows[0] if rows else {}) if c not in METRICS_BOOKKEEPING]
    out: dict[str, list[tuple[int, float]]] = {}
    for name in names:
        points = [(int(r["step"]), float(r[name])) for r in rows if r.get(name) not in (None, "")]
        if points:
            out[name] = points
    return out


def _logged_metrics(study: optuna.Study, run_dir: Path, most: int = 8) -> list[str]:
    """One subplot per metric the trials logged, a line per trial; nothing if none logged any."""
    trials = study.get_trials(deepcopy=False)
    if is_large(trials):  # only trials that have a folder can have logged metrics; the best of them are drawn
        have = {int(folder.name) for folder in trial_folders(run_dir)}
        complete = [t for t in trials if t.number in have and t.state == TrialState.COMPLETE and t.values]
        maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        trials = sorted(complete, key=lambda t: t.values[0], reverse=maximize)[:LOGGED_CURVES]
    by_trial = {t.number: read_metrics(trial_folder(run_dir, t.number)) for t in trials}
    names = list(dict.fromkeys(n for m in by_trial.values() for n in m))
    if not names:
        return []
    from plotly.subplots import make_subplots

    shown = names[:most]
    fig = make_subplots(rows=len(shown), cols=1, shared_xaxes=True, subplot_titles=shown, vertical_spacing=0.08)
    for number, metrics in by_trial.items():
        first = True
        for row, name in enumerate(shown, start=1):
            if name in metrics:
                steps, values = zip(*metrics[name])
                fig.add_scatter(x=steps, y=values, mode="lines", name=f"trial {number}", legendgroup=str(number),
                                showlegend=first, row=row, col=1)
                first = False
    fig.update_xaxes(title_text="step", row=len(shown), col=1)
    fig.update_layout(height=max(320, 260 * len(shown)))
    if is_large(study.get_trials(deepcopy=False)):
        fig.update_layout(title_text=f"the {len(by_trial)} best trials that logged metrics")
    more = _note(f"{len(names) - most} more metrics are in the trials' metrics.csv: {', '.join(names[most:])}.") \
        if len(names) > most else ""
    return ["<h2>Logged metrics</h2>\n" + figure_html(fig) + more]


def _trial_table(study: optuna.Study, run_dir: Path) -> str:
    """Every trial: number (linked to its folder), state, value(s), params, duration, fail reason
    (a large study: the best and the latest trials, `hpwf.report._large.large_table`)."""
    trials = study.get_trials(deepcopy=False)
    head = "".join(f"<th>{h}</th>" for h in ("#", "state", "value(s)", "params", "duration", "fail reason"))
    if is_large(trials):
        return large_table(trials, study, lambda t: _row(t, run_dir), head)
    return f"<h2>Trials</h2>\n<table><tr>{head}</tr>\n" + "\n".join(_row(t, run_dir) for t in trials) + "</table>"


def _row(t: FrozenTrial, run_dir: Path) -> str:
    """One trial's row of the trial table."""
    folder = trial_folder(run_dir, t.number)
    number = f'<a href="{folder.relative_to(run_dir)}/">{t.number}</a>' if folder.is_dir() else str(t.number)
    reason = str(t.user_attrs.get("fail_reason") or "").strip().splitlines()
    why = reason[0] if len(reason) == 1 else f"{reason[0]} … {reason[-1]}" if reason else ""
    duration = "-" if t.duration is None else f"{t.duration.total_seconds():.3g} s"
    cells = [_values(t), _params(t), duration, why]
    return (f'<tr class="{t.state.name}"><td>{number}</td><td>{t.state.name}</td>'
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")


def _values(trial: FrozenTrial) -> str:
    """The trial's objective value(s), or ``-``."""
    return "-" if trial.values is None else ", ".join(_fmt(v) for v in trial.values)


def _params(trial: FrozenTrial) -> str:
    """``name=value`` pairs, comma-separated."""
    return ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())


def _fmt(value: Any) -> str:
    """Floats to 6 significant digits, anything else via ``str``."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _note(text: str) -> str:
    """An escaped ``<p class="note">``."""
    return f'<p class="note">{html.escape(text)}</p>'


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Optuna's log warnings and experimental warnings while plotting (notes say it instead)."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(level)


def _atomic(path: Path, text: str) -> None:
    """Write ``text`` to a fresh temporary sibling, then rename it over ``path`` (`hpwf.rundir._perms`)."""
    from hpwf.rundir import atomic_write

    atomic_write(path, text)
