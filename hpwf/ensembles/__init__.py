"""Bootstrap and seed ensembles for UQ: `Ensemble`/`Member` and the members' plan
(`_members`), greedy/top-k selection (`_selection`), aggregation of members' predictions
(`_aggregate`), conformal calibration (`_conformal`) and the UQ metrics (`_uq`). May import:
`hpwf.workflow`, `hpwf.rundir`, `hpwf.errors`, `hpwf.progress`; never the engine.
"""
