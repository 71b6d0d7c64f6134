"""The UQ section of ``report.html``: metrics, members, calibration before and after, std vs error, band."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from hpwf.ensembles import uq
from hpwf.rundir import is_file, read_file
from hpwf.report._figure import figure_html

KEY_METRICS = ("rmse", "nll", "crps", "mixture_nll", "mixture_crps", "rescaled_nll", "rescaled_crps", "picp_68",
               "picp_90", "picp_95", "mixture_picp_90", "width_90", "winkler_90", "worst_sigma_decile_90",
               "worst_x_bin_90", "worst_group_90", "worst_slab_90", "miscalibration_area", "ece", "q_90", "bins",
               "accuracy", "brier", "entropy", "mutual_information", "temperature", "ece_before",
               "set_coverage_90", "set_size_90", "worst_class_coverage_90", "classwise_set_coverage_90",
               "classwise_set_size_90", "classwise_worst_class_coverage_90")
LABELS = {"nll": "NLL (moment-matched Gaussian)", "crps": "CRPS (moment-matched Gaussian)",
          "mixture_nll": "NLL (exact mixture)", "mixture_crps": "CRPS (exact mixture)",
          "rescaled_nll": "NLL (σ rescaled on cal, not conformal)", "rescaled_crps": "CRPS (σ rescaled on cal)",
          "mixture_picp_90": "PICP@90 (mixture quantiles)", "winkler_90": "interval (Winkler) score @90",
          "worst_sigma_decile_90": "coverage@90, worst σ-decile", "worst_x_bin_90": "coverage@90, worst x decile",
          "worst_group_90": "coverage@90, worst group", "worst_slab_90": "coverage@90, worst slab (≥20 %)",
          "bins": "Mondrian bins", "ece_before": "ECE before temperature scaling",
          "set_coverage_90": "set coverage@90", "set_size_90": "mean set size@90",
          "worst_class_coverage_90": "set coverage@90, worst class",
          "classwise_set_coverage_90": "class-conditional sets: coverage@90",
          "classwise_set_size_90": "class-conditional sets: mean size",
          "classwise_worst_class_coverage_90": "class-conditional sets: worst class"}


def uq_section(study: optuna.Study, run_dir: Path) -> str | None:
    """HTML for the run's ensemble, or None when the run has no aggregated ensemble."""
    metrics_path, preds_path = run_dir / "uq_metrics.json", run_dir / "uq_predictions.npz"
    if not is_file(metrics_path):
        return None
    everything: dict[str, Any] = json.loads(read_file(metrics_path))
    metrics = uq.model_metrics(everything)
    chunks = ["<h2>Uncertainty quantification</h2>", _table(metrics)]
    if isinstance(everything.get("selection"), dict):
        chunks.append(_members(everything["selection"]))
    if isinstance(everything.get("conditional"), dict):
        chunks.append(_conditional(everything["conditional"]))
    if is_file(preds_path):
        p = dict(np.load(io.BytesIO(read_file(preds_path))))
        if "mean" in p:
            chunks += [_calibration(p), _std_vs_error(p)]
            if "x" in p:
                chunks.append(_band(p))
        elif "mutual_information" in p:
            if "probs" in p and "y" in p:
                chunks.append(_reliability(p))
            chunks.append(_entropy_histogram(p))
    return "\n".join(chunks)


def _table(metrics: dict[str, dict[str, float]]) -> str:
    """Held-out metrics, one column per model (raw and +conformal side by side)."""
    models = list(metrics)
    rows = [k for k in KEY_METRICS if any(k in m for m in metrics.values())]
    head = "".join(f"<th>{html.escape(m)}</th>" for m in models)
    rows += [k for k in uq.COUNT_KEYS if any(k in m for m in metrics.values())]
    body = "".join(
        f"<tr><td>{html.escape(LABELS.get(k, k))}</td>"
        + "".join(f"<td>{uq.format_metric(k, metrics[m].get(k))}</td>" for m in models) + "</tr>"
        for k in rows
    )
    return (f"<h3>Held-out metrics</h3><table><tr><th>metric</th>{head}</tr>{body}</table>"
            "<p>An ensemble's distribution is a mixture of its members' Gaussians: the moment-matched rows score "
            "the Gaussian with its mean and variance, the exact-mixture rows the mixture itself. A "
            "conformal method gives intervals only; its NLL/CRPS rows come from σ rescaled on the "
            "calibration set.</p>")


