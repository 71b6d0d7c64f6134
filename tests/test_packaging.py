"""The declared dependencies are true: a wheel installed into a clean venv runs a search and its report.

The clean venv (``python -m venv``, no system site-packages) gets only torch from outside: a
``.pth`` file points at a folder of links to the installed torch and the distributions torch
itself requires (filelock, sympy, ...), nothing else. Installing the 200 MB torch wheel again
would take minutes and prove nothing about hpwf's own metadata; everything else comes from the
package index, through the wheel's metadata, pinned to requirements.lock where the lock pins.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _requirement_names(dist: metadata.Distribution) -> list[str]:
    """Names of the distribution's unconditional requirements (no extras, markers that hold here)."""
    from packaging.requirements import Requirement

    names = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(req.name)
    return names


def torch_only_folder(target: Path) -> Path:
    """Links to the installed torch and its own requirements (transitively), and nothing else."""
    target.mkdir()
    todo, seen = ["torch"], set()
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(name)
        todo += _requirement_names(dist)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (target / top).exists() and top != "__pycache__" and not top.endswith(".pth"):
                (target / top).symlink_to(source)
    assert (target / "torch").exists() and not (target / "optuna").exists() and not (target / "numpy").exists()
    return target


@pytest.mark.slow
def test_the_wheel_runs_a_search_and_its_report_in_a_clean_venv(tmp_path: Path) -> None:
    source = tmp_path / "src"  # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    shutil.copytree(ROOT / "hpwf", source / "hpwf", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, source,
         cwd=tmp_path)
    (wheel,) = dist.glob("hpwf-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                        cwd=tmp_path).stdout.strip())
    (purelib / "torch_only.pth").write_text(str(torch_only_folder(tmp_path / "torch-only")) + "\n")
    pip = [python, "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check", "-c",
           ROOT / "requirements.lock"]  # (no .pyc up front: plotly alone has thousands of modules)

    # The core alone: a search on the local backend, its status and its report.
    _run(*pip, wheel, cwd=tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    where = _run(python, "-c", "import hpwf, torch; print(hpwf.__file__)", cwd=work).stdout.strip()
    assert where.startswith(str(venv)), where
    extra = _run(python, "-c", "import importlib.util as u; print([m for m in ('sklearn', 'horovod', 'mpi4py', "
                 "'optuna_dashboard', 'pytest') if u.find_spec(m)])", cwd=work).stdout.strip()
    assert extra == "[]", f"not a clean venv: {extra}"
    hpwf = venv / "bin" / "hpwf"
    _run(hpwf, "run", ROOT / "tests" / "workflows" / "toy.py", "--workers", "1", "--n-trials", "4", "--run-dir",
         "toy", "--quiet", cwd=work)
    _run(hpwf, "report", "toy", cwd=work)
    assert (work / "toy" / "report.html").stat().st_size > 10_000

    # The examples extra: the quickstart, as the README runs it.
    _run(*pip, f"{wheel}[examples]", cwd=tmp_path)
    _run(hpwf, "run", ROOT / "workflows" / "quickstart.py", "--workers", "2", "--n-trials", "4", "--run-dir", "qs",
         cwd=work)
    _run(hpwf, "report", "qs", cwd=work)
    status = _run(hpwf, "status", "qs", "--json", cwd=work).stdout
    assert '"complete"' in status and (work / "qs" / "report.html").stat().st_size > 10_000
