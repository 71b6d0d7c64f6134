"""The report's "Logged metrics" section: the named metrics trials logged (``trial.log_metrics``),
read from their ``metrics.csv``."""

from __future__ import annotations

import csv
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpwf.report._figure import figure_html, note
from hpwf.report._large import is_large
from hpwf.rundir import is_file, open_file, trial_folder, trial_folders

LOGGED_CURVES = 20  # a large study: the logged metrics of its best trials only
METRICS_BOOKKEEPING = ("step", "value", "elapsed_s", "time")  # metrics.csv columns that are not logged metrics


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


def logged_metrics(study: optuna.Study, run_dir: Path, most: int = 8) -> list[str]:
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
    more = note(f"{len(names) - most} more metrics are in the trials' metrics.csv: {', '.join(names[most:])}.") \
        if len(names) > most else ""
    return ["<h2>Logged metrics</h2>\n" + figure_html(fig) + more]
