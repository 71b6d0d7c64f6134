# expect: syntax_error.py:4: SyntaxError
import hpwf
search = hpwf.Search(direction="minimize", n_trials=3)
def objective(trial)
    return 1.0
