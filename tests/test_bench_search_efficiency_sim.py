"""The virtual-time runner of the real engine (`hpwf.sim.run_search`) and the `--quick` form of
`python -m bench search_efficiency_sim` (a smoke test: behaviour, not figures)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from optuna.trial import TrialState

from bench import search_efficiency_sim
from hpwf.sim import hartmann, pbt_toy, run_search
from hpwf.workflow import Search


def test_the_runner_finishes_its_trial_budget_exactly_and_the_incumbent_only_improves() -> None:
    bench = hartmann(3)
    out = run_search(bench, Search(sampler="tpe", pruner="asha", pruner_options={"min_resource": 1}, n_trials=40,
                                   seed=3), workers=8)
    assert out.trials_done == 40
    states = [t.state for t in out.study.trials]  # type: ignore[union-attr]
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 40
    assert TrialState.PRUNED in states  # the pruner stopped some
    values = [v for _, v in out.incumbent()]
    assert values == sorted(values, reverse=True) and len(values) > 1
    times = [t for t, _, _ in out.curve]
    assert times == sorted(times) and out.virtual_s >= bench.full_s  # virtual time: at least one whole trial


def test_asha_resume_pauses_trials_and_resumes_promoted_ones_from_their_checkpoint() -> None:
    bench = hartmann(3)
    search = Search(sampler="random", pruner="none", scheduler="asha-resume", n_trials=30, seed=1,
                    scheduler_options={"min_resource": 1, "reduction_factor": 3, "max_resource": bench.steps})
    out = run_search(bench, search, workers=4)
    assert out.trials_done == 30 and out.paused > 0 and out.resumed > 0
    full = [t for t in out.study.trials if t.state == TrialState.COMPLETE]  # type: ignore[union-attr]
    assert full and all(max(t.intermediate_values) == bench.steps - 1 for t in full)
    resumed = [t for t in full if 1 in t.intermediate_values and 3 in t.intermediate_values]
    assert resumed  # through the rungs at steps 1 and 3


def test_the_same_seed_replays_the_same_search() -> None:
    bench = hartmann(6)
    search = Search(sampler="tpe", pruner="none", n_trials=20, seed=5)
    a, b = run_search(bench, search, workers=4), run_search(bench, search, workers=4)
    assert a.curve == b.curve


def test_pbt_runs_its_generations_from_checkpoints() -> None:
    bench = pbt_toy(steps=40)
    search = Search(sampler="random", pruner="none", scheduler="pbt", population=4, interval=10, n_trials=16, seed=2)
    out = run_search(bench, search, workers=4)
    assert out.trials_done == 16 and out.resumed == 12  # every segment after the first continues a checkpoint
    assert max(s for _, _, s in out.curve) == bench.steps - 1


def test_quick_form_reports_every_cell_and_pbt() -> None:
    result = search_efficiency_sim.run(quick=True)
    assert {"8:random", "8:asha-resume", "64:random", "64:asha-resume"} <= set(result["table"])
    for row in result["table"].values():
        assert row["seeds"] == 2 and row["final_regret"][0] >= 0
    assert result["pbt"]["8"]["seeds"] == 2


def test_a_cells_campaign_continues_each_cell_from_the_seeds_its_dump_holds(tmp_path: Path) -> None:
    dump = tmp_path / "runs.jsonl"
    far = time.time() + 600
    search_efficiency_sim.cells_campaign("mfh3_good", {(8, "random"): 2}, far, dump)
    search_efficiency_sim.cells_campaign("mfh3_good", {(8, "random"): 3, (64, "random"): 1}, far, dump)
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    assert [(r["workers"], r["seed"]) for r in rows] == [(8, 0), (8, 1), (64, 0), (8, 2)]
    assert search_efficiency_sim._caps("64:tpe,512:tpe+asha_stop=2", 30) == {(64, "tpe"): 30, (512, "tpe+asha_stop"): 2}


def test_the_difference_of_two_cells_has_an_interval_around_it() -> None:
    from bench._sim_render import difference

    mean, low, high = difference([1.0, 2.0, 3.0], [0.0, 0.5, 1.0])
    assert mean == 1.5 and low < 1.5 < high
    assert difference([1.0, 1.0], [1.0, 1.0]) == (0.0, 0.0, 0.0)


def test_a_pbt_campaign_continues_from_its_dump_and_counts_every_run_it_holds(tmp_path: Path) -> None:
    dump = tmp_path / "pbt.jsonl"
    first = search_efficiency_sim.pbt_campaign([4], 2, 1e9, True, dump=dump)
    again = search_efficiency_sim.pbt_campaign([4], 3, 1e9, True, dump=dump)
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    assert [(r["workers"], r["seed"]) for r in rows] == [(4, 0), (4, 1), (4, 2)]
    assert first["4"]["seeds"] == 2 and again["4"]["seeds"] == 3
    assert search_efficiency_sim.pbt_runs(dump)[4][:2] == [r["final"] for r in rows[:2]]
    held = search_efficiency_sim.pbt_campaign([4], 0, 0.0, True, dump=dump)  # the dump's runs only, none new
    assert held["4"] == again["4"] and len(dump.read_text().splitlines()) == 3


def test_another_benchmarks_table_has_syne_tunes_cells_and_the_differences_beside_it(tmp_path: Path) -> None:
    hpwf_dump, st_dump = tmp_path / "hpwf.jsonl", tmp_path / "st.jsonl"
    far = time.time() + 600
    bench = search_efficiency_sim.BENCHMARKS["mfh3_bad"]()
    budget = search_efficiency_sim.BUDGET_L
    assert search_efficiency_sim.other_benchmark_lines(bench, hpwf_dump, st_dump, budget) == []
    search_efficiency_sim.cells_campaign("mfh3_bad", {(8, "random"): 2, (8, "asha-resume"): 2}, far, hpwf_dump)
    alone = search_efficiency_sim.other_benchmark_lines(bench, hpwf_dump, st_dump, budget)
    assert alone[1] == "mfh3_bad (epsilon 0.2):" and not any("Syne Tune" in line for line in alone)
    # Syne Tune's rows have hpwf's row format; hpwf's own random runs stand in for them here
    st_dump.write_text("".join(line.replace('"asha-resume"', '"asha_promotion"') + "\n"
                               for line in hpwf_dump.read_text().splitlines()))
    both = search_efficiency_sim.other_benchmark_lines(bench, hpwf_dump, st_dump, budget)
    assert "mfh3_bad, Syne Tune:" in both
    assert any(line.startswith("| 8 | asha_promotion | 2 |") for line in both)
    same = [line for line in both if line.startswith("8 workers: hpwf asha-resume")]
    assert len(same) == 1 and " = +0.00 [-" in same[0]  # the same runs: a difference of 0, inside its interval
    assert search_efficiency_sim.st_dump("mfh6_good").name == "search_efficiency_sim_synetune_runs.jsonl"
    assert search_efficiency_sim.cells_dump("mfh3_bad").name == "search_efficiency_sim_runs_mfh3_bad.jsonl"


def test_a_gap_in_a_cells_seeds_is_filled_first_and_every_ratio_pairs_the_same_seed(tmp_path: Path) -> None:
    dump = tmp_path / "runs.jsonl"
    far = time.time() + 600
    search_efficiency_sim.cells_campaign("mfh3_good", {(8, "random"): 3, (8, "asha-resume"): 3}, far, dump)
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    # two runners took seeds side by side: asha-resume's seed 1 is missing, seed 3 is there, out of order
    kept = [r for r in rows if not (r["method"] == "asha-resume" and r["seed"] == 1)]
    bench = search_efficiency_sim.BENCHMARKS["mfh3_good"]()
    extra = search_efficiency_sim.one_run(bench, search_efficiency_sim.methods(bench)["asha-resume"], 8, 3,
                                          search_efficiency_sim.BUDGET_L[8] * bench.full_s)
    dump.write_text("".join(json.dumps(r) + "\n" for r in [{"workers": 8, "method": "asha-resume", "seed": 3, **extra}] + kept))
    runs = search_efficiency_sim.load_dump(dump)
    assert [r["seed"] for r in runs[(8, "asha-resume")]] == [0, 2, 3]
    table = search_efficiency_sim.summarize(bench, runs, search_efficiency_sim.BUDGET_L)
    assert table["8:asha-resume"]["seeds"] == 2  # seeds 0 and 2: random has no seed 3
    budget = search_efficiency_sim.BUDGET_L[8] * bench.full_s
    random_of = {r["seed"]: r for r in runs[(8, "random")]}
    ratios = [(r["hit_s"] or budget) / (random_of[r["seed"]]["hit_s"] or budget) for r in runs[(8, "asha-resume")][:2]]
    assert table["8:asha-resume"]["time_ratio"][0] == round(sum(ratios) / 2, 3)
    search_efficiency_sim.cells_campaign("mfh3_good", {(8, "asha-resume"): 4}, far, dump)
    again = search_efficiency_sim.load_dump(dump)
    assert [r["seed"] for r in again[(8, "asha-resume")]] == [0, 1, 2, 3]  # the gap, not seed 4
