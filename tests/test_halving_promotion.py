"""asha-resume's promotions (issue 25): `promotable` names exactly the paused trials in their
rung's top quota, as a scan of every paused trial would, but looks at them only when one of them
entered a quota (the scan at each change made a 512-worker search quadratic in its paused trials)."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from hpwf.engine.schedulers import Decision
from hpwf.engine.schedulers._halving import SuccessiveHalving


class Watched:
    """The paused trials, counting how often `promotable` walks them."""

    def __init__(self, records: list[Any]) -> None:
        self.records, self.walks = records, 0

    def __iter__(self) -> Iterator[Any]:
        self.walks += 1
        return iter(self.records)


@pytest.mark.parametrize("seed", range(6))
def test_promotable_names_what_a_scan_of_every_paused_trial_names(seed: int) -> None:
    rng = random.Random(seed)
    sh = SuccessiveHalving(False, 1, 3, 27)
    records: dict[int, Any] = {}
    running: list[int] = []
    paused: set[int] = set()
    for _ in range(600):
        if running and rng.random() < 0.4:
            number = running.pop(rng.randrange(len(running)))
        else:
            number = len(records)
            records[number] = SimpleNamespace(number=number, rung=-1)
        record = records[number]
        record.rung += 1
        if record.rung >= len(sh.brackets[0].steps):
            continue  # it ran to its end
        if sh.on_report(record, sh.brackets[0].steps[record.rung], rng.random()) == Decision.PAUSE:
            paused.add(number)
            sh.on_paused(record)  # type: ignore[arg-type]
        else:
            running.append(number)
        expected = sorted(n for n in paused if sh._promotes(n))
        got = sorted(r.number for r in sh.promotable([records[n] for n in sorted(paused)]))
        assert got == expected
        paused -= set(got)
        running.extend(got)


def test_promotable_does_not_walk_the_paused_trials_while_none_entered_a_quota() -> None:
    sh = SuccessiveHalving(False, 1, 3, 27)
    records = [SimpleNamespace(number=n) for n in range(40)]
    for r in records[:10]:  # ten at rung 0, best first: the first ones pause while the rung is small
        assert sh.on_report(r, 1, r.number / 100) == Decision.PAUSE
        sh.on_paused(r)  # type: ignore[arg-type]
    first = Watched(records[:10])
    assert [r.number for r in sh.promotable(first)] == [0, 1, 2]  # the top third of ten, once they are in it
    paused = Watched(records[3:10])
    assert sh.promotable(paused) == [] and paused.walks == 0  # nothing entered a quota since: no walk
    for r in records[10:12]:  # worse values: the quota (12 // 3 = 4) lets the fourth best in: trial 3
        assert sh.on_report(r, 1, 0.9) == Decision.PAUSE
    assert [r.number for r in sh.promotable(paused)] == [3] and paused.walks == 1
    assert sh.promotable(Watched(records[4:10])) == []
