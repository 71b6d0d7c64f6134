"""The GPU check's workflow: NT3 (workflows/nt3_cnn.py) with 2-rank Horovod groups on CUDA.

Each rank records the device its model and data lived on, its local rank and a checksum of its
trained weights into the trial folder, so the check can compare them across the group.
"""

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workflows"))

import nt3_cnn  # noqa: E402

import hpwf  # noqa: E402
from hpwf.workflow import parallel  # noqa: E402

search = dataclasses.replace(nt3_cnn.search, n_trials=2, pruner="none", pruner_options={}, ranks_per_trial=2)


def objective(trial: hpwf.Trial) -> float:
    import torch

    from hpwf.workflow._topology import placement

    accuracy = nt3_cnn.objective(trial)
    state = parallel.restore(trial)  # rank 0 saved the trained model; every rank gets it
    model = nt3_cnn.build_cnn(trial).to(parallel.device(trial))
    mine = {k: v.detach() for k, v in model.state_dict().items()}
    info = {
        "device": str(parallel.device(trial)), "local_rank": placement().local_rank,
        "devices": torch.cuda.device_count(), "group_rank": trial.group.rank,
        "param_device": str(next(model.parameters()).device),
        "checksum": float(sum(v.double().sum().item() for v in state["model"].values())) if state else None,
        "shapes": sorted(k for k in mine),
    }
    (trial.folder / f"gpu_rank{trial.group.rank}.json").write_text(json.dumps(info))
    return accuracy
