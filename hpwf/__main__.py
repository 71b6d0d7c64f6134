"""``python -m hpwf``."""

import sys

from hpwf.cli import main

sys.exit(main())
