"""Old path of `hpwf.workflow.parallel`, kept as an alias: ``from hpwf import parallel`` still works."""

import sys

from hpwf.workflow import parallel

sys.modules[__name__] = parallel
