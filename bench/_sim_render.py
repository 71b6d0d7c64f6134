"""Markdown tables and the aims' comparisons of `bench.search_efficiency_sim`'s runs (issue 25):
RESULTS.md §15 is written from what this prints (``python -m bench.search_efficiency_sim render``)."""

from __future__ import annotations

import math
from typing import Any


def _iv(x: list[float], digits: int = 2) -> str:
    return f"{x[0]:.{digits}f} [{x[1]:.{digits}f}, {x[2]:.{digits}f}]"


def _common_cells(v: dict[str, Any]) -> str:
    """A cell's row up to its trials asked: the columns both tables share."""
    return (f"| {v['workers']} | {v['method']} | {v['seeds']} | {v['reached']}/{v['seeds']} (random {v['random_reached']}) "
            f"| {_iv(v['hit_full_trials'])} | {_iv(v['time_ratio'])} (median {v['time_ratio_median']:.2f}) "
            f"| {_iv(v['final_regret'], 3)} | {v['trials_asked_mean']}")


def _table(head: str, table: dict[str, Any], extra: Any) -> list[str]:
    rows = sorted(table.values(), key=lambda v: (v["workers"], v["method"]))
    return [head, "|---" * head.count(" | ") + "|---|"] + [f"{_common_cells(v)}{extra(v)} |" for v in rows]


def hpwf_table(table: dict[str, Any]) -> list[str]:
    return _table("| workers | method | seeds | reached ε | time to ε (L; budget if never) | time to ε / random (paired) "
                  "| final regret | trials asked | sampler ms/trial | coordinator CPU ms/trial |", table,
                  lambda v: f" | {v['sampler_s_per_trial'] * 1e3:.2f} | {v['engine_cpu_s_per_trial'] * 1e3:.2f}")


def synetune_table(table: dict[str, Any]) -> list[str]:
    return _table("| workers | Syne Tune method | seeds | reached ε | time to ε (L; budget if never) "
                  "| time to ε / its random (paired) | final regret | results seen |", table, lambda v: "")


def _mean_se(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    mean = sum(xs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return mean, sd / math.sqrt(n)


def difference(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """mean(a) - mean(b) with its 95 % interval (independent samples, normal approximation)."""
    (ma, sa), (mb, sb) = _mean_se(a), _mean_se(b)
    half = 1.96 * math.sqrt(sa**2 + sb**2)
    return ma - mb, ma - mb - half, ma - mb + half


def same_seeds(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The runs of ``a`` and of ``b`` of the seeds both have, paired in seed order."""
    by_seed = {r["seed"]: r for r in b}
    both = [r for r in a if r["seed"] in by_seed]
    return both, [by_seed[r["seed"]] for r in both]


def hit_times(runs: list[dict[str, Any]], budget_s: float, full_s: float) -> list[float]:
    """Time to ε in whole-trial lengths (the budget for a run that never reached it)."""
    return [(r["hit_s"] or budget_s) / full_s for r in runs]


def compare_lines(name_a: str, runs_a: dict[tuple[int, str], list[dict[str, Any]]], cell_a: str, name_b: str,
                  runs_b: dict[tuple[int, str], list[dict[str, Any]]], cell_b: str, budget_l: dict[int, float],
                  full_s: float) -> list[str]:
    """One line per worker count: time to ε of ``cell_a`` minus ``cell_b`` (in L), 95 % interval."""
    out = []
    for w in sorted(budget_l):
        a, b = runs_a.get((w, cell_a), []), runs_b.get((w, cell_b), [])
        if len(a) < 2 or len(b) < 2:
            continue
        ta, tb = hit_times(a, budget_l[w] * full_s, full_s), hit_times(b, budget_l[w] * full_s, full_s)
        d = difference(ta, tb)
        out.append(f"{w} workers: {name_a} {cell_a} {sum(ta) / len(ta):.2f} L ({len(a)} seeds) - {name_b} {cell_b} "
                   f"{sum(tb) / len(tb):.2f} L ({len(b)} seeds) = {d[0]:+.2f} [{d[1]:+.2f}, {d[2]:+.2f}] L")
    return out


def paired_lines(runs: dict[tuple[int, str], list[dict[str, Any]]], cell_a: str, cell_b: str,
                 budget_l: dict[int, float], full_s: float) -> list[str]:
    """One line per worker count: time to ε of ``cell_a`` minus ``cell_b`` over the seeds both have
    (same seed, same sampler draws), mean and 95 % interval of the per-seed differences, in L."""
    out = []
    for w in sorted(budget_l):
        a, b = same_seeds(runs.get((w, cell_a), []), runs.get((w, cell_b), []))
        n = len(a)
        if n < 2:
            continue
        ta, tb = hit_times(a, budget_l[w] * full_s, full_s), hit_times(b, budget_l[w] * full_s, full_s)
        mean, se = _mean_se([x - y for x, y in zip(ta, tb)])
        wins = sum(x < y for x, y in zip(ta, tb))
        out.append(f"{w} workers, paired over {n} seeds: {cell_a} - {cell_b} = {mean:+.2f} "
                   f"[{mean - 1.96 * se:+.2f}, {mean + 1.96 * se:+.2f}] L; {cell_a} earlier in {wins}/{n}")
    return out


def pbt_table(pbt: dict[str, Any]) -> list[str]:
    """PBT's best final member against the best fixed rate, per population (``pbt_campaign``'s
    figures, values negated into accuracy)."""
    lines = ["| population (= workers) | seeds | beats the best fixed rate | final accuracy (mean, 95 %) |",
             "|---|---|---|---|"]
    for key in sorted((k for k in pbt if k.isdigit()), key=int):
        v = pbt[key]
        if v["seeds"]:
            acc = [-x for x in v["mean_final"]]
            lines.append(f"| {key} | {v['seeds']} | {v['wins']} / {v['seeds']} ({100 * v['wins'] / v['seeds']:.0f} %) "
                         f"| {acc[0]:.1f} [{acc[2]:.1f}, {acc[1]:.1f}] |")
    return lines
