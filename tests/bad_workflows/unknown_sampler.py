# expect: unknown_sampler.py:3: unknown sampler 'bayes'
import hpwf
search = hpwf.Search(direction='minimize', n_trials=3, sampler='bayes')
def objective(trial):
    return 1.0
