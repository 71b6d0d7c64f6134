"""Old entry point of a launched group (``python -m hpwf.backends._launch``), kept for job scripts
and groups started by an older hpwf; the group's ranks now run `hpwf.worker._launched`."""

import sys

if __name__ == "__main__":
    from hpwf.worker._group_rank import main

    sys.exit(main())
