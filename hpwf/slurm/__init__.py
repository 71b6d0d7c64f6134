"""Slurm: site configs (`_sites`), job scripts and arrays rendered from `templates/`, submission
(`_slurm`), the ensemble array's member task (`_array`), and ``python -m hpwf.slurm`` for the
job script's in-job helpers. May import: `hpwf.workflow`, `hpwf.worker`, `hpwf.rundir`,
`hpwf.ensembles`, `hpwf.wire`.
"""
