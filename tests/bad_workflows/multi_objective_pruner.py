# expect: multi_objective_pruner.py:3: pruning is not defined for multi-objective searches
import hpwf
search = hpwf.Search(directions=['minimize', 'maximize'], n_trials=3, pruner='asha')
def objective(trial):
    return 1.0, 2.0
