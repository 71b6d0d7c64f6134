"""bench/search_efficiency.py counts rank-epochs and builds each search's file right (no search runs here)."""

from __future__ import annotations

import datetime
from pathlib import Path
from types import SimpleNamespace

import hpwf
from bench.search_efficiency import MNIST1D, NT3, _command, _epochs_to, epoch_rows
from hpwf.rundir._trialdir import trial_folder


def _metrics(run_dir: Path, number: int, times: list[float]) -> None:
    folder = trial_folder(run_dir, number)
    folder.mkdir(parents=True)
    rows = "".join(f"{step},0.5,{t - times[0]:.3f},{t}\n" for step, t in enumerate(times))
    (folder / "metrics.csv").write_text("step,value,elapsed_s,time\n" + rows)


def _trial(value: float, done: float, state: str = "COMPLETE") -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(name=state), value=value,
                           datetime_complete=datetime.datetime.fromtimestamp(done))


def test_every_epoch_row_counts_the_trials_ranks_in_clock_order(tmp_path: Path) -> None:
    _metrics(tmp_path, 0, [10.0, 12.0, 14.0])
    _metrics(tmp_path, 1, [11.0, 13.0])
    rows = epoch_rows(tmp_path, {}, NT3.ranks)
    assert rows == [(10.0, 2), (11.0, 2), (12.0, 2), (13.0, 2), (14.0, 2)]
    run = {"rows": rows, "epochs_total": 10, "trials": [_trial(0.8, 13.5), _trial(0.9, 14.5, "PRUNED")]}
    assert _epochs_to(run, 0.8) == (8, True)  # 4 epoch rows before trial 0 completed, 2 ranks each
    assert _epochs_to(run, 0.85) == (10, False)  # only a pruned trial got there: the whole run
    assert sum(n for _, n in epoch_rows(tmp_path, {}, MNIST1D.ranks)) == 5
    assert sum(n for _, n in epoch_rows(tmp_path, {1: 4}, 2)) == 3 * 2 + 2 * 4  # a searched ranks_per_trial


def test_the_nt3_searches_run_under_mpirun_in_groups_of_two(tmp_path: Path) -> None:
    command = _command(NT3, "tpe_sha_resume", 3, True, tmp_path)
    assert Path(command[0]).name == "mpirun" and command[1:3] == ["-np", "5"] and "--backend" in command
    search = hpwf.load(tmp_path / "search_tpe_sha_resume_3.py").search
    assert search is not None
    assert (search.ranks_per_trial, search.scheduler, search.seed, search.n_trials) == (2, "asha-resume", 3, 4)
    assert search.scheduler_options == {"min_resource": 2, "reduction_factor": 2, "max_resource": 8}


def test_the_runs_of_several_invocations_pool_by_seed_with_an_interval(tmp_path: Path) -> None:
    import json

    from bench.search_efficiency import pooled

    def row(seed: int, random: int, resume: int, reached: bool) -> dict:
        cell = {"epochs_to_target": random, "reached": True, "best": 0.8}
        return {"seed": seed, "target_accuracy": 0.8, "random": cell, "tpe_asha": cell, "pbt": cell,
                "tpe_sha_resume": {"epochs_to_target": resume, "reached": reached, "best": 0.8 if reached else 0.7}}

    results = tmp_path / "results.jsonl"
    records = [{"benchmark": "x", "time": "2026-01-01", "rows": [row(0, 100, 10, True)]},  # before `since`
               {"benchmark": "x", "time": "2026-02-01", "rows": [row(0, 100, 50, True), row(1, 100, 30, True)]},
               {"benchmark": "x", "time": "2026-02-02", "quick": True, "rows": [row(2, 1, 1, True)]},
               {"benchmark": "y", "time": "2026-02-03", "rows": [row(3, 1, 1, True)]},
               {"benchmark": "x", "time": "2026-02-04", "rows": [row(1, 100, 40, False)]}]  # seed 1 again: latest wins
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = pooled("x", results, since="2026-02")
    assert out["seeds"] == [0, 1] and out["reached"]["tpe_sha_resume"] == 1
    mean, low, high = out["ratio_per_seed"]["tpe_sha_resume"]
    assert mean == 0.45 and low < 0.45 < high
    assert out["best_minus_random"]["tpe_sha_resume"][0] == -0.05 and out["best_minus_random"]["random"][0] == 0
