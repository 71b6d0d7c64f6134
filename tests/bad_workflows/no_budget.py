# expect: no_budget.py:3: the search needs a budget
import hpwf
search = hpwf.Search(direction='minimize')
def objective(trial):
    return 1.0
