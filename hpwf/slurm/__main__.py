"""``python -m hpwf.slurm signal-rank0 SIGNAL TOKEN | clean-shm JOBID``: the job script's helpers."""

import sys

from hpwf.slurm._jobs import main

sys.exit(main(sys.argv[1:]))
