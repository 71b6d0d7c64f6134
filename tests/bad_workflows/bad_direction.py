# expect: bad_direction.py:3: direction 'maximise' must be 'minimize' or 'maximize'
import hpwf
search = hpwf.Search(direction='maximise', n_trials=3)
def objective(trial):
    return 1.0
