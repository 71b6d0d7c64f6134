"""``hpwf.report._html``: trials.csv and a self-contained report.html, also for studies Optuna cannot plot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest

from hpwf.report import _html as report
from hpwf.report._html import write_report
from hpwf.rundir._run import RunRecord, journal_storage, write_summary

PLOTLY_JS = re.compile(r"plotly\.js v\d")  # the banner at the top of the inlined library


def _study(run_dir: Path, name: str = "t", **kwargs: Any) -> optuna.Study:
    RunRecord(study_name=name, storage=None, workflow=None, options={"n_trials": 10, "run_id": "x"}).save(run_dir)
    return optuna.create_study(study_name=name, storage=journal_storage(run_dir / "study.journal"), **kwargs)


def _notes(page: str) -> list[str]:
    return re.findall(r'<p class="note">(.*?)</p>', page)


def test_single_objective_with_pruning_and_failure(tmp_path: Path) -> None:
    study = _study(tmp_path, direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0),
                   pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -5, 5)
        trial.suggest_categorical("kind", ["a", "b"])
        if trial.number == 3:
            trial.set_user_attr("fail_reason", "<script>alert(1)</script>\nValueError: last line")
            raise ValueError("boom")
        for step in range(4):
            trial.report((x - 1) ** 2 + 4 / (step + 1), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return (x - 1) ** 2

    study.optimize(objective, n_trials=10, catch=(ValueError,))
    write_summary(tmp_path, {"elapsed_s": 3.5, "utilisation": 0.75, "slots": 2, "stop_reason": None})

    paths = write_report(tmp_path)

    assert paths == [tmp_path / "trials.csv", tmp_path / "report.html"]
    assert len(pd.read_csv(paths[0])) == 10
    page = paths[1].read_text()
    for title in ("Summary", "Optimization history", "Parameter importances", "Parallel coordinates",
                  "Intermediate values", "Trials"):
        assert f"<h2>{title}</h2>" in page
    assert len(PLOTLY_JS.findall(page)) == 1 and page.count("Plotly.newPlot(") == 4
    assert _notes(page) == []
    assert "75% of 2 slots" in page and "3.5 s" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; … ValueError: last line" in page
    assert "<script>alert(1)" not in page
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("case", ["all_failed", "empty", "one_param"])
def test_degenerate_studies_get_notes_instead_of_figures(tmp_path: Path, case: str) -> None:
    study = _study(tmp_path, direction="maximize")
    if case == "all_failed":
        study.optimize(lambda t: t.suggest_float("x", 0, 1) / 0, n_trials=3, catch=(ZeroDivisionError,))
    elif case == "one_param":
        study.optimize(lambda t: -t.suggest_float("x", 0, 1) ** 2, n_trials=4)

    csv_path, html_path = write_report(tmp_path)

    page = html_path.read_text()
    notes = _notes(page)
    assert "Not drawn: no trial reported intermediate values." in notes
    if case == "one_param":
        assert len(pd.read_csv(csv_path)) == 4
        assert "Not drawn: needs at least 2 parameters (this study has 1)." in notes
        assert len(PLOTLY_JS.findall(page)) == 1  # history and parallel coordinates are drawn
    else:
        assert "Not drawn: no complete trial yet." in notes
        assert "Not drawn: needs at least 2 complete trials." in notes
        assert "no complete trial" in page and "Plotly.newPlot(" not in page
        assert len(PLOTLY_JS.findall(page)) == 0  # no figure, so no library either
    assert f"{3 if case == 'all_failed' else 0} fail" in page


def test_user_strings_are_escaped(tmp_path: Path) -> None:
    study = _study(tmp_path, name="<i>study</i>", direction="minimize")
    study.enqueue_trial({"act": "<b>relu</b>"})
    study.optimize(lambda t: float(t.suggest_categorical("act", ["<b>relu</b>", "tanh"]) == "tanh"), n_trials=2)

    page = write_report(tmp_path)[1].read_text()

    assert "<i>study" not in page and "&lt;i&gt;study&lt;/i&gt;" in page
    table = page[page.index("<h2>Trials</h2>"):]
    assert "<b>relu" not in table and "act=&lt;b&gt;relu&lt;/b&gt;" in table


def test_multi_objective_and_extra_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = _study(tmp_path, directions=["minimize", "maximize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=6)
    monkeypatch.setattr(report, "EXTRA_SECTIONS", [
        lambda s, d: f"<h2>UQ</h2><p>{len(s.trials)} trials in {d.name}</p>", lambda s, d: None,
        lambda s, d: 1 / 0,
    ])

    csv_path, html_path = write_report(tmp_path)

    assert len(pd.read_csv(csv_path)) == 6
    page = html_path.read_text()
    titles = re.findall(r"<h2>(.*?)</h2>", page)
    assert titles == ["Summary", "Pareto front", "Parallel coordinates: objective 0", "Parallel coordinates: objective 1",
                      "Intermediate values", "Trials", "UQ"]  # coordinates for every objective (issue 22)
    assert len(PLOTLY_JS.findall(page)) == 1 and page.count("Plotly.newPlot(") == 3
    assert "minimize, maximize" in page and f"6 trials in {tmp_path.name}" in page
    assert any("failed: ZeroDivisionError" in note for note in _notes(page))
