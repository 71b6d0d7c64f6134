"""What ``hpwf run``, ``resume`` and ``status`` print about a run, in words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpwf.progress import say
from hpwf.rundir import MEMBER


def print_end(run_dir: Path, summary: dict, study: Any = None) -> None:  # type: ignore[type-arg]
    """The two lines a finished ``hpwf run`` or ``resume`` prints: counts and best, and why it stopped."""
    say(
        f"[hpwf] {summary['complete']} complete, {summary['pruned']} pruned, {summary['fail']} failed"
        f" in {summary['session_wall_s']:.1f} s; {best_text(summary, study)}; run dir {run_dir}"
    )
    refused = summary.get("connections_refused") or 0
    if refused:
        say(f"[hpwf] the coordinator hung up on {refused} connection(s) that did not prove the run's key "
            "in time (wrong key, silent, or over the per-address limit); agents retried")
    reason = summary.get("stop_reason")
    if reason:
        more = f"; continue with `hpwf resume {run_dir}`" if reason.startswith("interrupted") else ""
        say(f"[hpwf] stopped: {reason}{more}")


def best_text(summary: dict, study: Any) -> str:  # type: ignore[type-arg]
    """``best V (trial N)``, or the Pareto front of a multi-objective study, or ``no complete trial``."""
    if study is not None and len(study.directions) > 1:
        from optuna.trial import TrialState

        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            return "no complete trial"
        return front_text(sorted(t.number for t in study.best_trials))
    if summary.get("best_value") is None:
        return "no complete trial"
    if study is not None:
        from hpwf.engine.schedulers import pbt_best_final

        final = pbt_best_final(study)
        if final is not None:
            return f"best {final.value:.6g} (trial {final.number}, the best final PBT segment)"
    member = _member_of(study, summary.get("best_trial"))
    if member is not None:  # the members' study numbers its trials apart from the search's
        return f"best member score {summary['best_value']:.6g} (member {member})"
    return f"best {summary['best_value']:.6g} (trial {summary.get('best_trial')})"


def _member_of(study: Any, number: int | None) -> int | None:
    """The ensemble member index of trial ``number`` of a members' study, else None."""
    if study is None or number is None:
        return None
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials) or trials[number].number != number:
        return None
    member = trials[number].user_attrs.get(MEMBER)
    return int(member) if isinstance(member, int) else None


def front_text(numbers: list[int], shown: int = 10) -> str:
    """``Pareto front: 3 trials (#1, #4, #7)``, the list cut after ``shown`` numbers."""
    listed = ", ".join(f"#{n}" for n in numbers[:shown]) + (f", ... {len(numbers) - shown} more" if len(numbers) > shown else "")
    return f"Pareto front: {len(numbers)} trial{'s' if len(numbers) != 1 else ''} ({listed})"


def format_status(info: dict) -> str:  # type: ignore[type-arg]
    """`hpwf.api.status` as ``hpwf status`` prints it."""
    lines = [
        f"study      {info['study']}  ({info['run_dir']})",
        f"trials     {info['complete']} complete, {info['pruned']} pruned, {info['fail']} failed, "
        f"{info['running']} running, {info.get('paused', 0)} paused, {info['waiting']} waiting  "
        f"(budget: {info.get('n_trials')})",
    ]
    if info.get("best_value") is not None:
        what = f", {info['best_is']}" if info.get("best_is") else ""
        lines.append(f"best       {info['best_value']:.6g}  (trial {info['best_trial']}{what})")
        lines.extend(f"  {k} = {v}" for k, v in (info.get("best_params") or {}).items())
    if info.get("pareto_front"):
        lines.append(f"best       {front_text(info['pareto_front']['trials'])}")
    for t in info.get("best_trials", [])[:10]:
        lines.append(f"  trial {t['number']}: values {t['values']}")
    if info.get("pbt"):
        p = info["pbt"]
        lines.append(f"pbt        {p['segments']} segments of {p['members']} members; best lineage: "
                     + " -> ".join(str(s["trial"]) for s in p["best_schedule"]))
    if info.get("elapsed_s") is not None:
        lines.append(f"elapsed    {info['elapsed_s']:.1f} s, utilisation {info.get('utilisation')}")
    if info.get("stop_reason"):
        lines.append(f"stopped    {info['stop_reason']}")
    if info.get("ensemble"):
        e = info["ensemble"]
        lines.append(f"ensemble   {e['complete']} of {e['n_trials']} members done, {e['fail']} failed attempts")
    slurm = info.get("slurm") or {}
    if slurm.get("job_id"):
        lines.append(f"slurm      job {slurm['job_id']}: {slurm['state'] or 'no longer known to Slurm'}")
    if slurm.get("array_job_id"):
        lines.append(f"slurm      array {slurm['array_job_id']}: {slurm['array_state'] or 'done (no longer in the queue)'}")
    return "\n".join(lines)
