"""(4b) Search efficiency on workflows/nt3_cnn.py under mpirun, in rank-epochs (bench/search_efficiency.py).

``mpirun -np 5 python -m hpwf run FILE --backend mpi``: rank 0 coordinates, 4 worker ranks form
2 groups of ``ranks_per_trial=2`` (Horovod, data-parallel); every epoch row of a trial counts 2
rank-epochs. The workflow runs as shipped (8 epochs); the sizes (``NT3`` in
bench/search_efficiency.py) fit a 2-core machine: 6 seeds; 12 trials for random, TPE+ASHA and
TPE+SH with resumption (rungs at epochs 2 and 4: ``min_resource=2, reduction_factor=2``); PBT
with population 4, interval 2 (16 segments of 2 epochs). The four searches of a seed run one
after another: four 5-rank mpirun jobs side by side would put 20 busy processes on 2 cores (the
counts do not depend on it). About 1 group-epoch a second on 2 cores: ``--quick`` (1 seed,
4 trials, PBT 2 x interval 4) took 88 s at load 10; 2 seeds took 190 s calm, 6 about 10 minutes.
"""

from __future__ import annotations

from typing import Any

from bench.search_efficiency import NT3
from bench.search_efficiency import run as run_setup


def run(quick: bool = False, seeds: list[int] | None = None) -> dict[str, Any]:
    """The figures (see bench/search_efficiency.py)."""
    return run_setup(quick, seeds, NT3)
