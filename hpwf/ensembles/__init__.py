"""Bootstrap and seed ensembles for UQ: `Ensemble`/`Member` and the members' plan
(`_members`), greedy/top-k selection (`_selection`), aggregation of members' predictions
(`_aggregate`), calibration: split conformal (`_conformal`), Mondrian, CQR, jackknife+ and
CV+ (`_intervals`), temperature scaling and APS/RAPS sets (`_classify`), the methods'
options and entries (`_calibrate`); the UQ metrics (`_uq`), exact mixture scores and
conditional coverage (`_scores`). May import: `hpwf.workflow`, `hpwf.rundir`, `hpwf.errors`,
`hpwf.progress`; never the engine.
"""

from __future__ import annotations

from hpwf.ensembles import _uq as uq
from hpwf.ensembles._aggregate import aggregate
from hpwf.ensembles._members import (
    member_direction, member_search, missing_members, plan, read_selection, same_member, write_selection)
from hpwf.ensembles._uq import summarize

__all__ = ["aggregate", "member_direction", "member_search", "missing_members", "plan", "read_selection", "same_member", "summarize", "uq", "write_selection"]
