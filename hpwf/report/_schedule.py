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
        chunks.append(_explored_plot(info))
        rows = "".join(f"<tr><td>{s['generation']}</td><td>{s['trial']}</td><td>{s['start_step']}</td>"
                       f"<td>{html.escape(str(s['value']))}</td><td>{html.escape(str(s['params']))}</td></tr>"
                       for s in info["best_schedule"])
        chunks.append("<h3>Best final configuration as a schedule</h3><table><tr><th>generation</th><th>segment</th>"
                      f"<th>from step</th><th>value</th><th>params</th></tr>{rows}</table>")
    return "\n".join(chunks)


def _explored_plot(info: dict, most: int = 6) -> str:  # type: ignore[type-arg]
    """Each explored param over steps: a line per member, and the best final lineage's schedule
    (the one `hpwf replay` follows) drawn thick."""
    from plotly.subplots import make_subplots

    rows = sorted(info["segments_list"], key=lambda r: (r["member"], r["generation"]))
    names = [n for n in dict.fromkeys(k for r in rows for k in r["params"])
             if len({repr(r["params"].get(n)) for r in rows}) > 1][:most]
    if not names:
        return "<p class=\"note\">No param changed between segments: nothing was explored.</p>"
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=names, vertical_spacing=0.08)
    members = sorted({r["member"] for r in rows})
    for i, name in enumerate(names, start=1):
        for member in members:
            mine = [r for r in rows if r["member"] == member and name in r["params"]]
            fig.add_scatter(x=[r["start_step"] for r in mine], y=[r["params"][name] for r in mine], mode="lines+markers",
                            line={"shape": "hv", "width": 1}, name=f"member {member}", legendgroup=f"m{member}",
                            showlegend=i == 1, row=i, col=1)
        best = [s for s in info["best_schedule"] if name in s["params"]]
        fig.add_scatter(x=[s["start_step"] for s in best], y=[s["params"][name] for s in best], mode="lines+markers",
                        line={"shape": "hv", "width": 4, "color": "#d80"}, name="best final lineage (replayed)",
                        legendgroup="best", showlegend=i == 1, row=i, col=1)
    fig.update_xaxes(title_text="step (a segment's params hold from its first step)", row=len(names), col=1)
    fig.update_layout(height=max(320, 240 * len(names)), title="PBT schedule: explored params over steps")
    return "<h3>Explored params over steps</h3>" + figure_html(fig)


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
