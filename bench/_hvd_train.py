"""The training loop of benchmark (3), used unchanged by both sides: inside an hpwf trial with
``ranks_per_trial=2``, and by hand under ``horovodrun -np 2`` (bench/_hvd_by_hand.py).

An MLP on a synthetic 10-class problem, data-parallel with ``hvd.DistributedOptimizer``; one
torch thread per rank. ``train_s`` times the epochs only (after ``hvd.init`` and the initial
broadcasts), on rank 0.
"""

from __future__ import annotations

import time
from typing import Any, Callable

SAMPLES = 8192
FEATURES = 64
BATCH = 64  # per rank


def train(hvd: Any, epochs: int, report: Callable[[float, int], bool] | None = None) -> dict[str, float]:
    """Train for ``epochs``; after each, average the validation accuracy over the ranks and
    hand it to ``report`` (an hpwf trial reports it to its pruner; by hand nothing does).
    ``report`` returns True to stop early."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(SAMPLES + 1024, FEATURES, generator=g)
    y = (x @ torch.randn(FEATURES, 10, generator=g)).argmax(1)
    x_val, y_val = x[SAMPLES:], y[SAMPLES:]
    size, rank = hvd.size(), hvd.rank()
    per = SAMPLES // size
    x_train, y_train = x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per]
    model = nn.Sequential(nn.Linear(FEATURES, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
    accuracy = 0.0
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(epoch))
        for idx in order.split(BATCH):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            local = (model(x_val).argmax(1) == y_val).float().mean()
        accuracy = float(hvd.allreduce(local, op=hvd.Average).item())
        if report is not None and report(accuracy, epoch):
            break
    return {"train_s": time.perf_counter() - start, "accuracy": accuracy, "ranks": float(size)}
