"""The schedulers' section of ``report.html``: paused trials, and PBT's lineage plot and best schedule."""

from __future__ import annotations

import html
from pathlib import Path

import optuna

from hpwf.engine.schedulers import lineage
from hpwf.report._figure import figure_html
from hpwf.rundir import PAUSED_ATTR, PBT_MEMBER, RESTORE_ATTR, is_paused


def scheduler_section(study: optuna.Study, run_dir: Path) -> str | None:
    """HTML for a run whose search paused trials or ran PBT; None for any other run."""
    trials = study.get_trials(deepcopy=False)
    paused = [t.number for t in trials if is_paused(t, run_dir)]
    resumed = [t.number for t in trials if RESTORE_ATTR in t.user_attrs and PBT_MEMBER not in t.user_attrs]
    info = lineage(study)
    if not paused and not resumed and info is None:
        return None
    chunks = ["<h2>Scheduler</h2>"]
    if paused or resumed:
        chunks.append(f"<p>{len(paused)} trial(s) paused now (RUNNING in the study, attr {PAUSED_ATTR}): "
                      f"{html.escape(str(paused[:50]))}; {len(resumed)} trial(s) paused and resumed at least once.</p>")
    if info is not None:
        chunks.append(_lineage_plot(info))
        rows = "".join(f"<tr><td>{s['generation']}</td><td>{s['trial']}</td><td>{s['start_step']}</td>"
                       f"<td>{html.escape(str(s['value']))}</td><td>{html.escape(str(s['params']))}</td></tr>"
                       for s in info["best_schedule"])
        chunks.append("<h3>Best final configuration as a schedule</h3><table><tr><th>generation</th><th>segment</th>"
                      f"<th>from step</th><th>value</th><th>params</th></tr>{rows}</table>")
    return "\n".join(chunks)


def _lineage_plot(info: dict) -> str:  # type: ignore[type-arg]
    import plotly.graph_objects as go

    segments = {r["trial"]: r for r in info["segments_list"]}
    fig = go.Figure()
    for r in segments.values():
        parent = segments.get(r["parent"]) if r["parent"] is not None else None
        if parent is None or parent["value"] is None or r["value"] is None:
            continue
        fig.add_trace(go.Scatter(x=[parent["generation"], r["generation"]], y=[parent["value"], r["value"]],
                                 mode="lines", showlegend=False, hoverinfo="skip",
                                 line={"dash": "dash" if r["exploited"] else "solid", "width": 1,
                                       "color": "#c33" if r["exploited"] else "#999"}))
    done = [r for r in segments.values() if r["value"] is not None]
    fig.add_trace(go.Scatter(
        x=[r["generation"] for r in done], y=[r["value"] for r in done], mode="markers", name="segments",
        marker={"color": [r["member"] for r in done], "colorscale": "Viridis", "size": 8},
        text=[f"segment {r['trial']}, member {r['member']}, parent {r['parent']}" for r in done]))
    best = info["best_schedule"]
    fig.add_trace(go.Scatter(x=[s["generation"] for s in best], y=[s["value"] for s in best], mode="lines",
                             name="best lineage", line={"width": 3, "color": "#d80"}))
    fig.update_layout(title="PBT lineage (dashed red: exploit, a copied checkpoint)",
                      xaxis_title="generation", yaxis_title="value at the segment's end")
    return figure_html(fig)
