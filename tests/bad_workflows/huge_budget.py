# expect: huge_budget.py:3: n_trials must be <= 1000000000
import hpwf
search = hpwf.Search(direction='minimize', n_trials=10**30)
def objective(trial):
    return 1.0