def _conditional(conditional: dict[str, dict[str, list[float]]]) -> str:
    """Coverage at 90 % by decile of predicted σ (and of x), one line per model: where coverage fails."""
    import plotly.graph_objects as go

    chunks = []
    for key, title in (("sigma_deciles_90", "predicted σ decile"), ("x_bins_90", "input x decile"),
                       ("class_coverage_90", "class"), ("classwise_class_coverage_90", "class (class-conditional)")):
        series = {m: v[key] for m, v in conditional.items() if key in v}
        if not series:
            continue
        fig = go.Figure()
        for name, values in series.items():
            fig.add_trace(go.Scatter(x=list(range(len(values))), y=values, mode="lines+markers", name=name))
        fig.add_hline(y=0.9, line_dash="dash", line_color="gray")
        fig.update_layout(xaxis_title=title, yaxis_title="coverage (nominal 0.90)")
        chunks.append(f"<h3>Coverage by {title}</h3>" + figure_html(fig))
    return "\n".join(chunks)


def _members(selection: dict[str, Any]) -> str:
    """Who is in the ensemble: member or trial, source trial, weight, score."""
    rows = selection.get("members") or []
    method = html.escape(str(selection.get("method")))
    metric = f" on validation {html.escape(str(selection['metric']))}" if selection.get("metric") else ""
    if selection.get("rounds"):
        metric += f" (best prefix: {selection['rounds']} of {len(selection.get('trace') or [])} rounds)"
    metric += html.escape(_greedy_options(selection.get("options") or {}))
    stale = f"<p><b>warning:</b> {html.escape(selection['stale'])}</p>" if selection.get("stale") else ""
    body = "".join(
        f"<tr><td>{r.get('member', '-')}</td><td>{r.get('trial', r.get('source_trial'))}</td>"
        f"<td>{r.get('weight', 0):.3f}</td><td>{_number(r.get('score'))}</td></tr>" for r in rows)
    return (f"<h3>Ensemble: {method} selection{metric}, {len(rows)} rows</h3>{stale}"
            "<table><tr><th>member</th><th>trial (source)</th><th>weight</th><th>score</th></tr>"
            f"{body}</table>")


def _greedy_options(options: dict[str, Any]) -> str:
    """Greedy's options that differ from the plain run, in words ("" when none do)."""
    words = []
    if options.get("init", 1) > 1:
        words.append(f"started from the top {options['init']}")
    if options.get("min_distinct", 1) > 1:
        words.append(f"at least {options['min_distinct']} distinct")
    if options.get("tolerance"):
        words.append(f"tolerance {options['tolerance']:g}")
    if options.get("bags"):
        words.append(f"bagged over {options['bags']} resamples of the validation rows")
    return f"; {', '.join(words)}" if words else ""


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


def _models(p: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Model name -> (mean, std) on the held-out set."""
    out = {"ensemble": (p["mean"], np.sqrt(p["aleatoric"] + p["epistemic"]))}
    if "best_mean" in p:
        out["best single model"] = (p["best_mean"], np.sqrt(p["best_var"]))
    if "mc_mean" in p:
        out["MC dropout"] = (p["mc_mean"], np.sqrt(p["mc_total"]))
    return out


def _calibration(p: dict[str, np.ndarray]) -> str:
    """Expected vs observed coverage: raw (solid) and after conformal calibration (dashed)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="ideal", line={"dash": "dash", "color": "gray"}))
    raw = {k.removeprefix("curve_raw__"): v for k, v in p.items() if k.startswith("curve_raw__")}
    if raw:
        for name, observed in raw.items():
            fig.add_trace(go.Scatter(x=p["curve_expected"], y=observed, mode="lines+markers", name=f"{name} (raw)"))
            after = p.get(f"curve_conformal__{name}")
            if after is not None:
                fig.add_trace(go.Scatter(x=p["curve_expected"], y=after, mode="lines+markers",
                                         name=f"{name} (conformal)", line={"dash": "dot"}))
    else:  # a run aggregated before the curves were saved
        for name, (mean, std) in _models(p).items():
            expected, observed = uq.calibration_curve(p["y"], mean, std)
            fig.add_trace(go.Scatter(x=expected, y=observed, mode="lines+markers", name=name))
    fig.update_layout(xaxis_title="expected coverage (central interval)", yaxis_title="observed coverage")
    title = "Calibration, before and after conformal" if any(k.startswith("curve_conformal__") for k in p) \
        else "Calibration"
    return f"<h3>{title}</h3>" + figure_html(fig)


