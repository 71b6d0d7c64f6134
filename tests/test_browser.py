"""report.html in a real browser: headless Chromium (Debian's ``chromium``, installed here when
missing) opens it offline and every plot must draw, with no script error in the console.

Four runs: single-objective (with logged metrics), multi-objective, pruned-heavy, and a search
followed by a UQ ensemble. Chromium runs with no network at all (``--proxy-server`` to a closed
port), so a report that fetched plotly.js from a CDN would show no plot.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "workflows" / "toy.py"

SINGLE = """
import hpwf
search = hpwf.Search(direction="minimize", n_trials=8, sampler="tpe", seed=0, pruner="none")
def objective(trial):
    x, y = trial.suggest_float("x", -3, 3), trial.suggest_int("y", 1, 8, log=True)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    for epoch in range(3):
        trial.report((x - 1) ** 2 + y / (epoch + 1), epoch)
        trial.log_metrics(epoch, train_loss=1.0 / (epoch + 1), lr=0.1 * 0.5 ** epoch)
    return (x - 1) ** 2 + y + (kind == "b")
"""

MULTI = """
import hpwf
search = hpwf.Search(directions=["minimize", "maximize"], n_trials=8, sampler="nsga2", seed=0,
                     metric_names=["loss", "gain"])
def objective(trial):
    x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
    return x + y, x * (1 - y)
"""

UQ = """
import numpy as np
import hpwf
search = hpwf.Search(direction="minimize", n_trials=3, sampler="random", seed=0, pruner="none")
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, 120)
    return x, np.sin(x) + rng.normal(0, 0.1 + 0.1 * np.abs(x))
def objective(trial):
    return (trial.suggest_float("degree_weight", 0.1, 1.0) - 0.5) ** 2
def train_member(member):
    x, y = data()
    in_bag, _ = member.bootstrap(len(x))
    coef = np.polyfit(x[in_bag], y[in_bag], 3)
    mean = np.polyval(coef, x)
    var = np.full_like(x, np.var(y[in_bag] - np.polyval(coef, x[in_bag])))
    member.save_predictions(x=x, y=y, mean=mean, var=var)
    return float(np.mean((y - mean) ** 2))
ensemble = hpwf.Ensemble(members=4, train=train_member, top_k=1, seed=0)
"""


CLASSIFIER = """
import numpy as np
import hpwf
search = hpwf.Search(direction="minimize", n_trials=2, sampler="random", seed=0)
def objective(trial):
    return trial.suggest_float("x", 0, 1)
def train_member(member):
    rng = np.random.default_rng(member.index)
    y = np.arange(60) % 3
    logits = rng.normal(0, 1, (60, 3)) + 2.0 * np.eye(3)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    member.save_predictions(y=y, probs=probs)
    return float(np.mean(probs.argmax(1) != y))
ensemble = hpwf.Ensemble(members=3, train=train_member, top_k=1, seed=0)
"""

PBT = """
import hpwf
from tests.objectives import pbt_walk
search = hpwf.Search(direction="minimize", n_trials=8, sampler="random", scheduler="pbt", population=4,
                     interval=2, seed=0)
def objective(trial):
    return pbt_walk(trial, steps=4)
"""


def sections(source: str) -> dict[str, str]:
    """The report's chunks by their heading (h2 or h3), in order."""
    parts = re.split(r"<h[23]>(.*?)</h[23]>", source)
    return {title: body for title, body in zip(parts[1::2], parts[2::2])}


def chromium() -> str:
    """The chromium binary, installed with apt when missing (as tests/slurm/localslurm.sh installs Slurm)."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail("chromium is missing and this test is not root: apt-get install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        proc = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
        if proc.returncode != 0:
            pytest.fail(f"cannot install chromium ({' '.join(command)}): {proc.stderr[-2000:]}")
    found = shutil.which("chromium")
    if not found:
        pytest.fail("apt-get installed chromium but there is no `chromium` on PATH")
    return found


def open_in_chromium(page: Path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and the console messages Chromium logged."""
    proc = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
         "--enable-unsafe-swiftshader", "--proxy-server=127.0.0.1:9", "--no-first-run", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=20000", "--window-size=1280,2000", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


PLOT_DIV = re.compile(r'<div[^>]*class="plotly-graph-div[^"]*"')


def rendered_plots(dom: str) -> list[dict[str, int]]:
    """For each plotly figure div in a DOM: its ``main-svg`` elements and drawn traces (up to the next figure)."""
    starts = [m.start() for m in PLOT_DIV.finditer(dom)] + [len(dom)]
    chunks = [dom[a:b] for a, b in zip(starts, starts[1:])]
    return [{"main-svg": len(re.findall(r'class="main-svg"', c)),
             "traces": len(re.findall(r'class="(?:trace|parcoords)\b', c))} for c in chunks]


