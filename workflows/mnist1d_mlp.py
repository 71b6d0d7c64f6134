"""MNIST-1D: 1-D signals of 10 digit templates, shifted, scaled, sheared and noised.

A small problem where hyperparameters matter: a default MLP reaches about 0.6 validation
accuracy, a tuned one much more. The data is generated offline with ``mnist1d.make_dataset``
(never ``get_dataset``, which downloads). Searched with TPE and Hyperband pruning.
The objective can also pause and resume (``trial.restore``/``should_pause``/``pause``), so the
same file runs with ``scheduler="asha-resume"`` or ``scheduler="pbt"`` (see bench/search_efficiency.py).

    hpwf run workflows/mnist1d_mlp.py --n-trials 40
"""

from __future__ import annotations

import functools

import hpwf

search = hpwf.Search(
    direction="maximize",
    n_trials=30,
    sampler="tpe",
    pruner="hyperband",
    pruner_options={"min_resource": 2, "max_resource": 24, "reduction_factor": 3},
    seed=0,
)

EPOCHS = 24


@functools.cache
def mnist1d_data(seed: int = 42):  # generated, not downloaded; cached per worker process
    import torch
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    data = make_dataset(args)
    as_tensors = lambda x, y: (torch.tensor(x, dtype=torch.float32), torch.tensor(y))  # noqa: E731
    return as_tensors(data["x"], data["y"]), as_tensors(data["x_test"], data["y_test"])


def build_model(trial: hpwf.Trial):
    from torch import nn

    hidden = trial.suggest_int("hidden", 16, 512, log=True)
    layers = trial.suggest_int("layers", 1, 3)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    activation = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[
        trial.suggest_categorical("activation", ["relu", "gelu", "tanh"])
    ]
    blocks, width = [], 40
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), activation(), nn.Dropout(dropout)]
        width = hidden
    return nn.Sequential(*blocks, nn.Linear(width, 10))


def objective(trial: hpwf.Trial) -> float:
    import torch
    from torch import nn

    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    weight_decay = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    batch_size = trial.suggest_categorical("batch_size", [32, 64, 128, 256])
    torch.manual_seed(trial.seed)
    model = build_model(trial)
    (x_train, y_train), (x_val, y_val) = mnist1d_data()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    accuracy, start = 0.0, 0
    restored = trial.restore()  # None unless a scheduler paused this trial (or, in PBT, its parent)
    if restored is not None:
        model.load_state_dict(restored.state["model"])
        optimizer.load_state_dict(restored.state["optimizer"])
        for group in optimizer.param_groups:  # PBT may have changed them (explore)
            group["lr"], group["weight_decay"] = lr, weight_decay
        torch.set_rng_state(restored.state["rng"])
        start = restored.step
    for epoch in range(start, EPOCHS):
        model.train()
        for batch in torch.randperm(len(x_train)).split(batch_size):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
        trial.report(accuracy, epoch)
        if trial.should_pause():
            trial.pause({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "rng": torch.get_rng_state()})
        if trial.should_prune():
            raise hpwf.TrialPruned()
    return accuracy
