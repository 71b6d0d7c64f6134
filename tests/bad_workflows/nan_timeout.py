# expect: nan_timeout.py:3: timeout must be > 0, not nan
import hpwf
search = hpwf.Search(direction='minimize', timeout=float('nan'))
def objective(trial):
    return 1.0
