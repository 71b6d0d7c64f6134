"""``python -m hpwf`` (see `hpwf.safepath`: the working directory is left off the import path)."""

import sys

from hpwf.safepath import guard_main

guard_main()

from hpwf.cli import main  # noqa: E402 - after the guard: nothing from the working directory

sys.exit(main())
