"""(2) Per-trial overhead: N no-op trials through hpwf vs a bare Optuna ask/tell loop.

Both sides: the same objective (three ``suggest_float`` and a sum), the same sampler
(``RandomSampler(seed=0)``) and the same store, first in memory, then a journal file (with the
same ``JournalFileOpenLock``), in this process, one after the other: bare, hpwf, bare again
(the two bare walls are averaged, to cancel drift in the machine's load).

The hpwf side is ``hpwf.run(<file>, workers=1, storage=...)``: one agent process runs the
trials one after the other, like the bare loop. Its wall is the coordinator's
``session_wall_s`` (the Dask worker's start is excluded; the agent connecting and loading the
workflow is included); ``span`` is first ask to last tell, read from the study.
ratio = hpwf wall / bare wall.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench._common import NOOP_WORKFLOW, open_storage, quiet_optuna, rnd, scratch, span_of, write

def bare(n: int, kind: str, path: Path) -> float:
    """A bare Optuna ask/tell loop: wall seconds for n trials."""
    import optuna

    study = optuna.create_study(storage=open_storage(kind, str(path)), sampler=optuna.samplers.RandomSampler(seed=0),
                                direction="minimize")
    start = time.perf_counter()
    for _ in range(n):
        trial = study.ask()
        value = trial.suggest_float("x", 0, 1) + trial.suggest_float("y", 0, 1) + trial.suggest_float("z", 0, 1)
        study.tell(trial, value)
    return time.perf_counter() - start


def run(quick: bool = False) -> dict[str, Any]:
    import hpwf

    quiet_optuna()
    n = 300 if quick else 2000
    rows: list[dict[str, Any]] = []
    with scratch("overhead") as folder:
        wf = write(folder / "noop_trials.py", NOOP_WORKFLOW.format(n=n))
        for kind in ("memory", "journal"):
            before = bare(n, kind, folder / f"bare-{kind}-1.journal")
            url = "memory" if kind == "memory" else f"journal:{folder / f'hpwf-{kind}.journal'}"
            result = hpwf.run(str(wf), workers=1, run_dir=folder / f"hpwf-{kind}", storage=url, progress=False)
            after = bare(n, kind, folder / f"bare-{kind}-2.journal")
            s = result.summary
            assert s["complete"] == n, s
            bare_s = (before + after) / 2
            span = span_of(result.study.get_trials(deepcopy=False))
            rows.append({
                "storage": kind, "n_trials": n,
                "bare_s": rnd(bare_s, 3), "bare_runs_s": [rnd(before, 3), rnd(after, 3)],
                "hpwf_session_s": s["session_wall_s"], "hpwf_span_s": rnd(span, 3),
                "bare_ms_per_trial": rnd(1000 * bare_s / n, 3),
                "hpwf_ms_per_trial": rnd(1000 * s["session_wall_s"] / n, 3),
                "ratio": rnd(s["session_wall_s"] / bare_s, 3),
                "ratio_span": rnd(span / bare_s, 3),
            })
    by = {r["storage"]: r for r in rows}
    return {
        "benchmark": "overhead",
        "comparison": f"{n} no-op trials (3 suggest_float), RandomSampler(seed=0), same store kind: "
                      "hpwf.run(workers=1) session_wall_s vs bare Optuna ask/tell loop in this process "
                      "(mean of one bare run before and one after)",
        "command": "python -m bench overhead (hpwf.run(<noop workflow>, workers=1, storage='memory' | "
                   "'journal:<file>') vs optuna ask/tell)",
        "ratio": by["journal"]["ratio"],  # the default store kind
        "ratio_memory": by["memory"]["ratio"],
        "aim": "<= 1.2",
        "rows": rows,
        "line": "overhead (hpwf / bare Optuna, wall): "
                + "; ".join(f"{r['storage']}: {r['ratio']:.2f}x ({r['hpwf_ms_per_trial']:.2f} vs "
                            f"{r['bare_ms_per_trial']:.2f} ms/trial; span only {r['ratio_span']:.2f}x)" for r in rows),
    }
