"""Files and who may read them: the run directory and its store (`_run`), trial folders and
durable results (`_trialdir`), permissions and safe writes (`_perms`). May import:
`hpwf.wire` (distributions as JSON), `hpwf.errors`, `hpwf.secrets`, `hpwf.progress`.
"""
