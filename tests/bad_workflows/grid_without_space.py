# expect: grid_without_space.py:3: sampler 'grid' needs sampler_options
import hpwf
search = hpwf.Search(direction='minimize', n_trials=3, sampler='grid')
def objective(trial):
    return 1.0
