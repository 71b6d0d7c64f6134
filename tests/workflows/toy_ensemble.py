"""A fast ensemble-only workflow for tests: members 'fit' a constant on a bootstrap resample."""

import os
import time

import numpy as np

import hpwf


def train_member(member: hpwf.Member) -> float:
    rng = np.random.default_rng(123)
    y = rng.normal(1.0, 0.5, 200)
    in_bag, out_of_bag = member.bootstrap(len(y))
    time.sleep(float(os.environ.get("MEMBER_SLEEP", "0")))
    marker = os.environ.get("MEMBER_FAIL_ONCE")
    if marker and member.index == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("planted member failure")
    mu, var = y[in_bag].mean(), y[in_bag].var()
    member.save_predictions(y=y[:50], mean=np.full(50, mu), var=np.full(50, var))
    return float(((y[out_of_bag] - mu) ** 2).mean())


ensemble = hpwf.Ensemble(members=int(os.environ.get("MEMBERS", "6")), train=train_member,
                         params={"scale": float(os.environ.get("MEMBER_SCALE", "1.0"))}, seed=3,
                         direction="minimize")
