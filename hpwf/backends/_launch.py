"""Old entry point of a launched group's ranks (``python -m hpwf.backends._launch``), kept for
groups started by an older hpwf; the ranks now run ``python -m hpwf.worker._group_rank``."""

import runpy

if __name__ == "__main__":
    runpy.run_module("hpwf.worker._group_rank", run_name="__main__", alter_sys=True)