def check_report_renders(run_dir: Path, expect_at_least: int) -> None:
    proc = subprocess.run([sys.executable, "-m", "hpwf", "report", str(run_dir)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    page = run_dir / "report.html"
    source = page.read_text()
    assert not re.search(r"<script[^>]+src=", source), "the report must not load scripts from elsewhere"
    drawn = len(PLOT_DIV.findall(source))
    assert drawn >= expect_at_least, f"{drawn} figures in the report, expected at least {expect_at_least}"
    dom, console = open_in_chromium(page)
    assert not console, "console messages while loading the report:\n" + "\n".join(console)
    plots = rendered_plots(dom)
    assert len(plots) == drawn
    blank = [i for i, p in enumerate(plots) if not p["main-svg"] or not p["traces"]]
    assert not blank, f"plots {blank} of {drawn} did not draw: {plots}"


def _run(tmp_path: Path, workflow_text: str | None, *args: str, env: dict[str, str] | None = None) -> Path:
    workflow = TOY
    if workflow_text is not None:
        workflow = tmp_path / "wf.py"
        workflow.write_text(workflow_text)
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "hpwf", "run", str(workflow), "--run-dir", str(run_dir),
                           "--workers", "2", "--quiet", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return run_dir


def test_the_browser_check_catches_a_script_error_and_a_blank_plot(tmp_path: Path) -> None:
    """The check itself can fail: a console error and a figure div that never drew are both seen."""
    page = tmp_path / "broken.html"
    page.write_text('<html><body><div class="plotly-graph-div" id="p"></div><script>notDefined();</script></body></html>')
    dom, console = open_in_chromium(page)
    assert any("Uncaught ReferenceError: notDefined is not defined" in line for line in console), console
    assert rendered_plots(dom) == [{"main-svg": 0, "traces": 0}]


def test_single_objective_report_renders(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, SINGLE)
    check_report_renders(run_dir, expect_at_least=5)  # history, importances, coordinates,
    # intermediate values, logged metrics
    logged = sections((run_dir / "report.html").read_text())["Logged metrics"]
    assert '"text":"train_loss"' in logged and '"text":"lr"' in logged
    assert '"text":"time"' not in logged  # metrics.csv's Unix time is bookkeeping, not a metric


def test_multi_objective_report_renders(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, MULTI)
    check_report_renders(run_dir, expect_at_least=3)  # Pareto front, parallel coordinates of each objective
    chunks = sections((run_dir / "report.html").read_text())
    assert "Parallel coordinates: loss" in chunks and "Parallel coordinates: gain" in chunks, list(chunks)
    assert '"text":"loss"' in chunks["Pareto front"] and '"text":"gain"' in chunks["Pareto front"]
    assert "Logged metrics" not in chunks  # it never called log_metrics


def test_pbt_report_leads_with_the_schedule(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, PBT, env={"PYTHONPATH": str(ROOT)})
    check_report_renders(run_dir, expect_at_least=4)  # lineage, explored params, history, intermediate values
    titles = list(sections((run_dir / "report.html").read_text()))
    assert titles[:2] == ["Summary", "Scheduler"], titles
    explored = sections((run_dir / "report.html").read_text())["Explored params over steps"]
    assert "best final lineage (replayed)" in explored and '"text":"lr"' in explored
    assert any(t.startswith("Parameter importances (PBT: the 4 final segments of generation 1") for t in titles), titles
    assert any(t.startswith("Parallel coordinates (PBT: the 4 final segments") for t in titles), titles
    assert "Logged metrics" not in titles  # report() alone logs no named metric


def test_pruned_heavy_report_renders(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, None, "--n-trials", "16", env={"TOY_EPOCHS": "6"})
    import hpwf

    states = [t.state.name for t in hpwf.load_study(run_dir).trials]
    assert states.count("PRUNED") >= states.count("COMPLETE"), states
    check_report_renders(run_dir, expect_at_least=4)


def test_classification_ensemble_has_a_reliability_diagram(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, CLASSIFIER)
    check_report_renders(run_dir, expect_at_least=3)  # history, coordinates, reliability, entropy
    titles = list(sections((run_dir / "report.html").read_text()))
    assert any(t.startswith("Reliability diagram (ECE ") for t in titles), titles


def test_uq_report_renders(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, UQ)
    assert (run_dir / "uq_predictions.npz").exists()
    check_report_renders(run_dir, expect_at_least=2 + 3)  # history, coordinates; calibration, std vs error, band


def test_a_100000_trial_report_renders_and_says_what_each_plot_shows(tmp_path: Path) -> None:
    """Issue 24: at 10^5 trials the report summarises (a few MB) and still draws every plot."""
    from tests.bigjournal import make_run

    run_dir = make_run(tmp_path / "big", 100_000, fail_every=97)
    check_report_renders(run_dir, expect_at_least=4)  # history, importances, intermediate values, coordinates
    page = run_dir / "report.html"
    assert page.stat().st_size <= 10e6, f"report.html is {page.stat().st_size / 1e6:.1f} MB"
    source = page.read_text()
    headings = re.findall(r"<h2>([^<]*)</h2>\s*<div", source)  # the heading right above each figure
    assert len(headings) == len(PLOT_DIV.findall(source))
    for words in ("best so far over all 98,970 complete trials", "random sample of 2,000",
                  "10-50-90 % quantiles at each step over 100,000 reporting trials", "the 100 best trials and a random sample of 400"):
        assert any(words in h for h in headings), (words, headings)
    assert "All 100,000 trials are in trials.csv" in source
    assert source.count("<tr class=") == 200  # the best 100 and the latest 100 trials
    assert len((run_dir / "trials.csv").read_text().splitlines()) == 1 + 100_000
