"""Two runs sharing one study under simulation (`hpwf.sim._shared_study`): two coordinators, each
with its own agents and run directory, on one storage, interleaved in virtual time, with faults
(a coordinator frozen until the other sees its heartbeat stale, crashes and resumes)."""

from __future__ import annotations

import pytest

from hpwf.engine.outcomes import Outcomes
from hpwf.rundir import FAIL_REASON_ATTR, RUN_ATTR
from hpwf.sim import Config, run_seed
from hpwf.sim._shared_study import drawn, run_shared

STALE_SEED = 64  # run b's coordinator freezes for 12 heartbeats: run a fails its trial 1 as stale


def test_two_runs_sharing_one_study_keep_every_invariant() -> None:
    failed = [f"{o.replay_line()}: {o.violations[0]}" for seed in range(60)
              if (o := run_seed(seed, shared=True)).violations]
    assert not failed, "\n".join(failed)


def test_one_seed_in_ten_of_the_default_draw_is_two_runs_on_one_study() -> None:
    assert 25 <= sum(drawn(seed) for seed in range(400)) <= 55


def test_a_frozen_coordinators_trials_are_run_again_by_the_other_each_run_its_own_budget() -> None:
    shared, actions = run_shared(STALE_SEED, Config.draw(STALE_SEED))
    assert (1, "freeze_coordinator", 6.0) in actions and shared.violations == []
    trials = shared.worlds[0].study.get_trials(deepcopy=False)
    stale = [t for t in trials if str(t.user_attrs.get(FAIL_REASON_ATTR, "")).startswith("stale")]
    assert stale and all(t.user_attrs[RUN_ATTR] == "sim-run-b" for t in stale)
    for world in shared.worlds:  # each run finished exactly its own n_trials (README: a budget per run)
        ok = [t for t in trials if t.user_attrs.get(RUN_ATTR) == world.config.run_id and t.state.name in ("COMPLETE", "PRUNED")]
        assert len(ok) == world.config.n_trials


def test_the_simulator_catches_defect_8_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the check for a trial another run finished removed (defect 8), the shared study's
    schedule trips the first invariant: an exception escapes ``step``."""
    monkeypatch.setattr(Outcomes, "finished_elsewhere", lambda self, trial: False)
    outcome = run_seed(STALE_SEED, shared=True)
    assert any("an exception escaped Coordinator.step" in v for v in outcome.violations), outcome.violations


@pytest.mark.parametrize("seed", [4_005_176, 4_001_948])
def test_a_result_for_a_trial_the_other_run_failed_as_stale_records_no_parameters(seed: int) -> None:
    """Found by the 30-minute soak: with sampling ahead, the Done of a trial that the other run had
    failed as stale recorded its used proposals into the finished trial, and Optuna's
    UpdateFinishedTrialError escaped `Coordinator.step`."""
    outcome = run_seed(seed, shared=True)
    assert outcome.shared and outcome.config.sample_ahead
    assert outcome.violations == []
