"""(6) Packing: trials of mixed size (``ranks_per_trial=[1, 2, 4]``, searched) on a fixed allocation.

``mpirun -np 9 python -m hpwf run <wf> --backend mpi``: 8 worker ranks. Each trial's group
size is sampled (RandomSampler, seed 0); every rank of the group sleeps the same
d ~ U(0.5, 1.5) s (from ``trial.seed``) and the group meets at a barrier on its communicator.

- ``utilisation``: the coordinator's figure in summary.json, busy rank-seconds (from handing a
  trial out to its end) / (8 ranks x session wall).
- ``work_fraction``: the useful rank-seconds, sum(size x d), / (8 x session wall).
- ``vs_bound``: the lower bound on the wall, max(sum(size x d) / 8, longest d), / session wall:
  how close the packing comes to a perfect one (1.0 = no rank ever idle; unreachable, since
  the last trials end at different times).
- ``vs_same_policy``: the makespan of a zero-overhead simulation of hpwf's own placement
  policy on the same trials (sizes and durations as they came out, trial-number order, a
  trial that fits the free ranks starts at once, at most one trial per rank waiting), / session wall:
  how much of the loss is hpwf's overhead (bookkeeping, group set-up, a busy machine) rather
  than the mix of sizes. ``vs_any_lookahead``: the same with no limit on waiting trials.
"""

from __future__ import annotations

from typing import Any

from bench._common import MPIRUN, PY, rnd, scratch, show, summary, timed, trial_span, write

RANKS = 8

WORKFLOW = """
import random
import time

import hpwf

search = hpwf.Search(direction="minimize", n_trials={n}, sampler="random", ranks_per_trial=[1, 2, 4], seed=0)


def objective(trial):
    d = random.Random(trial.seed).uniform(0.5, 1.5)  # the same on every rank of the group
    time.sleep(d)
    if trial.group.comm is not None:
        trial.group.comm.Barrier()
    return d
"""


def list_schedule(jobs: list[tuple[int, float]], ranks: int, max_waiting: int | None = None) -> float:
    """Makespan of first-fit list scheduling of (size, duration) jobs on ``ranks``, no overhead.

    Jobs are considered in order; one that fits the free ranks starts at once. With
    ``max_waiting`` only that many jobs that do not fit may be passed over (hpwf's coordinator
    keeps at most one asked trial per agent waiting and asks no more meanwhile); ``None``: any number.
    """
    import heapq

    now, free, queue = 0.0, ranks, list(jobs)
    ends: list[tuple[float, int]] = []  # a heap of (end time, size)
    while queue or ends:
        skipped = 0
        for job in list(queue):
            if max_waiting is not None and skipped >= max_waiting:
                break
            if job[0] <= free:
                queue.remove(job)
                free -= job[0]
                heapq.heappush(ends, (now + job[1], job[0]))
            else:
                skipped += 1
        end, size = heapq.heappop(ends)
        now, free = end, free + size
    return now


def run(quick: bool = False) -> dict[str, Any]:
    import hpwf

    n = 16 if quick else 60
    with scratch("packing") as folder:
        wf = write(folder / "mixed_groups.py", WORKFLOW.format(n=n))
        run_dir = folder / "run"
        command = [MPIRUN, "-np", str(RANKS + 1), PY, "-m", "hpwf", "run", str(wf), "--backend", "mpi",
                   "--run-dir", str(run_dir), "--quiet"]
        wall, _ = timed(command, timeout=900)
        s = summary(run_dir)
        trials = hpwf.load_study(run_dir).get_trials(deepcopy=False)
        span = trial_span(run_dir)
        shown = show(command, folder)
    jobs = [(int(t.params["ranks_per_trial"]), float(t.value or 0.0)) for t in sorted(trials, key=lambda t: t.number)]
    assert s["complete"] == n, s
    work = sum(size * d for size, d in jobs)
    sizes = {k: sum(size == k for size, _ in jobs) for k in (1, 2, 4)}
    bound = max(work / RANKS, max(d for _, d in jobs))
    same_policy = list_schedule(jobs, RANKS, max_waiting=RANKS)
    any_lookahead = list_schedule(jobs, RANKS)
    session = s["session_wall_s"]
    return {
        "benchmark": "packing",
        "comparison": f"{n} trials, ranks_per_trial searched over [1, 2, 4], sleep U(0.5, 1.5) s on every rank "
                      f"of the group, on {RANKS} worker ranks (mpirun -np {RANKS + 1} --backend mpi)",
        "command": shown,
        "n_trials": n, "trials_by_size": sizes, "work_rank_s": rnd(work, 2),
        "session_wall_s": session, "span_s": rnd(span, 3), "command_wall_s": rnd(wall, 2),
        "lower_bound_wall_s": rnd(bound, 3), "same_policy_wall_s": rnd(same_policy, 3),
        "any_lookahead_wall_s": rnd(any_lookahead, 3),
        "utilisation": s["utilisation"],
        "work_fraction": rnd(work / (RANKS * session)),
        "vs_bound": rnd(bound / session),
        "vs_bound_span": rnd(bound / span),
        "vs_same_policy": rnd(same_policy / session),
        "vs_any_lookahead": rnd(any_lookahead / session),
        "ratio": s["utilisation"],
        "line": f"packing ({RANKS} ranks, sizes {sizes}): utilisation {s['utilisation']:.1%}, useful work "
                f"{work / (RANKS * session):.1%} of rank-seconds, wall bound/actual {bound / session:.1%} "
                f"(span {bound / span:.1%}), zero-overhead simulation of the same policy/actual {same_policy / session:.1%}",
    }
