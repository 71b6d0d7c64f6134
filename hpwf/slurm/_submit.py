"""``hpwf submit``: a job script from a template and a site config, submitted with ``sbatch``.

The script (``hpwf/templates/job.sh``) runs ``hpwf run WORKFLOW --backend mpi`` through the
site's launcher (``srun --mpi=TYPE`` or ``mpirun``) over the whole allocation. It asks Slurm for
USR1 some minutes before the walltime (``#SBATCH --signal=B:USR1@N``); on USR1, or on TERM
(preemption), it hands the signal to rank 0, whose coordinator stops handing out trials, fails
and re-queues the running ones in the study, and exits with 130; then the script calls
``scontrol requeue`` (at most ``max_requeues`` times). The requeued job finds ``run.json`` in
the run directory and runs ``hpwf resume`` instead, so no finished trial is lost and none is
counted twice.

Every value reaches the script quoted: ``shlex.quote`` in the shell part, sbatch's own
double-quote syntax on ``#SBATCH`` lines, whose values must be one line (`hpwf.slurm._sites`).

No secret is written into the script: the site config's ``env`` values (tokens, often) go to
``RUN_DIR/job.env`` (mode 0600), which the script sources; a storage URL never holds a
password (`hpwf.secrets`). The script is ``0700`` in a run directory only its owner can enter
(`hpwf.rundir._perms`), and it runs under umask ``077`` (``027`` with ``shared_group``).

Example:
    >>> from hpwf.slurm import load_site
    >>> job = resolve_job(load_site("site_configs/slurm-generic.yaml"), "wf.py", name="wf",
    ...                   ntasks_per_node=4)  # doctest: +SKIP
    >>> print(render_script(job))  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hpwf.errors import ConfigError
from hpwf.progress import say
from hpwf.rundir import atomic_write, run_umask
from hpwf.slurm._job import Job, check_ranks_fit, node_local_warnings, resolve_job
from hpwf.slurm._jobs import ARRAY_JOB_ID_FILE
from hpwf.slurm._render import ARRAY_SCRIPT_NAME, SCRIPT_NAME, render_array_script, render_script, write_script
from hpwf.slurm._schedulers import SubmitError, scheduler_for
from hpwf.slurm._site_file import load_site
from hpwf.slurm._sites import SiteConfig


def add_submit_parser(subparsers: Any) -> None:
    """Add ``hpwf submit WORKFLOW --site SITE.yaml [...]`` to the CLI's subparsers."""
    p = subparsers.add_parser("submit", help="write a Slurm job script for a workflow and submit it with sbatch")
    p.add_argument("workflow", type=Path)
    p.add_argument("--site", type=Path, required=True, help="a site config, e.g. site_configs/slurm-generic.yaml")
    p.add_argument("--nodes", type=int, help="nodes (default: the site config's, else 1)")
    p.add_argument("--ntasks-per-node", type=int, help="MPI ranks per node; rank 0 coordinates")
    p.add_argument("--time", help="walltime HH:MM:SS (default: the site config's)")
    p.add_argument("--run-dir", type=Path, help="default: runs/<workflow>-<time>; an existing run is resumed")
    p.add_argument("--shared-group", action="store_true",
                   help="the run dir's group may read it (2750); default: you only (0700)")
    p.add_argument("--dry-run", action="store_true", help="print the job script; write and submit nothing")
    p.add_argument("--ensemble-array", action="store_true",
                   help="train the ensemble's members as a job array, one member per task, after the search job")
    p.add_argument("--array-throttle", type=int, metavar="N",
                   help="at most N members at once (sbatch --array=0-K%%N; implies --ensemble-array)")

