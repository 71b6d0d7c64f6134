# expect: unknown_pruner.py:3: unknown pruner 'early'
import hpwf
search = hpwf.Search(direction='minimize', n_trials=3, pruner='early')
def objective(trial):
    return 1.0