def _std_vs_error(p: dict[str, np.ndarray]) -> str:
    import plotly.graph_objects as go

    mean, std = _models(p)["ensemble"]
    fig = go.Figure(go.Scatter(x=std, y=np.abs(p["y"] - mean), mode="markers", marker={"size": 4, "opacity": 0.5},
                               name="held-out points"))
    top = float(std.max())
    fig.add_trace(go.Scatter(x=[0, top], y=[0, 1.645 * top], mode="lines", name="90% bound (1.645 σ)",
                             line={"dash": "dash"}))
    fig.update_layout(xaxis_title="predicted std (ensemble)", yaxis_title="|error|")
    return "<h3>Predicted std vs absolute error</h3>" + figure_html(fig)


def _band(p: dict[str, np.ndarray]) -> str:
    import plotly.graph_objects as go

    order = np.argsort(p["x"])
    x, y, mean = p["x"][order], p["y"][order], p["mean"][order]
    total, aleatoric = np.sqrt(p["aleatoric"] + p["epistemic"])[order], np.sqrt(p["aleatoric"])[order]
    fig = go.Figure()
    for width, name, color in ((total, "±2σ total", "rgba(31,119,180,0.2)"),
                               (aleatoric, "±2σ aleatoric", "rgba(255,127,14,0.25)")):
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]),
                                 y=np.concatenate([mean + 2 * width, (mean - 2 * width)[::-1]]),
                                 fill="toself", fillcolor=color, line={"width": 0}, name=name))
    fig.add_trace(go.Scatter(x=x, y=y, mode="markers", marker={"size": 3, "color": "black"}, name="held-out data"))
    fig.add_trace(go.Scatter(x=x, y=mean, mode="lines", name="predictive mean"))
    fig.update_layout(xaxis_title="x", yaxis_title="y")
    return "<h3>Predictive band (aleatoric vs epistemic)</h3>" + figure_html(fig)


def _reliability(p: dict[str, Any]) -> str:
    """A classifier's reliability diagram: accuracy against confidence, per confidence bin."""
    import plotly.graph_objects as go

    conf, acc, count = uq.reliability_bins(p["y"], p["probs"])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="ideal", line={"dash": "dash", "color": "gray"}))
    fig.add_trace(go.Scatter(x=conf, y=acc, mode="lines+markers", name="ensemble", marker={"size": 6 + 14 * count / count.max()},
                             text=[f"{n} samples" for n in count]))
    fig.update_layout(xaxis_title="confidence (top-label probability)", yaxis_title="accuracy",
                      xaxis_range=[0, 1], yaxis_range=[0, 1.02])
    return f"<h3>Reliability diagram (ECE {uq.expected_calibration_error(p['y'], p['probs']):.3f})</h3>" + figure_html(fig)


def _entropy_histogram(p: dict[str, Any]) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Histogram(x=uq.predictive_entropy(p["probs"]), name="predictive entropy", opacity=0.6))
    fig.add_trace(go.Histogram(x=p["mutual_information"], name="mutual information (epistemic)", opacity=0.6))
    fig.update_layout(barmode="overlay", xaxis_title="nats")
    return "<h3>Per-sample uncertainty</h3>" + figure_html(fig)
