# expect: huge_ranks.py:3: ranks_per_trial must be an integer, not 2.5
import hpwf
search = hpwf.Search(direction='minimize', n_trials=3, ranks_per_trial=2.5)
def objective(trial):
    return 1.0
