"""Trials that pause and resume, for the scheduler tests: every rank logs what it saw.

Each rank appends JSON lines to ``events.rankR.jsonl`` in its trial folder: "fresh" (a new
start), "restore" (the step and epoch counter it continues from, a checksum of the weights it
restored, before any broadcast), "pause" (the same at the pause) and "end". The counter is the
number of epochs trained so far along the trial's line: if a resumed trial never trains an epoch
twice, counter == step at every event.

    RC_SCHED=asha-resume|hyperband-resume|pbt RC_RANKS=1|2 RC_TRIALS=.. RC_EPOCHS=.. RC_SLEEP=..
"""

import hashlib
import json
import os
import time

import hpwf
from hpwf.workflow import parallel

SCHED = os.environ.get("RC_SCHED", "asha-resume")
RANKS = int(os.environ.get("RC_RANKS", "1"))
EPOCHS = int(os.environ.get("RC_EPOCHS", "6"))
SLEEP = float(os.environ.get("RC_SLEEP", "0.05"))

_options = {
    "asha-resume": {"min_resource": 1, "reduction_factor": 2, "max_resource": EPOCHS},
    "hyperband-resume": {"min_resource": 1, "reduction_factor": 2, "max_resource": EPOCHS},
    "pbt": {"quantile": 0.5},
}[SCHED]
search = hpwf.Search(
    direction="minimize", n_trials=int(os.environ.get("RC_TRIALS", "6")), sampler="random",
    scheduler=SCHED, scheduler_options=_options, ranks_per_trial=RANKS, seed=0,
    population=int(os.environ.get("RC_POPULATION", "2")) if SCHED == "pbt" else None,
    interval=int(os.environ.get("RC_INTERVAL", "2")) if SCHED == "pbt" else None,
)


def checksum(model) -> str:
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def log(trial, event, **fields) -> None:
    fields.update(event=event, number=trial.number, rank=trial.group.rank, pid=os.getpid(), t=time.time(),
                  lr=trial.params.get("lr"))
    with open(trial.folder / f"events.rank{trial.group.rank}.jsonl", "a") as f:
        f.write(json.dumps(fields) + "\n")


def objective(trial: hpwf.Trial) -> float:
    import torch

    lr = trial.suggest_float("lr", 0.001, 0.3, log=True)
    torch.manual_seed(trial.seed + trial.group.rank)  # different per rank: the restore must make them equal
    model = torch.nn.Linear(8, 1)
    counter, start = 0, 0
    restored = trial.restore()
    if restored is None:
        log(trial, "fresh", step=0, counter=0)
    else:
        model.load_state_dict(restored.state["model"])
        counter, start = restored.state["counter"], restored.step
        log(trial, "restore", step=start, counter=counter, sha=checksum(model))
    optimizer = parallel.distributed_optimizer(torch.optim.SGD(model.parameters(), lr=lr), model, trial)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    y = x @ torch.arange(8.0).unsqueeze(1)
    part = parallel.shard(len(x), trial)
    x, y = x[part.start:part.stop], y[part.start:part.stop]
    loss_value = 0.0
    for epoch in range(start, EPOCHS):
        time.sleep(SLEEP)
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        counter += 1
        loss_value = parallel.average(loss.item(), trial)
        bad = os.environ.get("RC_BAD_LR")  # trials with a bigger lr look bad: PBT must exploit
        trial.report(loss_value + (1000.0 if bad and lr > float(bad) else 0.0), epoch)
        if trial.should_pause():
            log(trial, "pause", step=epoch + 1, counter=counter, sha=checksum(model))
            trial.pause({"model": model.state_dict(), "counter": counter})
    log(trial, "end", step=EPOCHS, counter=counter, sha=checksum(model))
    return loss_value
