"""The arguments of ``hpwf ensemble-member`` (the ensemble array's task, `hpwf.slurm._array`),
apart from it: building the command line imports neither Optuna nor the workflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def add_member_parser(subparsers: Any) -> None:
    """Add ``hpwf ensemble-member RUN_DIR --member I [--workflow WF] [--storage URL]``."""
    p = subparsers.add_parser("ensemble-member", help="train one ensemble member (a Slurm array task)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--member", type=int, required=True, help="the member's index, e.g. $SLURM_ARRAY_TASK_ID")
    p.add_argument("--workflow", type=Path, help="the workflow file (default: the one run.json names)")
    p.add_argument("--storage", help="Optuna storage for an ensemble-only workflow (default: a journal in the run dir)")
