"""The simulator under store errors (`hpwf.sim._store_faults`, `hpwf.engine.store`): a store that
fails for a while never lets an exception escape ``Coordinator.step``; every kept effect is stored
once it answers; an outage past the grace stops the run, and a resume finishes the budget."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from hpwf.engine.stops import StopKind, stop_kind
from hpwf.sim import Config, World, _world, run, run_seed
from hpwf.sim._schedule import draw_actions
from hpwf.sim._store_faults import with_outages

# Seeds that ended with an OSError escaping Coordinator.step on main 82ce4c0
# (`python -m hpwf.sim --seed N --store-errors`: 52 of seeds 0-399; these are the first 12).
FAILED_ON_MAIN = [1, 3, 12, 13, 31, 32, 38, 42, 47, 52, 62, 70]


def test_seeds_whose_store_errors_escaped_step_on_main_keep_every_invariant() -> None:
    failed = [f"{o.replay_line()}: {o.violations[0]}" for seed in FAILED_ON_MAIN
              if (o := run_seed(seed, store_errors=True)).violations]
    assert not failed, "\n".join(failed)


def _stops(monkeypatch: pytest.MonkeyPatch) -> list[StopKind | None]:
    kinds: list[StopKind | None] = []
    end_phase = _world.World._end_phase

    def noting(self: World) -> None:
        assert self.c is not None
        kinds.append(stop_kind(self.c.stop_reason))
        end_phase(self)
    monkeypatch.setattr(_world.World, "_end_phase", noting)
    return kinds


def test_store_outages_are_in_the_default_draw_and_one_past_the_grace_stops_then_resumes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = sum(any(a[0] == "store_outage" for a in with_outages(seed, Config.draw(seed), [])) for seed in range(400))
    assert 60 <= drawn <= 100  # one seed in five
    kinds = _stops(monkeypatch)
    for seed in (151, 366):  # drawn seeds whose outage outlasts the grace while trials run
        outcome = run_seed(seed)
        assert any(a[0] == "store_outage" and a[1] > outcome.config.store_grace for a in outcome.actions)
        assert outcome.violations == []
    assert kinds.count(StopKind.STORE) == 2


def test_an_outage_past_the_grace_stops_the_run_and_a_resume_finishes_the_budget_exactly(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    kinds = _stops(monkeypatch)
    config = Config(seed=7, agents=4, hosts=2, n_trials=20, longest=5.0, store_grace=30.0, retries=0)
    world = run(config, [("advance", 3.0), ("store_outage", 45.0)], tmp_path)
    assert world.violations == [], world.violations
    assert kinds[0] is StopKind.STORE and world.resumes == 1
    assert world.storage.finished_ok == 20  # told exactly once each (the storage reports a second tell)


def test_a_short_outage_is_ridden_out_without_a_stop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    kinds = _stops(monkeypatch)
    config = Config(seed=8, agents=4, hosts=2, n_trials=20, longest=5.0, store_grace=30.0, retries=0)
    world = run(config, [("advance", 3.0), ("store_outage", 10.0), ("advance", 5.0)], tmp_path)
    assert world.violations == [], world.violations
    assert kinds == [None] and world.resumes == 0 and world.storage.finished_ok == 20
    assert world.storage.failed_at > 1003.0  # the outage was met (writes failed), and ridden out


def test_draw_actions_is_unchanged_by_the_store_outages() -> None:
    """The outages come from their own random stream: every other fault stays as its seed drew it."""
    config = Config.draw(151)
    rng = random.Random(151 ^ 0x5EED)
    actions = draw_actions(rng, config, rng.randint(0, 12))
    assert [a for a in run_seed(151).actions if a[0] != "store_outage"] == actions
