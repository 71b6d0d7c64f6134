"""Malformed workflow files: exit 2, one line naming file and line/option, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BAD = sorted((Path(__file__).parent / "bad_workflows").glob("*.py"))


def expected_message(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), path
    return first.removeprefix("# expect: ")


def test_the_corpus_is_large_enough() -> None:
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_malformed_workflow_exits_2_with_one_line(path: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "hpwf", "run", str(path), "--run-dir", str(run_dir)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hpwf: error: ") and str(path) in lines[0]
    assert expected_message(path) in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert not run_dir.exists(), "nothing may be written for a malformed workflow"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n-trials", "0"], "n_trials must be >= 1, not 0"),
        (["--timeout", "-3"], "timeout must be > 0, not -3.0"),
        (["--workers", "0"], "--workers must be >= 1, not 0"),
        (["--backend", "ray"], "--backend: unknown backend 'ray'"),
        (["--storage", "nonsense"], "storage 'nonsense': not a storage URL"),
        (["--n-trials", "many"], "argument --n-trials: invalid int value: 'many'"),
    ],
)
def test_bad_command_line_options_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    workflow = Path(__file__).parent / "workflows" / "toy.py"
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "hpwf", "run", str(workflow), "--run-dir", str(run_dir), *args],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr
    assert not (run_dir / "run.json").exists() and not (run_dir / "study.journal").exists()
