# expect: negative_budget.py:3: n_trials must be >= 1, not -5
import hpwf
search = hpwf.Search(direction='minimize', n_trials=-5)
def objective(trial):
    return 1.0
