"""Slurm: site configs (`_sites`), a job resolved once (`_job`), job scripts rendered from
`templates/` (`_render`), where they go with one class of hooks per scheduler (`_schedulers`:
local or sbatch), ``hpwf submit`` (`_submit`), a running job's state and in-job helpers (`_jobs`,
``python -m hpwf.slurm``), and the ensemble array's member task (`_array`, imported when first
used: it imports Optuna; its arguments in `_member_args`). May import:
`hpwf.workflow`, `hpwf.worker`, `hpwf.rundir`, `hpwf.ensembles`, `hpwf.wire`, `hpwf.engine`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpwf.slurm._job import Job, check_ranks_fit, node_local_warnings, resolve_job
from hpwf.slurm._jobs import (
    clean_stale_shm, job_state, main, mpich_shm_names, run_job_state, signal_rank0, wait_for_job)
from hpwf.slurm._member_args import add_member_parser
from hpwf.slurm._render import render_array_script, render_env, render_script, write_script
from hpwf.slurm._schedulers import SCHEDULERS, Scheduler, SubmitError, sbatch_quote, scheduler_for
from hpwf.slurm._site_file import load_site, site_from_mapping
from hpwf.slurm._sites import SiteConfig, walltime_seconds
from hpwf.slurm._submit import add_submit_parser, submit_command

if TYPE_CHECKING:
    from hpwf.slurm._array import member_command

__all__ = ['Job', 'SCHEDULERS', 'Scheduler', 'SiteConfig', 'SubmitError', 'add_member_parser', 'add_submit_parser',
           'check_ranks_fit', 'clean_stale_shm', 'job_state', 'load_site', 'main', 'member_command', 'mpich_shm_names',
           'node_local_warnings', 'render_array_script', 'render_env', 'render_script', 'resolve_job',
           'run_job_state', 'sbatch_quote', 'scheduler_for', 'signal_rank0', 'site_from_mapping', 'submit_command',
           'wait_for_job', 'walltime_seconds', 'write_script']


def __getattr__(name: str) -> Any:
    """`member_command` (the ensemble array's task) imports Optuna: only when it is used."""
    if name == "member_command":
        from hpwf.slurm._array import member_command

        return member_command
    raise AttributeError(f"module 'hpwf.slurm' has no attribute {name!r}")
