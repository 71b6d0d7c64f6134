"""What one agent costs before its first trial: start-up time and memory (issue 13, light agents).

Side by side, interleaved, in fresh interpreters: the agent's own start (``import hpwf.worker._agent``,
then load a workflow file as an agent does) against the same plus ``import optuna``, which is
what every agent paid until agents became light (and what any agent still pays once a trial
uses Optuna). Start time and peak RSS (``VmHWM``) of each child are compared.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from bench._common import PY, env, median, scratch, write

AGENT = """
import json, sys, time
t = time.perf_counter()
import hpwf.worker._agent
from hpwf.workflow._search import checked_elsewhere
from hpwf.workflow._loading import load
with checked_elsewhere():
    load(sys.argv[1])
if sys.argv[2] == "with-optuna":
    import optuna
heavy = [m for m in ("optuna", "numpy", "torch") if m in sys.modules]
status = open("/proc/self/status").read()  # VmHWM: this image's peak (ru_maxrss keeps the parent's across exec)
peak_kb = int(status.split("VmHWM:")[1].split()[0])
print(json.dumps({"s": time.perf_counter() - t, "rss_mb": peak_kb / 1024,
                  "heavy": heavy}))
"""

WORKFLOW = """
import hpwf
search = hpwf.Search(direction="minimize", n_trials=10, sampler="tpe", pruner="asha")
def objective(trial):
    return trial.suggest_float("x", 0, 1)
"""


def _start(workflow: str, variant: str) -> dict[str, Any]:
    out = subprocess.run([PY, "-c", AGENT, workflow, variant], capture_output=True, text=True, env=env(), check=True)
    return dict(json.loads(out.stdout))


def run(quick: bool = False) -> dict[str, Any]:
    repeats = 3 if quick else 15
    with scratch("agent-weight") as folder:
        workflow = str(write(folder / "wf.py", WORKFLOW))
        light, heavy = [], []
        for _ in range(repeats):  # interleaved: the machine's load hits both alike
            light.append(_start(workflow, "light"))
            heavy.append(_start(workflow, "with-optuna"))
    s_light, s_heavy = median([r["s"] for r in light]), median([r["s"] for r in heavy])
    mb_light, mb_heavy = median([r["rss_mb"] for r in light]), median([r["rss_mb"] for r in heavy])
    ratio = s_light / s_heavy
    return {
        "ratio": round(ratio, 3), "light_start_s": round(s_light, 4), "with_optuna_start_s": round(s_heavy, 4),
        "light_rss_mb": round(mb_light, 1), "with_optuna_rss_mb": round(mb_heavy, 1),
        "light_imports": light[0]["heavy"], "repeats": repeats,
        "comparison": "median start of a light agent (import hpwf.worker._agent + load the workflow) / the same plus "
                      "import optuna (agents before issue 13), fresh interpreters, interleaved",
        "line": f"agent_weight: start {s_light * 1000:.0f} vs {s_heavy * 1000:.0f} ms ({ratio:.2f}x), "
                f"peak RSS {mb_light:.0f} vs {mb_heavy:.0f} MB; heavy modules in a light agent: {light[0]['heavy'] or 'none'}",
    }
