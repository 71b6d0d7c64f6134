"""workflows/nt3_cnn.py with successive halving that resumes, for tests/test_nt3_resume.py.

Its objective runs unchanged; this file only watches it: every rank appends JSON lines to
``events.rankR.jsonl`` in the trial folder with a checksum of its own model's weights when it
restores ("restore", the state handed to it), pauses ("pause") and ends ("end"), and the step.

    NT3_EPOCHS=.. NT3_TRIALS=..
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import hpwf
from hpwf.workflow import parallel
from hpwf.workflow._trial import TrialPaused

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workflows"))
import nt3_cnn  # noqa: E402

nt3_cnn.EPOCHS = int(os.environ.get("NT3_EPOCHS", "4"))
search = hpwf.Search(
    direction="maximize", n_trials=int(os.environ.get("NT3_TRIALS", "4")), sampler="random", seed=0,
    scheduler="asha-resume", ranks_per_trial=2,
    scheduler_options={"min_resource": 1, "reduction_factor": 2, "max_resource": nt3_cnn.EPOCHS},
)
_models = {}  # trial number -> the model this rank trains


class _Watch:
    """hpwf.workflow.parallel, remembering the model handed to ``distributed_optimizer``."""

    def __getattr__(self, name):
        return getattr(parallel, name)

    def distributed_optimizer(self, optimizer, model, trial, **kwargs):
        _models[trial.number] = model
        return parallel.distributed_optimizer(optimizer, model, trial, **kwargs)


nt3_cnn.parallel = _Watch()


def checksum(state) -> str:
    digest = hashlib.sha256()
    for tensor in state.values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def log(trial, event, step, sha) -> None:
    row = {"event": event, "number": trial.number, "rank": trial.group.rank, "step": step, "sha": sha}
    with open(trial.folder / f"events.rank{trial.group.rank}.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def objective(trial: hpwf.Trial) -> float:
    restore = trial.restore

    def watched_restore():
        restored = restore()
        if restored is not None:
            log(trial, "restore", restored.step, checksum(restored.state["model"]))
        return restored

    trial.restore = watched_restore
    try:
        value = nt3_cnn.objective(trial)
    except TrialPaused as paused:
        log(trial, "pause", int(paused.args[0]), checksum(_models[trial.number].state_dict()))
        raise
    log(trial, "end", nt3_cnn.EPOCHS, checksum(_models[trial.number].state_dict()))
    return value
