# expect: bad_timeout.py:3: timeout must be > 0, not 0
import hpwf
search = hpwf.Search(direction='minimize', timeout=0)
def objective(trial):
    return 1.0
