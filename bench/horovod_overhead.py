"""(3) Horovod overhead: the same training loop (bench/_hvd_train.py) for E epochs

- inside one hpwf trial with ``ranks_per_trial=2``: ``mpirun -np 3 python -m hpwf run <wf>
  --backend mpi`` (rank 0 coordinates; ranks 1 and 2 split a group communicator off
  COMM_WORLD and ``hvd.init`` on it; every epoch's accuracy is reported to the coordinator and
  the prune decision broadcast to the group, as an hpwf trial does), vs
- by hand: ``horovodrun --mpi -np 2 -H localhost:2 python bench/_hvd_by_hand.py`` (``hvd.init()``
  on COMM_WORLD, no reporting).

The two alternate (ABBA order) R times; the ratio uses medians. ``train_s`` is the epochs only
(timed on rank 0 by the loop itself); ``command`` is each whole command, start-up included.
``report_s`` is the time rank 0 spent in ``trial.report`` + ``should_prune`` (the part of the
loop that only the hpwf side has), measured inside the same runs: a direct measure of hpwf's
own cost inside the loop, next to a training-time ratio that the machine's load can swamp.
"""

from __future__ import annotations

import json
from typing import Any

from bench._common import HOROVODRUN, MPIRUN, PY, ROOT, median, rnd, scratch, show, timed, write

WORKFLOW = """
import time

import hpwf
from hpwf.workflow import parallel

from bench._hvd_train import train

search = hpwf.Search(direction="maximize", n_trials=1, sampler="random", ranks_per_trial=2, seed=0)


def objective(trial):
    hvd = parallel.horovod(trial)
    spent = [0.0]

    def report(accuracy, epoch):  # what hpwf adds inside the loop: a round trip and a broadcast
        start = time.perf_counter()
        trial.report(accuracy, epoch)
        stop = trial.should_prune()
        spent[0] += time.perf_counter() - start
        return stop

    result = train(hvd, {epochs}, report)
    trial.set_user_attr("train_s", result["train_s"])  # sent by the group's rank 0
    trial.set_user_attr("report_s", spent[0])
    trial.set_user_attr("ranks", result["ranks"])
    return result["accuracy"]
"""


def run(quick: bool = False) -> dict[str, Any]:
    import hpwf

    epochs, repeats = (3, 2) if quick else (20, 6)
    hp_train, hp_wall, hand_train, hand_wall, hp_report = [], [], [], [], []
    with scratch("horovod") as folder:
        wf = write(folder / "hvd_trial.py", WORKFLOW.format(epochs=epochs))
        for i in range(repeats):
            run_dir, out = folder / f"hpwf-{i}", folder / f"hand-{i}.json"
            hp_cmd = [MPIRUN, "-np", "3", PY, "-m", "hpwf", "run", str(wf), "--backend", "mpi",
                      "--run-dir", str(run_dir), "--quiet"]
            hand_cmd = [HOROVODRUN, "--mpi", "-np", "2", "-H", "localhost:2", PY,
                        str(ROOT / "bench" / "_hvd_by_hand.py"), str(epochs), str(out)]
            for side in (("hpwf", "hand") if i % 2 == 0 else ("hand", "hpwf")):  # ABBA: cancels drift
                if side == "hpwf":
                    wall, _ = timed(hp_cmd, timeout=600)
                    trial = hpwf.load_study(run_dir).trials[0]
                    assert trial.user_attrs.get("ranks") == 2.0, trial.user_attrs
                    hp_train.append(trial.user_attrs["train_s"])
                    hp_report.append(trial.user_attrs["report_s"])
                    hp_wall.append(wall)
                else:
                    wall, _ = timed(hand_cmd, timeout=600)
                    result = json.loads(out.read_text())
                    assert result["ranks"] == 2.0, result
                    hand_train.append(result["train_s"])
                    hand_wall.append(wall)
        commands = {"hpwf": show(hp_cmd, folder), "by_hand": show(hand_cmd, folder)}
    ratio = median(hp_train) / median(hand_train)
    pairwise = median([a / b for a, b in zip(hp_train, hand_train)])
    ratio_cmd = median(hp_wall) / median(hand_wall)
    return {
        "benchmark": "horovod_overhead",
        "comparison": f"same loop, {epochs} epochs, 2 Horovod ranks (MPI controller): hpwf trial "
                      "(mpirun -np 3 --backend mpi, group communicator, per-epoch report) vs horovodrun "
                      f"--mpi -np 2 by hand; medians of {repeats} runs each, alternating ABBA; ratio = training time "
                      "(epochs only), ratio_command = whole command wall",
        "commands": commands,
        "epochs": epochs, "repeats": repeats,
        "hpwf_train_s": [rnd(v, 3) for v in hp_train], "by_hand_train_s": [rnd(v, 3) for v in hand_train],
        "hpwf_command_s": [rnd(v, 3) for v in hp_wall], "by_hand_command_s": [rnd(v, 3) for v in hand_wall],
        "ratio": rnd(ratio, 3),
        "ratio_pairwise_median": rnd(pairwise, 3),
        "hpwf_report_s": [rnd(v, 4) for v in hp_report],
        "report_share_of_training": rnd(median([r / t for r, t in zip(hp_report, hp_train)]), 4),
        "ratio_command": rnd(ratio_cmd, 3),
        "aim": "<= 1.05",
        "line": f"horovod_overhead (hpwf trial / horovodrun by hand): training {ratio:.3f}x "
                f"({median(hp_train):.2f} vs {median(hand_train):.2f} s; median of pair ratios {pairwise:.3f}x; "
                f"hpwf's {epochs} reports took {median(hp_report) * 1000:.0f} ms), whole command {ratio_cmd:.3f}x "
                f"({median(hp_wall):.1f} vs {median(hand_wall):.1f} s)",
    }
