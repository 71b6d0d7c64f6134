"""The agent side: an agent serves trials (`_agent`), a launched group runs one trial on K
ranks under mpirun (`_launched`), and launcher variables map to one placement record
(`_topology`). May import: `hpwf.wire`, `hpwf.workflow`, `hpwf.rundir`, `hpwf.ensembles`;
never the engine or a backend.
"""
