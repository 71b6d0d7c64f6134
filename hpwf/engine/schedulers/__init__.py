"""Schedulers decide, the coordinator acts: successive halving and Hyperband (`_halving`),
population-based training (`_pbt`), and PBT's replay (`_replay`). May import: `hpwf.rundir`,
`hpwf.wire`, the engine's ledger.
"""
