"""Benchmark (3), by hand: ``horovodrun -np 2 python bench/_hvd_by_hand.py EPOCHS OUT.json``."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import horovod.torch as hvd  # noqa: E402

from bench._hvd_train import train  # noqa: E402

hvd.init()
result = train(hvd, int(sys.argv[1]))
if hvd.rank() == 0:
    Path(sys.argv[2]).write_text(json.dumps(result))
hvd.shutdown()
