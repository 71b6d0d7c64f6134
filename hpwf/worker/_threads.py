"""How many threads an agent's trials use: the host's cores shared among the agents on it.

Torch, OpenMP, MKL and OpenBLAS each start as many threads as the machine has cores; with
several agents on one host that oversubscribes it (2 agents on 2 cores trained the quickstart
3-8x slower). Dask's nanny and Ray set one thread per worker or trial for the same reason.

An agent sets ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` (read when a
library loads: before the workflow file is imported) and ``torch.set_num_threads`` (and, where
numpy is loaded already, threadpoolctl's limits) to:

* ``Search(threads_per_trial=N)`` or ``--threads-per-trial N`` when given (it overrides all);
* else each variable the user set keeps its value (torch follows ``OMP_NUM_THREADS``);
* else ``max(1, cores // agents on this host)``: the backend says how many agents it starts on
  a host (`AGENTS_ENV`), an MPI launcher's local size says it for ranks; one agent otherwise.

Example:
    >>> default_threads({AGENTS_ENV: "4"}, cores=8)
    2
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Mapping, MutableMapping

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
AGENTS_ENV = "HPWF_AGENTS_PER_HOST"  # set by a backend for the agents it starts on one host


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a Slurm allocation)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def agents_on_host(env: Mapping[str, str]) -> int:
    """How many agents share this host: the backend's word, else an MPI launcher's local size."""
    with contextlib.suppress(ValueError):
        if env.get(AGENTS_ENV):
            return max(1, int(env[AGENTS_ENV]))
    from hpwf.workflow import LAUNCHERS, placement

    if any(launcher.rank in env for launcher in LAUNCHERS):  # never import mpi4py for this
        with contextlib.suppress(ValueError, KeyError):
            return max(1, placement(env).local_size)
    return 1


def default_threads(env: Mapping[str, str], cores: int | None = None) -> int:
    """``cores // agents on this host``, at least 1."""
    return max(1, (cores or usable_cores()) // agents_on_host(env))


def apply_threads(explicit: int | None = None, env: MutableMapping[str, str] | None = None) -> int:
    """Set this process's thread counts (see the module's text); return torch's count."""
    env = os.environ if env is None else env
    chosen = explicit or default_threads(env)
    for var in THREAD_VARS:
        if explicit or not env.get(var):
            env[var] = str(chosen)
    torch_threads = chosen
    if not explicit:
        with contextlib.suppress(ValueError):
            torch_threads = max(1, int(env["OMP_NUM_THREADS"]))
    if "torch" in sys.modules:  # imported already (a pickled objective): set it now as well
        sys.modules["torch"].set_num_threads(torch_threads)
    if "numpy" in sys.modules:  # its BLAS read the variables before we set them
        with contextlib.suppress(ImportError):
            from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

            threadpool_limits(torch_threads)
    return torch_threads


def set_torch_threads(count: int) -> None:
    """Set torch's intra-op threads if torch is (or gets) imported; for a trial about to run."""
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)
