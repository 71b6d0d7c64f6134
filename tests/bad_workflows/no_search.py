# expect: no_search.py: no `search = hpwf.Search(...)` defined
def objective(trial):
    return 1.0
