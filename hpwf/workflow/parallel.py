"""Thin Horovod helpers for a trial's group: init on the group, shard, wrap, average, checkpoint.

On a one-rank trial every helper works without Horovod (and without MPI): the same workflow
runs unchanged on a laptop, under ``mpirun`` and on Slurm.

Example (inside an objective)::

    from hpwf.workflow import parallel

    model = Net().to(parallel.device(trial))
    optimizer = parallel.distributed_optimizer(torch.optim.Adam(model.parameters(), lr), model, trial)
    part = parallel.shard(len(x_train), trial)          # this rank's indices
    ...
    accuracy = parallel.average(local_accuracy, trial)  # the same on every rank of the group
    trial.report(accuracy, epoch)
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from hpwf.workflow._trial import Trial

_initialised = False


def horovod(trial: Trial) -> Any:
    """``horovod.torch``, initialised on this trial's group (``hvd.size() == group size``)."""
    global _initialised
    import horovod.torch as hvd

    if not _initialised:
        if trial.group.comm is not None:
            hvd.init(comm=trial.group.comm)
        else:
            from mpi4py import MPI

            hvd.init(comm=MPI.COMM_SELF)
        _initialised = True
    return hvd


def shutdown() -> None:
    """End Horovod after a trial so that the next trial can start it on another group."""
    global _initialised
    if _initialised:
        import horovod.torch as hvd

        hvd.shutdown()
        _initialised = False


def shard(n: int, trial: Trial) -> range:
    """The indices ``0..n-1`` that this rank of the group trains on (contiguous, balanced)."""
    size, rank = trial.group.size, trial.group.rank
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def distributed_optimizer(optimizer: Any, model: Any, trial: Trial, *, scale_lr: bool = False) -> Any:
    """Wrap ``optimizer`` in ``hvd.DistributedOptimizer`` and broadcast the initial state from rank 0.

    With ``scale_lr`` the learning rate is multiplied by the group size. A one-rank trial gets
    its optimizer back unchanged.
    """
    size = trial.group.size
    if scale_lr:
        for group in optimizer.param_groups:
            group["lr"] *= size
    if size == 1:
        return optimizer
    hvd = horovod(trial)
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)
    return hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())


def average(value: float, trial: Trial) -> float:
    """The mean of ``value`` over the group's ranks (an allreduce); ``value`` itself on one rank."""
    if trial.group.size == 1:
        return float(value)
    import torch

    hvd = horovod(trial)
    return float(hvd.allreduce(torch.tensor(float(value), dtype=torch.float64), op=hvd.Average).item())


def checkpoint(trial: Trial, state: dict[str, Any], name: str = "checkpoint.pt") -> Path:
    """Save ``state`` (e.g. model and optimizer state dicts) from the group's rank 0.

    The file is written under a fresh temporary name in the trial's folder, then renamed.
    """
    import torch

    from hpwf.rundir import atomic_writer

    path = trial.folder / name
    if trial.group.rank == 0:
        with atomic_writer(path) as f:
            torch.save(state, f)
    return path


def restore(trial: Trial, name: str = "checkpoint.pt") -> dict[str, Any] | None:
    """Load a checkpoint saved by `checkpoint` on rank 0 and hand it to every rank of the group.

    It is loaded with ``torch.load(weights_only=True)``: tensors, numbers, strings and the lists,
    tuples and dicts of them (state dicts, optimizer state), never arbitrary pickled objects, so
    a file planted in the trial's folder cannot run code. Register other types you trust with
    ``torch.serialization.add_safe_globals``.
    """
    import torch

    from hpwf.rundir import is_file, read_private

    path = trial.folder / name
    state = None
    if trial.group.rank == 0 and is_file(path):  # ours, no link followed, through the run directory's descriptor
        state = torch.load(io.BytesIO(read_private(path)), weights_only=True)
    if trial.group.size > 1:
        state = horovod(trial).broadcast_object(state, root_rank=0)
    return state


def device(trial: Trial) -> Any:
    """``cuda:<local rank>`` when CUDA is present, else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return torch.device("cpu")
    from hpwf.workflow._topology import placement

    return torch.device(f"cuda:{placement().local_rank % torch.cuda.device_count()}")
