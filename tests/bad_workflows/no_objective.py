# expect: no_objective.py: no `def objective(trial)` defined
import hpwf
search = hpwf.Search(direction="minimize", n_trials=3)
