# expect: name_error.py:3: NameError: name 'Search' is not defined
import hpwf
search = Search(direction='minimize', n_trials=3)
