"""The GPU check (`make test-gpu`, never part of `make test`): NT3 with 2-rank Horovod groups on CUDA.

It needs a CUDA device and a CUDA build of torch and Horovod; on a machine without them it
fails at once and says so (it never passes on a CPU). Record its result in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_nt3_trains_on_cuda_with_horovod_groups_of_two(tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.fail("no CUDA device on this machine: the GPU check did not run (run `make test-gpu` on a GPU node)")
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "mpirun"), "-np", "3", sys.executable, "-m", "hpwf", "run",
         str(ROOT / "tests" / "gpu" / "nt3_gpu.py"), "--backend", "mpi", "--run-dir", str(run_dir), "--quiet"],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for folder in sorted((run_dir / "trials").iterdir()):
        ranks = [json.loads((folder / f"gpu_rank{r}.json").read_text()) for r in (0, 1)]
        for info in ranks:
            expected = f"cuda:{info['local_rank'] % info['devices']}"
            assert info["device"] == expected and info["param_device"] == expected, info
        assert ranks[0]["checksum"] == ranks[1]["checksum"] is not None  # the same trained weights on both
