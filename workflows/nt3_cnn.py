"""NT3-style search: a 1-D CNN tells tumour from normal expression profiles (after ECP-CANDLE's NT3).

The data is synthetic: 1,000-gene log-expression profiles with correlated noise, where a planted
set of marker genes shifts in tumour samples (the signal a CNN must find). Each trial trains
data-parallel on ``ranks_per_trial`` ranks with Horovod; pruning stops weak trials early.
The objective can also pause and resume (``trial.restore``/``should_pause``/``pause``: every rank
of the group continues from rank 0's saved weights, optimizer state and random state), so the same
file runs with ``scheduler="asha-resume"`` or ``scheduler="pbt"`` (see bench/search_efficiency_nt3.py).

    mpirun -np 5 python -m hpwf run workflows/nt3_cnn.py --backend mpi   # 2 groups of 2 ranks
    hpwf run workflows/nt3_cnn.py --workers 2                            # laptop: 1 group of 2
"""

from __future__ import annotations

import functools

import hpwf
from hpwf.workflow import parallel

search = hpwf.Search(
    direction="maximize",  # validation accuracy
    n_trials=12,
    sampler="tpe",
    pruner="median",
    pruner_options={"n_startup_trials": 2, "n_warmup_steps": 2},
    ranks_per_trial=2,
    seed=0,
)

GENES = 1000
EPOCHS = 8


@functools.cache
def expression_data(n: int = 800, seed: int = 7):
    """(x_train, y_train), (x_val, y_val): the same on every rank (seeded), sharded later."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    programmes = rng.normal(size=(8, GENES)) * (rng.random((8, GENES)) < 0.05)  # co-expressed modules
    x = rng.normal(size=(n, 8)) @ programmes + rng.normal(scale=1.0, size=(n, GENES))
    markers = rng.choice(GENES, 40, replace=False)
    x[:, markers] += 1.0 * (2 * y[:, None] - 1) * rng.uniform(0.5, 1.0, 40)  # the planted signal
    x = (x - x.mean(0)) / x.std(0)
    split = int(0.75 * n)
    t = lambda a: torch.tensor(a[:, None, :], dtype=torch.float32)  # noqa: E731  (N, channel, genes)
    return (t(x[:split]), torch.tensor(y[:split])), (t(x[split:]), torch.tensor(y[split:]))


def build_cnn(trial: hpwf.Trial):
    from torch import nn

    filters = trial.suggest_categorical("filters", [8, 16, 32])
    kernel = trial.suggest_int("kernel", 3, 21, step=2)
    pool = trial.suggest_categorical("pool", [4, 8])
    dense = trial.suggest_int("dense", 16, 128, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    return nn.Sequential(
        nn.Conv1d(1, filters, kernel, padding=kernel // 2), nn.ReLU(), nn.MaxPool1d(pool),
        nn.Conv1d(filters, filters, kernel, padding=kernel // 2), nn.ReLU(), nn.MaxPool1d(pool),
        nn.Flatten(), nn.Linear(filters * (GENES // pool // pool), dense), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(dense, 2),
    )


def objective(trial: hpwf.Trial) -> float:
    import torch
    from torch import nn

    lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    batch = trial.suggest_categorical("batch_size", [16, 32, 64])
    torch.manual_seed(trial.seed)
    device = parallel.device(trial)  # cuda:<local rank> on a GPU node, else the CPU
    model = build_cnn(trial).to(device)
    restored = trial.restore()  # None unless a scheduler paused this trial (or, in PBT, its parent)
    if restored is not None:  # the same state on every rank of the group: rank 0's, as it was saved
        model.load_state_dict(restored.state["model"])
    optimizer = parallel.distributed_optimizer(torch.optim.Adam(model.parameters(), lr=lr), model, trial)
    accuracy, start = 0.0, 0
    if restored is not None:  # after wrapping: Horovod's optimizer starts with a fresh state
        optimizer.load_state_dict(restored.state["optimizer"])
        for group in optimizer.param_groups:  # PBT may have changed it (explore)
            group["lr"] = lr
        torch.set_rng_state(restored.state["rng"])
        start = restored.step
    (x_train, y_train), (x_val, y_val) = (tuple(t.to(device) for t in part) for part in expression_data())
    mine = parallel.shard(len(x_train), trial)  # this rank's part of the training set
    x_train, y_train = x_train[mine.start:mine.stop], y_train[mine.start:mine.stop]
    for epoch in range(start, EPOCHS):
        model.train()
        for idx in torch.randperm(len(x_train)).split(batch):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            local = (model(x_val).argmax(1) == y_val).float().mean().item()
        accuracy = parallel.average(local, trial)  # the same number on every rank of the group
        trial.report(accuracy, epoch)
        if trial.should_pause():  # every rank calls it; rank 0 writes the state
            trial.pause({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "rng": torch.get_rng_state()})
        if trial.should_prune():
            raise hpwf.TrialPruned()
    if trial.group.rank == 0:
        parallel.checkpoint(trial, {"model": model.state_dict(), "params": trial.params})
    return accuracy


def train_member(member: hpwf.Member) -> float:
    """One bootstrap member of the best configurations: trains data-parallel, saves its
    validation class probabilities (for the ensemble's accuracy, NLL, Brier, ECE, mutual
    information) and returns its out-of-bag accuracy."""
    import torch
    from torch import nn

    (x_all, y_all), (x_val, y_val) = expression_data()
    in_bag, out_of_bag = member.bootstrap(len(x_all))
    torch.manual_seed(member.seed)
    model = build_cnn(member)  # the objective's own builder: member.suggest_* replay its configuration
    lr = member.suggest_float("lr", 1e-4, 1e-2, log=True)
    batch = member.suggest_categorical("batch_size", [16, 32, 64])
    optimizer = parallel.distributed_optimizer(torch.optim.Adam(model.parameters(), lr=lr), model, member.trial)
    mine = parallel.shard(len(in_bag), member.trial)
    x_train, y_train = x_all[in_bag[mine.start:mine.stop]], y_all[in_bag[mine.start:mine.stop]]
    for _ in range(EPOCHS):
        model.train()
        for idx in torch.randperm(len(x_train)).split(batch):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(x_val), 1).numpy()
        oob = (model(x_all[out_of_bag]).argmax(1) == y_all[out_of_bag]).float().mean().item()
    member.save_predictions(y=y_val.numpy(), probs=probs)
    return parallel.average(oob, member.trial)


# Members' scores (out-of-bag accuracy) are maximised, like the search's: the direction is inherited.
ensemble = hpwf.Ensemble(members=4, train=train_member, top_k=2, ranks_per_trial=2)
