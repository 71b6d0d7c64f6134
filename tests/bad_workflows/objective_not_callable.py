# expect: objective_not_callable.py: objective must be a function taking one trial
import hpwf
search = hpwf.Search(direction='minimize', n_trials=3)
objective = 42
