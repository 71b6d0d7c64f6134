# expect: bad_option.py:3: TypeError: Search.__init__() got an unexpected keyword argument 'trials'
import hpwf
search = hpwf.Search(direction='minimize', trials=3)
def objective(trial):
    return 1.0
