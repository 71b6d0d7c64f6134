"""Search efficiency in virtual time (issue 25): hpwf's real engine, samplers and schedulers on
multi-fidelity benchmarks with known optima (`hpwf.sim`), many workers, many seeds.

Methods (each a real `hpwf.Search`): random search; TPE; TPE + ASHA that stops (Optuna's
SuccessiveHalvingPruner); `asha-resume` and `hyperband-resume` (random sampler, as Syne Tune's
baselines, and TPE); PBT on the schedule-dependent toy. Each (workers, method) cell runs seeds
0, 1, ... round-robin until the CPU budget is spent (at most `--seeds`); the figures say how many
seeds each cell got. Regret = best value computed so far (any fidelity; lower fidelities are
pessimistic here) minus the known optimum. Figures: (a) virtual time to regret <= eps relative to
random search (paired by seed; a run that never reaches it counts its whole budget, and the count
that reached it is given), (b) the final regret at the budget, with 95 % intervals (mean +- 1.96
SE); anytime curves (median and quartiles) as PNG; the sampler's CPU time per trial against the
mean trial's virtual length.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from bench._sim_render import same_seeds
from hpwf.sim import BENCHMARKS, Benchmark, best_fixed_lr, run_search
from hpwf.workflow import Search

HERE = Path(__file__).resolve().parent
RUNGS = {"min_resource": 1, "reduction_factor": 3}
BUDGET_L = {8: 32.0, 64: 6.0, 512: 1.5}  # virtual budget in full-trial lengths, per worker count


def methods(bench: Benchmark) -> dict[str, Search]:
    big = 10**7
    full = {**RUNGS, "max_resource": bench.steps}
    return {
        "random": Search(sampler="random", pruner="none", n_trials=big),
        "tpe": Search(sampler="tpe", pruner="none", n_trials=big),
        "tpe+asha_stop": Search(sampler="tpe", pruner="asha", pruner_options=RUNGS, n_trials=big),
        "asha-resume": Search(sampler="random", pruner="none", scheduler="asha-resume", scheduler_options=full,
                              n_trials=big),
        "hyperband-resume": Search(sampler="random", pruner="none", scheduler="hyperband-resume",
                                   scheduler_options=full, n_trials=big),
        # plain Optuna's multi-fidelity search: TPE with its HyperbandPruner (stops, never resumes)
        "optuna_tpe+hyperband_stop": Search(sampler="tpe", pruner="hyperband",
                                            pruner_options={**RUNGS, "max_resource": bench.steps}, n_trials=big),
        # the first rung later (step 3 or 9 of 27, fidelity 7.4 or 28): asha-resume's min_resource experiment
        "asha-resume-m3": Search(sampler="random", pruner="none", scheduler="asha-resume",
                                 scheduler_options={**full, "min_resource": 3}, n_trials=big),
        "asha-resume-m9": Search(sampler="random", pruner="none", scheduler="asha-resume",
                                 scheduler_options={**full, "min_resource": 9}, n_trials=big),
    }


def regret_at(incumbent: list[tuple[float, float]], t: float, optimum: float) -> float:
    """The regret of the incumbent at virtual time ``t`` (inf before the first value)."""
    best = math.inf
    for when, value in incumbent:
        if when > t:
            break
        best = value
    return best - optimum


def interval(xs: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): mean +- 1.96 standard errors."""
    n = len(xs)
    mean = sum(xs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return mean, mean - 1.96 * sd / math.sqrt(n), mean + 1.96 * sd / math.sqrt(n)


def one_run(bench: Benchmark, search: Search, workers: int, seed: int, budget_s: float) -> dict[str, Any]:
    out = run_search(bench, search, workers, seed=seed, max_virtual_s=budget_s)
    assert bench.optimum is not None and bench.epsilon is not None
    inc = out.incumbent()
    hit = next((t for t, v in inc if v - bench.optimum <= bench.epsilon), None)
    asked = len(out.study.trials) if out.study is not None else 0
    return {"hit_s": hit, "final": inc[-1][1] - bench.optimum if inc else math.inf, "incumbent": inc,
            "cpu_s": out.cpu_s, "sampler_s": out.sampler_s, "asked": asked, "paused": out.paused,
            "resumed": out.resumed, "mean_trial_s": sum(out.trial_s) / max(1, len(out.trial_s))}


def _spent(start: float, cpu_budget_s: float, deadline: float | None) -> bool:
    return time.process_time() - start > cpu_budget_s or (deadline is not None and time.time() > deadline)


CUT = {512: ("tpe", "tpe+asha_stop"), 64: ("tpe+asha_stop",)}  # TPE's asks over thousands of trials: cut for time


def campaign(bench_name: str, workers: list[int], names: list[str], max_seeds: int, cpu_budget_s: float,
             budget_l: dict[int, float], deadline: float | None = None,
             dump: Path | None = None) -> dict[tuple[int, str], list[dict[str, Any]]]:
    """Seeds round-robin over the cells (the most workers first) until the budget is spent; each
    run is appended to ``dump`` (JSON lines) as it ends, so a cut campaign keeps what it ran."""
    bench = BENCHMARKS[bench_name]()
    ms = methods(bench)
    cells = [(w, m) for w in sorted(workers, key=lambda w: (w == 8, -w)) for m in names if m not in CUT.get(w, ())]
    runs: dict[tuple[int, str], list[dict[str, Any]]] = {cell: [] for cell in cells}
    start = time.process_time()
    for seed in range(max_seeds):
        for w, m in cells:
            if seed >= 1 and _spent(start, cpu_budget_s, deadline):
                return runs
            row = {"seed": seed, **one_run(bench, ms[m], w, seed, budget_l[w] * bench.full_s)}
            runs[(w, m)].append(row)
            if dump is not None:
                with dump.open("a") as f:
                    f.write(json.dumps({"workers": w, "method": m, **row}) + "\n")
    return runs


def seeds_held(dump: Path, key: Callable[[dict[str, Any]], Any] = lambda row: (row["workers"], row["method"])) -> dict[Any, set[int]]:
    """The seeds each cell (``key`` of a row) has in ``dump``."""
    held: dict[Any, set[int]] = {}
    for line in dump.read_text().splitlines() if dump.exists() else []:
        row = json.loads(line)
        held.setdefault(key(row), set()).add(row["seed"])
    return held


def continue_seeds(dump: Path, caps: dict[Any, int], deadline: float, run_one: Callable[[Any, int], dict[str, Any]],
                   key: Callable[[dict[str, Any]], Any] = lambda row: (row["workers"], row["method"])) -> None:
    """Run the cells of ``caps``, each with the lowest seed ``dump`` lacks, the cell with the fewest
    seeds first (ties in the given order), until ``deadline`` (wall clock) or each cell has its
    cap; ``run_one(cell, seed)`` gives the row appended to ``dump`` as the run ends."""
    held = seeds_held(dump, key)
    while time.time() < deadline:
        todo = [c for c, cap in caps.items() if len(held.get(c, ())) < cap]
        if not todo:
            return
        cell = min(todo, key=lambda c: len(held.get(c, ())))
        have = held.setdefault(cell, set())
        seed = next(s for s in itertools.count() if s not in have)
        row = run_one(cell, seed)
        with dump.open("a") as f:
            f.write(json.dumps(row) + "\n")
        have.add(seed)


def cells_campaign(bench_name: str, caps: dict[tuple[int, str], int], deadline: float, dump: Path) -> None:
    """The cells of ``caps`` by `continue_seeds` (``dump`` as JSON lines)."""
    bench = BENCHMARKS[bench_name]()
    ms = methods(bench)
    continue_seeds(dump, caps, deadline, lambda cell, seed: {
        "workers": cell[0], "method": cell[1], "seed": seed,
        **one_run(bench, ms[cell[1]], cell[0], seed, BUDGET_L[cell[0]] * bench.full_s)})


def load_dump(dump: Path) -> dict[tuple[int, str], list[dict[str, Any]]]:
    """The runs a campaign appended to ``dump``, by cell, in seed order."""
    runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for line in dump.read_text().splitlines():
        row = json.loads(line)
        row["incumbent"] = [tuple(x) for x in row["incumbent"]]
        runs.setdefault((row.pop("workers"), row.pop("method")), []).append(row)
    return {cell: sorted(rs, key=lambda r: r["seed"]) for cell, rs in runs.items()}


def summarize(bench: Benchmark, runs: dict[tuple[int, str], list[dict[str, Any]]],
              budget_l: dict[int, float]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for (w, m), rs in runs.items():
        rs, base = same_seeds(rs, runs.get((w, "random"), []))
        n = len(rs)
        if n == 0:
            continue
        budget = budget_l[w] * bench.full_s
        ratios = [(r["hit_s"] or budget) / (b["hit_s"] or budget) for r, b in zip(rs, base)]
        finals = [r["final"] for r in rs]
        trials = sum(r["asked"] for r in rs)
        table[f"{w}:{m}"] = {
            "workers": w, "method": m, "seeds": n, "reached": sum(r["hit_s"] is not None for r in rs),
            "random_reached": sum(b["hit_s"] is not None for b in base),
            "time_ratio": [round(x, 3) for x in interval(ratios)],
            "time_ratio_median": round(sorted(ratios)[n // 2], 3),
            "hit_full_trials": [round(x, 3) for x in interval([(r["hit_s"] or budget) / bench.full_s for r in rs])],
            "final_regret": [round(x, 4) for x in interval(finals)],
            "trials_asked_mean": round(trials / n),
            "sampler_s_per_trial": sum(r["sampler_s"] for r in rs) / max(1, trials),
            "engine_cpu_s_per_trial": sum(r["cpu_s"] for r in rs) / max(1, trials),
            "mean_trial_virtual_s": sum(r["mean_trial_s"] for r in rs) / n,
        }
    return table


def draw(bench: Benchmark, runs: dict[tuple[int, str], list[dict[str, Any]]], budget_l: dict[int, float],
         path: Path, only: tuple[str, ...] | None = None) -> Path | None:
    """Anytime curves of the cells in ``runs`` (of the methods in ``only``, where given)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    workers = sorted({w for w, m in runs if only is None or m in only})
    fig, axes = plt.subplots(1, len(workers), figsize=(5 * len(workers), 4), squeeze=False)
    assert bench.optimum is not None
    for ax, w in zip(axes[0], workers):
        grid = [budget_l[w] * bench.full_s * i / 100 for i in range(1, 101)]
        for (ww, m), rs in runs.items():
            if ww != w or not rs or (only is not None and m not in only):
                continue
            rows = [sorted(regret_at(r["incumbent"], t, bench.optimum) for r in rs) for t in grid]
            q = [[row[min(len(row) - 1, int(p * len(row)))] for row in rows] for p in (0.25, 0.5, 0.75)]
            hours = [t / 3600 for t in grid]
            line, = ax.plot(hours, q[1], label=f"{m} ({len(rs)})")
            ax.fill_between(hours, q[0], q[2], alpha=0.15, color=line.get_color())
        ax.axhline(bench.epsilon or 0, color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 4)
        ax.set_title(f"{bench.name}, {w} workers")
        ax.set_xlabel("virtual hours")
        ax.set_ylabel("regret (median, quartiles)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


PBT_DUMP = HERE / "search_efficiency_sim_pbt_runs.jsonl"


def pbt_campaign(workers: list[int], max_seeds: int, cpu_budget_s: float, quick: bool,
                 deadline: float | None = None, dump: Path | None = None) -> dict[str, Any]:
    """PBT on the toy against the best constant learning rate (by grid, its mean final value).
    With ``dump``, each population continues from the seeds the file holds, and every run is
    appended to it as it ends; the figures are of every run it holds."""
    bench = BENCHMARKS["pbt_toy"]()
    fixed_lr, fixed_value = best_fixed_lr(bench, grid=11 if quick else 41, repeats=4 if quick else 20)
    out: dict[str, Any] = {"best_fixed_lr": fixed_lr, "best_fixed_value": fixed_value}
    held = pbt_runs(dump) if dump is not None else {}
    start = time.process_time()
    for w in workers:
        finals = held.get(w, [])
        for seed in range(len(finals), max_seeds):
            if seed >= 2 and _spent(start, cpu_budget_s, deadline):
                break
            search = Search(sampler="random", pruner="none", scheduler="pbt", population=w, interval=10,
                            n_trials=w * (bench.steps // 10), seed=seed)
            t0 = time.process_time()
            o = run_search(bench, search, w, seed=seed)
            finals.append(min(v for _, v, s in o.curve if s == bench.steps - 1))
            if dump is not None:
                with dump.open("a") as f:
                    f.write(json.dumps({"workers": w, "seed": seed, "final": finals[-1],
                                        "cpu_s": time.process_time() - t0}) + "\n")
        wins = sum(f < fixed_value for f in finals)
        out[str(w)] = {"seeds": len(finals), "wins": wins, "mean_final": interval(finals) if finals else None}
    return out


def pbt_runs(dump: Path) -> dict[int, list[float]]:
    """The best final value of each PBT run in ``dump``, by population, in seed order."""
    runs: dict[int, list[float]] = {}
    for line in dump.read_text().splitlines() if dump.exists() else []:
        row = json.loads(line)
        runs.setdefault(row["workers"], []).append(row["final"])
    return runs


def run(quick: bool = False, cpu_budget_s: float = 1800.0, max_seeds: int = 30, wall_s: float | None = None,
        part: str = "all") -> dict[str, Any]:
    """The campaign (``part``: "all", "mfh6" or "pbt"), within ``cpu_budget_s`` of process time
    (and ``wall_s`` of wall time where given); every cell gets at least 2 seeds."""
    budget_l = {8: 4.0, 64: 0.5} if quick else BUDGET_L
    workers = sorted(budget_l)
    names = ["random", "asha-resume"] if quick else list(methods(BENCHMARKS["mfh6_good"]()))
    seeds = 2 if quick else max_seeds
    bench = BENCHMARKS["mfh6_good"]()
    deadline = None if wall_s is None else time.time() + wall_s
    if part == "render":  # the figures of the runs (maybe cut) campaigns appended to their dumps
        return render(bench, budget_l)
    if part == "sampler":
        cost = sampler_cost()
        return {"benchmark": "search_efficiency_sim", "line": f"sampler: {cost}", "sampler": cost, "ratio": cost["fraction"]}
    if part == "synetune":
        from bench._synetune_sim import METHODS as ST_METHODS

        return _syne_tune(bench, [(w, m) for w in workers for m in ST_METHODS], seeds,
                          deadline or time.time() + cpu_budget_s)
    share = {"all": 0.8, "mfh6": 1.0, "pbt": 0.0}[part]
    dump = None if quick else HERE / "search_efficiency_sim_runs.jsonl"
    runs = campaign("mfh6_good", workers, names if share else [], seeds, math.inf if quick else cpu_budget_s * share,
                    budget_l, deadline, dump)
    table = summarize(bench, runs, budget_l)
    image = None if quick or not table else draw(bench, runs, budget_l, HERE / "search_efficiency_sim_mfh6_good.png")
    pbt = {} if part == "mfh6" else pbt_campaign([8] if quick else [8, 64, 512], 2 if quick else max_seeds,
                                                 0 if quick else cpu_budget_s * (1 - share), quick, deadline,
                                                 None if quick else PBT_DUMP)
    lines = [f"{k}: seeds {v['seeds']}, reached eps {v['reached']}/{v['seeds']} (random {v['random_reached']}), "
             f"time/random {v['time_ratio'][0]:.2f} [{v['time_ratio'][1]:.2f}, {v['time_ratio'][2]:.2f}], "
             f"final regret {v['final_regret'][0]:.3f} [{v['final_regret'][1]:.3f}, {v['final_regret'][2]:.3f}], "
             f"sampler {v['sampler_s_per_trial'] * 1e3:.2f} ms/trial vs trial {v['mean_trial_virtual_s']:.0f} s"
             for k, v in table.items()]
    cost = sampler_cost(trials=300 if quick else 10_000, asks=3 if quick else 20) if part == "all" else None
    if cost:
        lines.append(f"sampler at {cost['trials']} trials: {cost['sampler_cpu_s_per_trial'] * 1e3:.1f} ms CPU per trial, "
                     f"{cost['fraction']:.2e} of a whole trial's {cost['full_trial_virtual_s']:.0f} virtual s")
    head = table.get(f"{max(workers)}:asha-resume", {})
    return {
        "benchmark": "search_efficiency_sim", "line": "\n".join(["search_efficiency_sim:"] + lines + [f"pbt: {pbt}"]),
        "ratio": head.get("time_ratio", [None])[0], "epsilon": bench.epsilon, "budget_full_trials": budget_l,
        "comparison": f"virtual time to regret <= {bench.epsilon} on {bench.name}, asha-resume / random search, "
                      f"{max(workers)} workers", "table": table, "pbt": pbt, "sampler": cost, "image": str(image) if image else None,
    }


ISSUE_CELLS = ("random", "tpe", "tpe+asha_stop", "asha-resume", "hyperband-resume", "optuna_tpe+hyperband_stop")


def _dump(prefix: str, name: str) -> Path:
    """``bench/<prefix>.jsonl`` for MF-Hartmann 6 good (the aims' benchmark), ``<prefix>_<name>.jsonl`` else."""
    return HERE / (f"{prefix}.jsonl" if name == "mfh6_good" else f"{prefix}_{name}.jsonl")


def cells_dump(name: str) -> Path:
    """Where hpwf's runs on benchmark ``name`` are kept (JSON lines)."""
    return _dump("search_efficiency_sim_runs", name)


def st_dump(name: str) -> Path:
    """Where Syne Tune's runs on benchmark ``name`` are kept (JSON lines)."""
    return _dump("search_efficiency_sim_synetune_runs", name)


def _versus_syne_tune(bench: Benchmark, runs: dict[tuple[int, str], list[dict[str, Any]]],
                      st: dict[tuple[int, str], list[dict[str, Any]]], budget_l: dict[int, float]) -> list[str]:
    """hpwf's method minus Syne Tune's counterpart, time to ε in L, per worker count."""
    from bench import _sim_render as md

    lines: list[str] = []
    for a, b in (("asha-resume", "asha_promotion"), ("asha-resume", "asha_stopping"),
                 ("hyperband-resume", "hyperband_promotion"), ("random", "random")):
        lines += md.compare_lines("hpwf", runs, a, "syne-tune", st, b, budget_l, bench.full_s)
    return lines


def other_benchmark_lines(bench: Benchmark, hpwf_dump: Path, syne_tune_dump: Path,
                          budget_l: dict[int, float]) -> list[str]:
    """hpwf's table of a benchmark other than MF-Hartmann 6 good, and Syne Tune's beside it, where run."""
    from bench import _sim_render as md

    if not hpwf_dump.exists():
        return []
    runs = load_dump(hpwf_dump)
    lines = ["", f"{bench.name} (epsilon {bench.epsilon}):"] + md.hpwf_table(summarize(bench, runs, budget_l))
    if syne_tune_dump.exists():
        st = load_dump(syne_tune_dump)
        lines += ["", f"{bench.name}, Syne Tune:"] + md.synetune_table(summarize(bench, st, budget_l)) + [""]
        lines += _versus_syne_tune(bench, runs, st, budget_l)
    return lines


def render(bench: Benchmark, budget_l: dict[int, float]) -> dict[str, Any]:
    """Tables (markdown), comparisons and curves of every run in the dumps."""
    from bench import _sim_render as md

    runs = load_dump(cells_dump(bench.name))
    table = summarize(bench, runs, budget_l)
    draw(bench, runs, budget_l, HERE / "search_efficiency_sim_mfh6_good.png", only=ISSUE_CELLS)
    draw(bench, runs, budget_l, HERE / "search_efficiency_sim_min_resource.png",
         only=("random", "asha-resume", "asha-resume-m3", "asha-resume-m9"))
    lines = md.hpwf_table(table)
    st = load_dump(st_dump(bench.name)) if st_dump(bench.name).exists() else {}
    if st:
        st_table = summarize(bench, st, budget_l)
        draw(bench, st, budget_l, HERE / "search_efficiency_sim_synetune.png")
        both = {**{(w, f"hpwf {m}"): r for (w, m), r in runs.items() if m in ("random", "asha-resume")},
                **{(w, f"syne-tune {m}"): r for (w, m), r in st.items() if m in ("random", "asha_promotion")}}
        draw(bench, both, budget_l, HERE / "search_efficiency_sim_vs_synetune.png")
        lines += [""] + md.synetune_table(st_table) + [""]
        lines += _versus_syne_tune(bench, runs, st, budget_l)
    pbt = pbt_campaign([8, 64, 512], 0, 0.0, False, dump=PBT_DUMP)  # max_seeds 0: the dump's runs only
    lines += ["", f"PBT on the toy; the best fixed rate {pbt['best_fixed_lr']:.5f}, accuracy {-pbt['best_fixed_value']:.1f}:"]
    lines += md.pbt_table(pbt)
    for other in ("asha-resume-m3", "asha-resume-m9"):
        lines += md.paired_lines(runs, other, "asha-resume", budget_l, bench.full_s)
    for name in ("mfh6_bad", "mfh3_good", "mfh3_bad"):  # the other benchmarks' cells, where run
        lines += other_benchmark_lines(BENCHMARKS[name](), cells_dump(name), st_dump(name), budget_l)
    return {"benchmark": "search_efficiency_sim", "line": "\n".join(lines), "table": table, "pbt": pbt,
            "ratio": table.get(f"{max(budget_l)}:asha-resume", {}).get("time_ratio", [None])[0]}


def sampler_cost(trials: int = 10_000, asks: int = 20, seed: int = 0) -> dict[str, Any]:
    """The CPU time of hpwf's default sampler (TPE, constant liar) for one trial of MF-Hartmann 6
    (ask and its six values) in a study already holding ``trials`` finished trials, against the
    virtual length of a whole trial."""
    import optuna

    bench = BENCHMARKS["mfh6_good"]()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=Search(sampler="tpe", n_trials=trials).make_sampler(seed))
    dists = {n: optuna.distributions.FloatDistribution(lo, hi) for n, (lo, hi, _) in bench.space.items()}
    rng = __import__("random").Random(seed)
    for _ in range(trials):
        params = {n: rng.random() for n in dists}
        value = bench.value(params, bench.steps - 1, None, rng)[0]
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    t0 = time.process_time()
    for _ in range(asks):
        trial = study.ask()
        for n, d in dists.items():
            trial.suggest_float(n, d.low, d.high)
        study.tell(trial, 0.0)
    per = (time.process_time() - t0) / asks
    return {"trials": trials, "sampler_cpu_s_per_trial": per, "full_trial_virtual_s": bench.full_s,
            "fraction": per / bench.full_s}




def _syne_tune(bench: Benchmark, cells: list[tuple[int, str]], seeds: int, deadline: float) -> dict[str, Any]:
    """The same benchmark, workers and seeds under Syne Tune's simulator (needs syne-tune 0.14):
    the cells continue from the seeds `st_dump` holds; the figures are of every run it holds."""
    from bench import _synetune_sim

    _synetune_sim.campaign(bench, cells, seeds, BUDGET_L, deadline, st_dump(bench.name))
    runs = load_dump(st_dump(bench.name))
    table = summarize(bench, runs, BUDGET_L)
    if bench.name == "mfh6_good":
        draw(bench, runs, BUDGET_L, HERE / "search_efficiency_sim_synetune.png")
    lines = [f"syne-tune {k}: seeds {v['seeds']}, reached {v['reached']}, hit (full trials) {v['hit_full_trials']}, "
             f"final regret {v['final_regret']}" for k, v in table.items()]
    return {"benchmark": "search_efficiency_sim", "line": "\n".join(lines), "table": table, "ratio": None,
            "comparison": "Syne Tune's simulator on the same benchmark", "budget_full_trials": BUDGET_L}


def _cells(spec: str) -> list[tuple[int, str]]:
    """"64:tpe,512:tpe" -> [(64, "tpe"), (512, "tpe")]."""
    return [(int(w), m) for w, m in (c.split("=")[0].split(":", 1) for c in spec.split(","))]


def _caps(spec: str, seeds: int) -> dict[tuple[int, str], int]:
    """The seeds each cell may have: ``SEEDS``, or ``=N`` after a cell ("64:tpe+asha_stop=10")."""
    return {cell: int(c.split("=")[1]) if "=" in c else seeds for cell, c in zip(_cells(spec), spec.split(","))}


if __name__ == "__main__":
    # python -m bench.search_efficiency_sim mfh6|pbt|render|sampler MINUTES [CPU_S]
    # python -m bench.search_efficiency_sim cells MINUTES 64:tpe,512:tpe=10 [SEEDS [BENCHMARK]]
    # python -m bench.search_efficiency_sim synetune MINUTES [64:random,64:asha_promotion [SEEDS [BENCHMARK]]]
    # python -m bench.search_efficiency_sim synetune_pbt MINUTES 8,64,512 [SEEDS]
    import sys

    part, deadline = sys.argv[1], time.time() + float(sys.argv[2]) * 60
    if part == "cells":
        name = sys.argv[5] if len(sys.argv) > 5 else "mfh6_good"
        cells_campaign(name, _caps(sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 30), deadline,
                       cells_dump(name))
        sys.exit(0)
    if part == "synetune_pbt":  # Syne Tune's PBT on the PBT toy: ... synetune_pbt MINUTES 8,64,512 [SEEDS]
        from bench import _synetune_pbt

        _synetune_pbt.campaign([int(w) for w in sys.argv[3].split(",")], int(sys.argv[4]) if len(sys.argv) > 4 else 30,
                               deadline)
        pbt = _synetune_pbt.summary()
        result = {"line": "\n".join(f"syne-tune pbt, population {w}: {v}" for w, v in pbt.items()), "pbt": pbt,
                  "comparison": "Syne Tune 0.14.2's PBT (its simulator, state carried across forks) vs the best fixed lr"}
    elif part == "synetune":
        from bench._synetune_sim import METHODS as ST_METHODS

        spec = sys.argv[3] if len(sys.argv) > 3 else ",".join(f"{w}:{m}" for w in (64, 512) for m in ST_METHODS)
        result = _syne_tune(BENCHMARKS[sys.argv[5] if len(sys.argv) > 5 else "mfh6_good"](), _cells(spec),
                            int(sys.argv[4]) if len(sys.argv) > 4 else 30, deadline)
    else:
        result = run(part=part, wall_s=float(sys.argv[2]) * 60,
                     cpu_budget_s=float(sys.argv[3]) if len(sys.argv) > 3 else 1800.0)
    print(result.pop("line"))
    with open(HERE / "results.jsonl", "a") as f:
        f.write(json.dumps({"benchmark": "search_efficiency_sim", "part": part, "quick": False,
                            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **result}, default=str) + "\n")
