"""Write a large finished study straight into an Optuna journal file (fast; for scale tests).

`write_journal` emits the records Optuna itself writes for ``n`` trials with two float
parameters, three intermediate values each, hpwf's run attribute and a final value; Optuna
reads the file back as a normal study. `make_run` adds ``run.json`` so that hpwf sees a
finished run directory.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

_DIST = json.dumps({"name": "FloatDistribution", "attributes": {"step": None, "low": 0.0, "high": 1.0, "log": False}})
_WORKER = "bigjournal-0"


def write_journal(path: Path, n: int, study_name: str = "big", run_id: str = "big", seed: int = 0,
                  fail_every: int = 0) -> None:
    """``n`` finished trials (COMPLETE; every ``fail_every``-th FAIL) of a minimised study."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    def dump(record: object) -> str:  # compact, as Optuna writes it
        return json.dumps(record, separators=(",", ":"))

    lines = [dump({"op_code": 0, "worker_id": _WORKER, "study_name": study_name, "directions": [1]})]
    for i in range(n):
        t0 = start + timedelta(seconds=i * 0.01)
        x, y = rng.random(), rng.random()
        lines.append(dump({"op_code": 4, "worker_id": _WORKER, "study_id": 0, "datetime_start": t0.isoformat()}))
        lines.append(dump({"op_code": 8, "worker_id": _WORKER, "trial_id": i, "user_attr": {"hpwf:run": run_id}}))
        for name, value in (("x", x), ("y", y)):
            lines.append(dump({"op_code": 5, "worker_id": _WORKER, "trial_id": i, "param_name": name,
                               "param_value_internal": value, "distribution": _DIST}))
        value = (x - 0.3) ** 2 + (y - 0.7) ** 2
        for step in range(3):
            lines.append(dump({"op_code": 7, "worker_id": _WORKER, "trial_id": i, "step": step,
                               "intermediate_value": value * (3 - step) + rng.random() * 0.01}))
        done = (t0 + timedelta(seconds=0.005)).isoformat()
        if fail_every and i % fail_every == fail_every - 1:
            lines.append(dump({"op_code": 6, "worker_id": _WORKER, "trial_id": i, "state": 3, "values": None,
                               "datetime_complete": done}))
        else:
            lines.append(dump({"op_code": 6, "worker_id": _WORKER, "trial_id": i, "state": 1, "values": [value],
                               "datetime_complete": done}))
    path.write_text("\n".join(lines) + "\n")


def make_run(run_dir: Path, n: int, workflow: Path | None = None, n_trials: int | None = None, **kw: object) -> Path:
    """A finished hpwf run directory of ``n`` trials (journal store); returns it."""
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    run_dir.chmod(0o700)
    write_journal(run_dir / "study.journal", n, run_id="big", **kw)  # type: ignore[arg-type]
    record = {"study_name": "big", "storage": None, "workflow": str(workflow) if workflow else None,
              "backend": "local", "options": {"n_trials": n_trials or n, "timeout": None, "seed": 0, "workers": 1,
                                              "max_failures": None, "run_id": "big"}, "created": 0.0}
    (run_dir / "run.json").write_text(json.dumps(record))
    (run_dir / "run.json").chmod(0o600)
    return run_dir
