"""A data-parallel trial for the MPI/Horovod tests: every rank writes what it saw.

Each rank records hvd.rank()/hvd.size(), its world rank and a checksum of the trained weights
into its trial folder, so the tests can check group sizes and that the allreduce really ran.
"""

import json
import os
import socket

import hpwf
from hpwf.workflow import parallel

search = hpwf.Search(
    direction="minimize",
    n_trials=int(os.environ.get("HVD_TRIALS", "4")),
    sampler="random",
    pruner=os.environ.get("HVD_PRUNER", "none"),
    pruner_options={"n_startup_trials": 1, "n_warmup_steps": 0} if os.environ.get("HVD_PRUNER") == "median" else {},
    ranks_per_trial=[int(k) for k in os.environ.get("HVD_RANKS", "2").split(",")] if "," in os.environ.get("HVD_RANKS", "2") else int(os.environ.get("HVD_RANKS", "2")),
    seed=0,
)

EPOCHS = int(os.environ.get("HVD_EPOCHS", "3"))


def objective(trial: hpwf.Trial) -> float:
    import torch

    lr = trial.suggest_float("lr", 0.01, 0.2, log=True)
    torch.manual_seed(trial.seed + trial.group.rank)  # different on purpose: the broadcast must fix it
    model = torch.nn.Linear(8, 1)
    optimizer = parallel.distributed_optimizer(torch.optim.SGD(model.parameters(), lr=lr), model, trial)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = x @ torch.arange(8.0).unsqueeze(1) + 0.1 * torch.randn(256, 1, generator=g)
    part = parallel.shard(len(x), trial)
    x, y = x[part.start:part.stop], y[part.start:part.stop]
    hvd = parallel.horovod(trial) if trial.group.size > 1 else None
    loss_value = 0.0
    for epoch in range(EPOCHS):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        loss_value = parallel.average(loss.item(), trial)
        bad = os.environ.get("HVD_BAD_LR")
        trial.report(loss_value + (1000.0 if bad and lr > float(bad) else 0.0), epoch)
        if trial.should_prune():
            record(trial, model, hvd, pruned_at=epoch)
            raise hpwf.TrialPruned()
    record(trial, model, hvd)
    return loss_value


def record(trial, model, hvd, pruned_at=None):
    from hpwf.workflow._topology import placement

    weights = [round(float(v), 6) for v in model.weight.detach().flatten()]
    where = placement()
    info = {
        "host": socket.gethostname(), "local_rank": where.local_rank, "node": where.node,
        "group_rank": trial.group.rank, "group_size": trial.group.size,
        "hvd_rank": hvd.rank() if hvd else 0, "hvd_size": hvd.size() if hvd else 1,
        "world_rank": where.rank, "pid": os.getpid(), "weights": weights,
        "params": trial.params, "pruned_at": pruned_at,
    }
    (trial.folder / f"rank{trial.group.rank}.json").write_text(json.dumps(info))
