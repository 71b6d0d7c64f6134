# expect: Ensemble(direction=...) is needed
import hpwf


def train(member):
    return 0.0


ensemble = hpwf.Ensemble(members=2, train=train, params={"x": 1.0})
