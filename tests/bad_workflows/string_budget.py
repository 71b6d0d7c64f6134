# expect: string_budget.py:3: n_trials must be an integer, not '10'
import hpwf
search = hpwf.Search(direction='minimize', n_trials='10')
def objective(trial):
    return 1.0
