"""What a user writes and an objective sees: loading a workflow file (`_loading`), `Search`
(`_search`), `Trial` (`_trial`), predictions files (`_predictions`) and the Horovod helpers
(`parallel`). Never imports Optuna on an agent. May import: `hpwf.wire`, `hpwf.rundir`.
"""
