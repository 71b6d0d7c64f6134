# expect: objective_two_args.py: objective must take exactly one argument
import hpwf
search = hpwf.Search(direction='minimize', n_trials=3)
def objective(trial, data):
    return 1.0