def submit_command(args: argparse.Namespace) -> int:
    """``hpwf submit``: print the script (``--dry-run``), or write it into the run dir and submit it.

    Prints the job id (the process id for ``scheduler: local``) on stdout; with an ensemble
    array, the search job's id and then the array's (the array waits for the search:
    ``--dependency=afterok``). Bad input raises `ConfigError` (exit 2) before anything is
    written; a job the scheduler refuses prints one line and returns 1.
    """
    from hpwf.workflow import load

    site = load_site(args.site)
    workflow = load(args.workflow)  # a bad workflow file fails here, not in the queue
    array = bool(args.ensemble_array or args.array_throttle is not None or site.ensemble_array)
    throttle = args.array_throttle if args.array_throttle is not None else site.array_throttle
    if array:
        _check_array(args, site, workflow, throttle)
    job = resolve_job(site, args.workflow, name=workflow.name, nodes=args.nodes,
                      ntasks_per_node=args.ntasks_per_node, time=args.time, run_dir=args.run_dir,
                      shared_group=args.shared_group)
    search = workflow.search is not None and not (array and _search_done(job.run_dir))
    if search or not array:
        check_ranks_fit(job, workflow, array)
    for warning in node_local_warnings(job):
        say(warning)
    scripts: list[tuple[str, str]] = []
    if search or not array:
        scripts.append((SCRIPT_NAME, render_script(job, search_only=array)))
    if array:
        assert workflow.ensemble is not None
        scripts.append((ARRAY_SCRIPT_NAME, render_array_script(job, workflow.ensemble.members,
                                                               workflow.ensemble.ranks_per_trial, throttle)))
    if args.dry_run:
        sys.stdout.write("\n".join(text for _, text in scripts))
        return 0
    resuming = (job.run_dir / "run.json").exists()
    paths = [write_script(job, text, name) for name, text in scripts]
    if array:  # sbatch does not create the folder of a task's --output
        with run_umask(job.shared_group):
            (job.run_dir / "ensemble").mkdir(exist_ok=True)
    with run_umask(job.shared_group):  # sbatch hands it to the job (SLURM_UMASK): its log file too
        return _submit(job, workflow, paths, search, array, throttle, resuming)


def _submit(job: Job, workflow: Any, paths: list[Path], search: bool, array: bool, throttle: int | None,
            resuming: bool) -> int:
    """Start the search job (unless an array alone runs), then the members' array after it."""
    scheduler = scheduler_for(job.site)
    try:
        job_id = scheduler.start(job, paths[0]) if search or not array else None
        if job_id is not None:
            print(job_id, flush=True)
            say(scheduler.started(job, job_id, paths[0], resuming))
        if array:
            array_id = scheduler.start(job, paths[-1], after=job_id)
            atomic_write(job.run_dir / ARRAY_JOB_ID_FILE, array_id + "\n")
            print(array_id)
            assert workflow.ensemble is not None
            say(f"[hpwf] submitted job array {array_id}: {workflow.ensemble.members} members"
                + (f", at most {throttle} at once" if throttle else "")
                + (f", after job {job_id} (the search)" if job_id else "")
                + f"; logs {job.run_dir / 'ensemble' / ('slurm-' + array_id + '_*.out')}")
    except SubmitError as exc:
        say(f"hpwf: error: {exc}")
        return 1
    return 0


def _search_done(run_dir: Path) -> bool:
    """The run's search reached its trial budget (a resubmitted ensemble array needs no search job)."""
    from hpwf.rundir import read_summary

    if not (run_dir / "run.json").exists():
        return False
    summary = read_summary(run_dir)
    budget = int(summary.get("n_trials") or 0)
    finished = int(summary.get("complete") or 0) + int(summary.get("pruned") or 0)
    return budget > 0 and finished >= budget and not summary.get("stop_reason")

def _check_array(args: argparse.Namespace, site: SiteConfig, workflow: Any, throttle: int | None) -> None:
    if workflow.ensemble is None:
        raise ConfigError(f"--ensemble-array: {args.workflow} defines no `ensemble = hpwf.Ensemble(...)`")
    if not scheduler_for(site).arrays:
        raise ConfigError(f"--ensemble-array: {site.path} has scheduler: {site.scheduler}; a job array needs Slurm")
    if throttle is not None and throttle < 1:
        raise ConfigError(f"--array-throttle must be >= 1, not {throttle}")
    if workflow.path is None:  # pragma: no cover - `hpwf submit` always loads a file
        raise ConfigError("--ensemble-array needs a workflow file")
