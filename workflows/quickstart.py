"""Quickstart: tune a small PyTorch MLP on scikit-learn's bundled digits (8x8 images, 10 classes).

Run it with ``hpwf run workflows/quickstart.py`` (or ``make demo``). No data is downloaded.
"""

from __future__ import annotations

import functools

import hpwf

search = hpwf.Search(
    direction="maximize",          # validation accuracy
    n_trials=16,
    sampler="tpe",
    pruner="asha",                 # successive halving on the per-epoch accuracy
    pruner_options={"min_resource": 2, "reduction_factor": 3},
    seed=0,
)

EPOCHS = 15


@functools.cache
def digits():  # loaded once per worker process, then reused by every trial it runs
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.3, random_state=0, stratify=y)
    as_tensors = lambda a, b: (torch.tensor(a, dtype=torch.float32), torch.tensor(b))  # noqa: E731
    return as_tensors(x_train, y_train), as_tensors(x_val, y_val)


def objective(trial: hpwf.Trial) -> float:
    import torch
    from torch import nn

    lr = trial.suggest_float("lr", 1e-4, 0.3, log=True)
    hidden = trial.suggest_int("hidden", 8, 256, log=True)
    layers = trial.suggest_int("layers", 1, 3)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    optimizer_name = trial.suggest_categorical("optimizer", ["adam", "sgd"])

    torch.manual_seed(trial.seed)
    (x_train, y_train), (x_val, y_val) = digits()
    blocks: list[nn.Module] = []
    width = 64
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    model = nn.Sequential(*blocks, nn.Linear(width, 10))
    opt_class = torch.optim.Adam if optimizer_name == "adam" else torch.optim.SGD
    optimizer = opt_class(model.parameters(), lr=lr)

    accuracy = 0.0
    for epoch in range(EPOCHS):
        model.train()
        for batch in torch.randperm(len(x_train)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
        print(f"epoch {epoch}: val accuracy {accuracy:.4f}")
        trial.report(accuracy, epoch)
        if trial.should_prune():
            raise hpwf.TrialPruned()
    return accuracy
