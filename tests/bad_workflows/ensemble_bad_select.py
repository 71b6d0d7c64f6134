# expect: select 'best' must be one of topk, greedy
import hpwf

search = hpwf.Search(direction="minimize", n_trials=2)


def objective(trial):
    return trial.suggest_float("x", 0, 1)


ensemble = hpwf.Ensemble(select="best", size=4)
