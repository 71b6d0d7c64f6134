# expect: bad_pruner_options.py:3: pruner 'median' with options
import hpwf
search = hpwf.Search(direction='minimize', n_trials=3, pruner='median', pruner_options={'warmup': 2})
def objective(trial):
    return 1.0
