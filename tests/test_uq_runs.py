"""Ensembles from the search end to end: `hpwf run` with greedy selection + conformal on the local and
MPI backends, ensembles of trials without retraining, rebuilding after `hpwf resume`, directions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from optuna.trial import TrialState

import hpwf
from hpwf.workflow import _predictions as predictions
from hpwf.ensembles import _uq as uq
from hpwf.ensembles._selection import combine
from hpwf.rundir._trialdir import trial_folder

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "workflows" / "uq_tiny.py")
MPIRUN = str(Path(sys.executable).parent / "mpirun")


def cli(*args: str, env: dict[str, str] | None = None, mpi: int = 0) -> subprocess.CompletedProcess[str]:
    launch = [MPIRUN, "-np", str(mpi)] if mpi else []
    return subprocess.run([*launch, sys.executable, "-m", "hpwf", *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env={**os.environ, **(env or {})})


def trial_dir(run_dir: Path, number: int) -> Path:
    return trial_folder(run_dir, number)


def check_greedy_conformal_run(run_dir: Path) -> dict[str, Any]:
    """What `hpwf run uq_tiny.py` (greedy + 4 bootstrap members + conformal) must leave behind."""
    metrics = json.loads((run_dir / "uq_metrics.json").read_text())
    models = {"ensemble", "ensemble+conformal", "best_member", "best_member+conformal", "best_trial",
              "best_trial+conformal"}
    assert models <= set(metrics), set(metrics)
    for name in models:
        scores = {"rescaled_nll", "rescaled_crps"} if "+" in name else {"nll", "crps", "mixture_nll", "mixture_crps"}
        assert scores | {"rmse", "picp_90", "ece", "miscalibration_area", "winkler_90"} <= set(metrics[name])
        assert "worst_sigma_decile_90" in metrics[name] and "worst_x_bin_90" in metrics[name]
    assert "nll" not in metrics["ensemble+conformal"]  # sigma-rescaling is labelled as such, not as conformal
    assert len(metrics["conditional"]["ensemble+conformal"]["sigma_deciles_90"]) == 10
    cal = metrics["ensemble+conformal"]
    assert 0.86 <= cal["picp_90"] <= 0.94, cal  # 600 test points: +-0.03 is about 2.5 standard errors
    assert cal["rmse"] == metrics["ensemble"]["rmse"]  # calibration moves intervals, not means
    assert cal["q_90"] > 0 and cal["n_cal"] == 300
    for name in ("ensemble+mondrian", "ensemble+jackknife+ab"):  # adaptive, and no held-out calibration rows
        assert 0.85 <= metrics[name]["picp_90"] <= 0.95 and "worst_slab_90" in metrics[name], (name, metrics[name])
    sel = metrics["selection"]
    assert sel["method"] == "greedy" and sel["metric"] == "nll"
    assert sel["calibrate"] == ["conformal", "mondrian", "jackknife+"] and sel["calibrate_options"]["beta"] == 0.01
    weights = {int(k): w for k, w in sel["weights"].items()}
    assert sum(weights.values()) == pytest.approx(1.0)
    assert len(sel["trace"]) == 4 and sel["trace"][0] == pytest.approx(min(sel["single"].values()), abs=1e-6)
    assert json.loads((run_dir / "ensemble" / "selection.json").read_text())["selection"]["weights"] == sel["weights"]
    # Members: configurations of the greedily selected trials, replayed through the objective's builder.
    search = hpwf.load_study(run_dir)
    members = [t for t in hpwf.load_study(run_dir / "ensemble").trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["member"] for t in members) == [0, 1, 2, 3]
    assert {r["source_trial"] for r in sel["members"]} <= set(weights)
    for t in members:
        folder = trial_folder(run_dir / "ensemble", t.number)
        source = t.user_attrs["source_trial"]
        assert json.loads((folder / "params.json").read_text()) == search.trials[source].params
        record = json.loads((folder / "member.json").read_text())
        assert record["source_trial"] == source and record["params"] == search.trials[source].params
        for split in ("val", "cal", "test"):
            assert predictions.path(folder, split).exists()
    best = [r for r in sel["members"] if r["best"]]
    assert len(best) == 1 and best[0]["score"] == min(r["score"] for r in sel["members"])  # minimize, inherited
    return metrics


def test_greedy_conformal_members_end_to_end_local(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = cli("run", TINY, "--run-dir", str(run_dir), "--workers", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "as the search's" in proc.stderr  # the ensemble's direction, inherited and said
    check_greedy_conformal_run(run_dir)
    report = cli("report", str(run_dir))
    page = (run_dir / "report.html").read_text()
    assert report.returncode == 0 and "Calibration, before and after conformal" in page
    assert "ensemble (conformal)" in page and "greedy selection on validation nll" in page


@pytest.mark.mpi
def test_greedy_conformal_members_end_to_end_mpi(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = cli("run", TINY, "--backend", "mpi", "--run-dir", str(run_dir), "--quiet", mpi=3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_greedy_conformal_run(run_dir)


def test_greedy_ensemble_of_trials_without_retraining(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = cli("run", TINY, "--run-dir", str(run_dir), "--workers", "2", "--quiet",
               env={"UQ_MEMBERS": "0", "UQ_SIZE": "6"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (run_dir / "ensemble" / "run.json").exists()  # nothing was retrained
    metrics = json.loads((run_dir / "uq_metrics.json").read_text())
    weights = {int(k): w for k, w in metrics["selection"]["weights"].items()}
    assert [r["trial"] for r in metrics["selection"]["members"]] == list(weights)
    # The ensemble's figures are the weighted mixture of the selected trials' own test predictions.
    test = [predictions.load(trial_dir(run_dir, n), "test") for n in weights]
    mix = combine(test, list(weights.values()))  # type: ignore[arg-type]
    want = uq.regression_metrics(test[0]["y"], mix["mean"], mix["var"])  # type: ignore[index]
    assert metrics["ensemble"]["nll"] == pytest.approx(want["nll"], rel=1e-6)
    # Greedy's first pick is the best single trial on validation; greedy never does worse on it.
    single = {int(k): v for k, v in metrics["selection"]["single"].items()}
    assert metrics["selection"]["trace"][-1] <= min(single.values()) + 1e-9
    assert 0.86 <= metrics["ensemble+conformal"]["picp_90"] <= 0.94


@pytest.mark.parametrize("options", [{"init": 2, "min_distinct": 3, "tolerance": 0.02}, {"bags": 3}],
                         ids=["top-k-start-distinct-tolerance", "bagged"])
def test_greedy_select_options_end_to_end(tmp_path: Path, options: dict[str, Any]) -> None:
    """`Ensemble(select_options=...)` through `hpwf run`: the selection follows the options, and
    selection.json, uq_metrics.json and the report say which were used."""
    run_dir = tmp_path / "run"
    proc = cli("run", TINY, "--run-dir", str(run_dir), "--workers", "2", "--quiet",
               env={"UQ_MEMBERS": "0", "UQ_SIZE": "6", "UQ_SELECT_OPTIONS": json.dumps(options)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((run_dir / "ensemble" / "selection.json").read_text())["selection"]
    metrics = json.loads((run_dir / "uq_metrics.json").read_text())
    assert metrics["selection"]["weights"] == saved["weights"]
    assert saved["options"] == {"init": 1, "tolerance": 0.0, "min_distinct": 1, "bags": 0, **options}
    assert metrics["selection"]["options"] == saved["options"]
    weights = {int(k): w for k, w in saved["weights"].items()}
    single = {int(k): v for k, v in saved["single"].items()}
    assert sum(weights.values()) == pytest.approx(1.0) and len(single) == 8
    assert metrics["ensemble"]["members"] == len(weights)
    assert cli("report", str(run_dir)).returncode == 0
    page = (run_dir / "report.html").read_text()
    if "bags" in options:
        assert saved["bags"] == 3 and saved["rounds"] is None and len(saved["trace"]) == 1
        assert "bagged over 3 resamples of the validation rows" in page
        return
    top2 = sorted(single, key=lambda k: (single[k], k))[:2]
    assert set(top2) <= set(weights) and len(weights) >= 3  # started from the top 2; 3 distinct kept
    trace, tol = saved["trace"], options["tolerance"]
    assert len(trace) == 6 and trace[0] == pytest.approx(single[top2[0]], abs=1e-6)
    best = min(trace[2:])  # a prefix of 3+ rounds has 3 distinct members: round 3 must add a new one
    kept = saved["rounds"]
    assert kept >= 3 and trace[kept - 1] <= best + tol + 1e-9
    assert all(trace[r] > best + tol for r in range(2, kept - 1))  # the shortest prefix within tolerance
    assert f"best prefix: {kept} of 6 rounds" in page
    assert "started from the top 2, at least 3 distinct, tolerance 0.02" in page


def test_rebuild_after_resume_and_a_new_top_k(tmp_path: Path) -> None:
    """The scenario of issue 16: resume adds better trials, the ensemble says it is stale; `hpwf
    ensemble` rebuilds it; `--top-k 3 --members 6` on a run with an ensemble is honoured."""
    run_dir = tmp_path / "run"
    env = {"UQ_SELECT": "topk", "UQ_PLANT": "1", "UQ_MEMBERS": "2", "UQ_TRIALS": "3"}
    assert cli("run", TINY, "--run-dir", str(run_dir), "--workers", "2", "--quiet", env=env).returncode == 0

    def sources() -> list[int]:
        rows = json.loads((run_dir / "uq_metrics.json").read_text())["selection"]["members"]
        return [r["source_trial"] for r in sorted(rows, key=lambda r: r["member"])]

    assert sources() == [2, 1]  # the two best of trials 0..2 (value = -number)
    resumed = cli("resume", str(run_dir), "--n-trials", "6", "--quiet", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "come from trials [1, 2]" in resumed.stderr and "now [4, 5]" in resumed.stderr
    assert f"hpwf ensemble WORKFLOW --from {run_dir}" in resumed.stderr
    stale = json.loads((run_dir / "uq_metrics.json").read_text())["selection"]["stale"]
    assert stale and sources() == [2, 1]  # kept, not silently retrained

    rebuilt = cli("ensemble", TINY, "--from", str(run_dir), "--workers", "2", "--quiet", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert "ensemble: 2 members in" in rebuilt.stderr
    assert sources() == [5, 4] and not json.loads((run_dir / "uq_metrics.json").read_text())["selection"]["stale"]

    wider = cli("ensemble", TINY, "--from", str(run_dir), "--top-k", "3", "--members", "6", "--workers", "2",
                "--quiet", env=env)
    assert wider.returncode == 0, wider.stderr[-3000:]
    assert "ensemble: 6 members (2 kept, 4 to train) in" in wider.stderr and "4 members in" not in wider.stderr
    end = [line for line in wider.stderr.splitlines() if " complete, " in line][-1]
    assert "best member score" in end and "(member " in end and "(trial " not in end, end  # issue 22
    assert sources() == [5, 4, 3, 5, 4, 3]
    members = hpwf.load_study(run_dir / "ensemble").trials
    assert sum(t.state == TrialState.COMPLETE for t in members) == 2 + 2 + 4  # members 0 and 1 reused
    assert json.loads((run_dir / "uq_metrics.json").read_text())["ensemble"]["members"] == 6
    again = cli("ensemble", TINY, "--from", str(run_dir), "--top-k", "3", "--members", "6", "--quiet", env=env)
    assert again.returncode == 0 and "all 6 members of the plan are trained already" in again.stderr


def test_member_direction_is_inherited_from_the_search(tmp_path: Path) -> None:
    """A maximised search (accuracy): the best member is the one with the highest score."""
    workflow = tmp_path / "wf.py"
    workflow.write_text(
        "import hpwf, numpy as np\n"
        "search = hpwf.Search(direction='maximize', n_trials=3, sampler='random', seed=0)\n"
        "def objective(trial):\n"
        "    return trial.suggest_float('x', 0, 1)\n"
        "def train(member):\n"
        "    y = np.zeros(10)\n"
        "    member.save_predictions(y=y, probs=np.full((10, 2), 0.5))\n"
        "    return [0.2, 0.9, 0.5][member.index]  # out-of-bag accuracy\n"
        "ensemble = hpwf.Ensemble(members=3, train=train, top_k=1)\n")
    proc = cli("run", str(workflow), "--run-dir", str(tmp_path / "run"), "--workers", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "members' scores are to maximize, as the search's" in proc.stderr
    rows = json.loads((tmp_path / "run" / "uq_metrics.json").read_text())["selection"]["members"]
    assert [r["member"] for r in rows if r["best"]] == [1]


def test_an_ensemble_without_a_search_needs_a_direction(tmp_path: Path) -> None:
    workflow = tmp_path / "wf.py"
    workflow.write_text("import hpwf\n"
                        "ensemble = hpwf.Ensemble(members=2, train=lambda m: 0.0, params={'x': 1})\n")
    proc = cli("run", str(workflow), "--run-dir", str(tmp_path / "run"), "--workers", "2", "--quiet")
    assert proc.returncode == 2 and "Ensemble(direction=...) is needed" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_greedy_without_validation_predictions_is_a_clear_error(tmp_path: Path) -> None:
    workflow = tmp_path / "wf.py"
    workflow.write_text("import hpwf\n"
                        "search = hpwf.Search(direction='minimize', n_trials=2, sampler='random', seed=0)\n"
                        "def objective(trial):\n"
                        "    return trial.suggest_float('x', 0, 1)\n"
                        "ensemble = hpwf.Ensemble(select='greedy', size=3)\n")
    proc = cli("run", str(workflow), "--run-dir", str(tmp_path / "run"), "--workers", "2", "--quiet")
    assert proc.returncode == 2 and "trial.save_predictions('val'" in proc.stderr, proc.stderr
    assert np.isfinite(hpwf.status(tmp_path / "run")["best_value"])  # the search itself is kept
