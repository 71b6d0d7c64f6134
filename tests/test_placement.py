"""The placement rules on their own: which agents, which waiting trial, whether to ask (fast)."""

from __future__ import annotations

from hpwf.engine.placement import choose_agents, may_ask, next_fitting


def test_a_group_takes_one_host_when_one_host_has_room() -> None:
    free = [("a", "n1", 1), ("b", "n2", 2), ("c", "n2", 3), ("d", "n3", 4), ("e", "n3", 5), ("f", "n3", 6)]
    assert choose_agents(free, 2) == ["b", "c"]  # the tightest host that fits keeps n3's block whole
    assert choose_agents(free, 3) == ["d", "e", "f"]
    assert choose_agents(free, 4) == ["d", "e", "f", "b"]  # no host fits: the fullest hosts combine
    assert choose_agents(free, 7) is None


def test_a_small_trial_passes_a_big_one_until_the_big_one_has_waited_too_long() -> None:
    assert next_fitting([4, 4, 1, 2], free=2, head_must_go_first=False) == 2
    assert next_fitting([4, 4, 1, 2], free=2, head_must_go_first=True) is None
    assert next_fitting([4, 1], free=4, head_must_go_first=True) == 0
    assert next_fitting([4, 4], free=3, head_must_go_first=False) is None


def test_asking_goes_on_while_a_trial_could_use_the_free_ranks_and_agents_outnumber_waiting_trials() -> None:
    assert may_ask(free=2, smallest=1, waiting=2, agents=8)  # two 4-rank trials wait; a 1-rank one may come
    assert may_ask(free=2, smallest=1, waiting=7, agents=8)
    assert not may_ask(free=2, smallest=1, waiting=8, agents=8)  # one waiting trial per agent at most
    assert not may_ask(free=1, smallest=2, waiting=0, agents=8)  # nothing asked could start now
    assert not may_ask(free=0, smallest=1, waiting=0, agents=8)
    assert may_ask(free=2, smallest=2, waiting=0, agents=2)
