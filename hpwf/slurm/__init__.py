"""Slurm: site configs (`_sites`), job scripts and arrays rendered from `templates/`, submission
(`_slurm`), the ensemble array's member task (`_array`), and ``python -m hpwf.slurm`` for the
job script's in-job helpers. May import: `hpwf.workflow`, `hpwf.worker`, `hpwf.rundir`,
`hpwf.ensembles`, `hpwf.wire`.
"""

from __future__ import annotations

from hpwf.slurm._array import add_member_parser, member_command
from hpwf.slurm._sites import SiteConfig, load_site, walltime_seconds
from hpwf.slurm._slurm import add_submit_parser, run_job_state, submit_command

__all__ = ['SiteConfig', 'add_member_parser', 'add_submit_parser', 'load_site', 'member_command', 'run_job_state', 'submit_command', 'walltime_seconds']
