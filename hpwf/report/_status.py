"""``hpwf status``: counts by state, the best trial and its params, read from the study itself
(or from its journal without Optuna), with what the run directory adds (elapsed time,
utilisation, Slurm job state, the ensemble's counts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpwf.rundir import check_run_store, open_run_study, read_summary, scan_study, state_counts
from hpwf.workflow import ENSEMBLE_DIR


def status(run_dir: str | Path, storage: str | None = None, _root: Path | None = None) -> dict[str, Any]:
    """Counts by state, the best trial and its params, read from the study itself.

    The run directory must be the user's (as for `resume`), and a store file that ``run.json``
    names outside it is opened only when given as ``storage`` (`open_run_store`).

    Example:
        >>> hpwf.status("runs/quickstart")["complete"]  # doctest: +SKIP
        16
    """
    folder = Path(run_dir)
    record, _ = check_run_store(folder, storage, _root)  # ours, and its store inside it (or given)
    scanned = scan_study(folder) if storage is None else None  # a journal read without Optuna's replay, nor any lock
    if scanned is not None:
        result: dict[str, Any] = {"study": record.study_name, "run_dir": str(folder), **scanned["counts"],
                                  "n_trials": record.options.get("n_trials"),
                                  "best_value": None, "best_trial": None, "best_params": None}
        if scanned["best"] is not None:
            result.update(zip(("best_trial", "best_value", "best_params"), scanned["best"]))
        return _status_rest(folder, result, storage, _root)
    study = open_run_study(folder, storage, _root)
    trials = study.get_trials(deepcopy=False)
    count = state_counts(trials, folder)
    result = {
        "study": study.study_name, "run_dir": str(folder), **count,
        "n_trials": record.options.get("n_trials"),
        "best_value": None, "best_trial": None, "best_params": None,
    }
    if len(study.directions) == 1 and count["complete"]:
        best = study.best_trial
        result.update(best_value=best.value, best_trial=best.number, best_params=best.params)
    elif count["complete"]:
        front = sorted(study.best_trials, key=lambda t: t.number)
        result["best_trials"] = [{"number": t.number, "values": t.values, "params": t.params} for t in front]
        result["pareto_front"] = {"size": len(front), "trials": [t.number for t in front]}
    from hpwf.engine.schedulers import lineage as pbt_lineage, pbt_best_final  # (the fast path above needs no engine)

    lineage = pbt_lineage(study)
    if lineage:
        result["pbt"] = lineage
        final = pbt_best_final(study, lineage)
        if final is not None:  # a segment of an earlier generation is no model PBT ends with
            result.update(best_value=final.value, best_trial=final.number, best_params=final.params,
                          best_is="the best final PBT segment")
    return _status_rest(folder, result, storage, _root)


def _status_rest(folder: Path, result: dict[str, Any], storage: str | None, root: Path | None) -> dict[str, Any]:
    """What status adds from the run directory: elapsed time, utilisation, Slurm, the ensemble."""
    summary = read_summary(folder)
    result["elapsed_s"] = summary.get("elapsed_s")
    result["utilisation"] = summary.get("utilisation")
    result["stop_reason"] = summary.get("stop_reason")
    from hpwf.slurm import run_job_state

    result["slurm"] = run_job_state(folder)
    if (folder / ENSEMBLE_DIR / "run.json").exists():
        members = status(folder / ENSEMBLE_DIR, storage, root or folder)
        result["ensemble"] = {k: members[k] for k in ("complete", "fail", "running", "n_trials")}
    return result
