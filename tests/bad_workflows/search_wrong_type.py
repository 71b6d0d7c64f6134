# expect: search_wrong_type.py: search must be an hpwf.Search, not dict
search = {'direction': 'minimize'}
def objective(trial):
    return 1.0
