"""``hpwf dashboard RUN_DIR``: optuna-dashboard on a run's store, live while the run goes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import hpwf

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "workflows" / "toy.py"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


_TOKEN: dict[str, str] = {}  # base URL -> the token its dashboard printed


def _get(url: str) -> dict:  # type: ignore[type-arg]
    base = next(b for b in _TOKEN if url.startswith(b))
    request = urllib.request.Request(url, headers={"Cookie": f"hpwf_dashboard={_TOKEN[base]}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _start_dashboard(run_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """Start ``hpwf dashboard RUN_DIR --port 0``; return it and the base URL it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "hpwf", "dashboard", str(run_dir), "--port", "0"],
                            env=_env(), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    found = re.search(r"on (http://\S+/)\?token=(\S+)", line)
    if not found:
        proc.kill()
        raise AssertionError(f"no address printed: {line!r}{proc.stderr.read()}")
    _TOKEN[found.group(1)] = found.group(2)
    return proc, found.group(1)


def test_dashboard_shows_the_trials_of_a_live_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**_env(), "TOY_SLEEP": "0.6", "TOY_EPOCHS": "4"}  # about 30 s: the dashboard starts meanwhile
    run = subprocess.Popen([sys.executable, "-m", "hpwf", "run", str(TOY), "--run-dir", str(run_dir), "--n-trials",
                            "16", "--workers", "1", "--quiet"], env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dashboard = None
    try:
        deadline = time.time() + 240
        while not (run_dir / "run.json").exists() and time.time() < deadline:
            time.sleep(0.2)
        dashboard, base = _start_dashboard(run_dir)
        assert base.startswith("http://127.0.0.1:"), base  # this machine only, unless --host says otherwise
        seen_while_running = set()
        while run.poll() is None and time.time() < deadline:
            studies = _get(base + "api/studies")["study_summaries"]
            if studies:
                detail = _get(base + f"api/studies/{studies[0]['study_id']}")
                seen_while_running.add(sum(t["state"] in ("Complete", "Pruned") for t in detail["trials"]))
            time.sleep(0.5)
        assert run.wait(timeout=120) == 0
        assert len(seen_while_running - {0}) >= 2, f"finished counts seen while running: {seen_while_running}"
        studies = _get(base + "api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["toy"]
        detail = _get(base + f"api/studies/{studies[0]['study_id']}")
        numbers = sorted(t["number"] for t in detail["trials"])
        study = hpwf.load_study(run_dir)
        assert numbers == [t.number for t in study.trials]
        best = [t for t in detail["best_trials"]][0]
        assert best["number"] == study.best_trial.number
    finally:
        if run.poll() is None:
            run.kill()
        if dashboard is not None:
            dashboard.terminate()
            dashboard.wait(timeout=30)


def test_dashboard_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "hpwf", "dashboard", str(tmp_path)], env=_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not an hpwf run directory" in proc.stderr, proc.stderr
