"""Greedy (Caruana) selection, top-k, member allocation, member replay and saved predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hpwf.workflow import _predictions as predictions
from hpwf.workflow import Ensemble, Member, MemberObjective
from hpwf.errors import ConfigError
from hpwf.ensembles._selection import Selection, allocate, combine, greedy, top_k
from hpwf.workflow._trial import Trial


def planted() -> tuple[np.ndarray, dict[int, dict[str, np.ndarray]]]:
    """Trials 3 and 5 err in opposite directions (together: unbiased); 0 is noisy; 1 is bad."""
    rng = np.random.default_rng(0)
    y = rng.normal(size=400)
    noise = rng.normal(scale=0.6, size=400)
    quarter = np.full(400, 0.25)
    return y, {
        0: {"y": y, "mean": y + noise, "var": np.full(400, 0.36)},
        1: {"y": y, "mean": y + 2.0, "var": quarter},
        3: {"y": y, "mean": y + 0.5, "var": quarter},
        5: {"y": y, "mean": y - 0.5, "var": quarter},
    }


def test_greedy_picks_the_complementary_pair() -> None:
    _, cands = planted()
    sel = greedy(cands, size=2, metric="nll")
    assert sel.weights == {3: 0.5, 5: 0.5}  # first the best single (3, tie with 5 -> lower number), then 5
    assert sel.trace[1] < sel.trace[0] == pytest.approx(sel.single[3])
    assert min(sel.single, key=lambda k: sel.single[k]) == 3
    ten = greedy(cands, size=10, metric="nll")
    assert set(ten.weights) == {3, 5} and ten.weights[3] == pytest.approx(0.5)
    assert sum(ten.weights.values()) == pytest.approx(1.0)


def test_greedy_with_replacement_repeats_a_dominant_trial() -> None:
    y = np.linspace(-1, 1, 50)
    cands = {0: {"y": y, "mean": y, "var": np.full(50, 0.01)}, 1: {"y": y, "mean": y + 1, "var": np.full(50, 0.01)}}
    assert greedy(cands, size=4).weights == {0: 1.0}


def test_greedy_classification_and_named_metrics() -> None:
    y = np.array([0, 1] * 50)
    right, wrong = np.eye(2)[y] * 0.8 + 0.1, np.eye(2)[1 - y] * 0.8 + 0.1
    half = np.where(np.arange(100)[:, None] < 50, right, wrong)
    cands = {0: {"y": y, "probs": half}, 1: {"y": y, "probs": right}, 2: {"y": y, "probs": wrong}}
    assert greedy(cands, size=1, metric="accuracy").weights == {1: 1.0}  # later rounds tie (accuracy is flat)
    assert greedy(cands, size=3, metric="brier").weights == {1: 1.0}
    with pytest.raises(ValueError, match="crps"):
        greedy(cands, size=1, metric="crps")
    assert greedy(cands, size=1, metric=lambda yy, c: -float(np.mean(c["probs"][yy == 0, 1]))).weights == {2: 1.0}


def test_greedy_refuses_different_validation_sets() -> None:
    _, cands = planted()
    cands[7] = {"y": np.zeros(400), "mean": np.zeros(400), "var": np.ones(400)}
    with pytest.raises(ValueError, match="trial 7"):
        greedy(cands, size=2)


def test_top_k_and_allocation() -> None:
    assert top_k({0: 0.3, 1: 0.9, 2: 0.5}, 2, maximize=True).weights == {1: 0.5, 2: 0.5}
    assert allocate({3: 0.5, 5: 0.5}, 5) == [3, 3, 3, 5, 5]
    assert allocate({3: 0.7, 5: 0.2, 9: 0.1}, 3) == [3, 3, 5]
    c = combine([{"mean": np.array([0.0]), "var": np.array([1.0])}, {"mean": np.array([4.0]), "var": np.array([1.0])}],
                [3, 1])
    assert c["mean"][0] == pytest.approx(1.0) and c["epistemic"][0] == pytest.approx(3.0)


def test_ensemble_declarations_are_checked() -> None:
    with pytest.raises(ConfigError, match="select"):
        Ensemble(select="best")
    with pytest.raises(ConfigError, match="size"):
        Ensemble(size=4)  # size is greedy's
    with pytest.raises(ConfigError, match="members= needs train="):
        Ensemble(members=3)
    with pytest.raises(ConfigError, match="calibrate"):
        Ensemble(select="greedy", calibrate="isotonic")
    with pytest.raises(ConfigError, match="metric"):
        Ensemble(select="greedy", metric="auc")
    assert Ensemble(select="greedy", size=6, metric="crps", calibrate="conformal").k == 5


def build_model(trial) -> dict:  # a model builder as an objective would write it  # type: ignore[no-untyped-def]
    return {"width": trial.suggest_int("width", 8, 64, log=True), "lr": trial.suggest_float("lr", 1e-4, 1e-1),
            "act": trial.suggest_categorical("act", ["relu", "tanh"]),
            "drop": trial.suggest_uniform("drop", 0.0, 0.5)}


def make_trial(folder: Path, attrs: dict) -> Trial:  # type: ignore[type-arg]
    trial = Trial(7, {}, {}, seed=0, folder=folder, request=lambda m: False)
    trial.user_attrs.update(attrs)
    return trial


def test_member_replays_through_the_objectives_builder(tmp_path: Path) -> None:
    config = {"width": 32, "lr": 0.01, "act": "tanh", "drop": 0.2}
    trial = make_trial(tmp_path, {"member": 2, "config": config, "source_trial": 11, "member_seed": 2})
    member = Member(trial)
    assert build_model(member) == config
    assert member.should_prune() is False
    with pytest.raises(KeyError, match="'depth' is not in its configuration .from trial 11."):
        member.suggest_int("depth", 1, 4)


def test_member_objective_records_parameters_and_source(tmp_path: Path) -> None:
    import json

    config = {"width": 16, "lr": 0.1, "act": "relu", "drop": 0.0}
    trial = make_trial(tmp_path, {"member": 0, "config": config, "source_trial": 4, "member_seed": 9})
    assert MemberObjective(lambda m: build_model(m)["lr"])(trial) == 0.1
    assert trial.params == config  # the agent writes params.json from it
    assert json.loads((tmp_path / "member.json").read_text()) == {
        "member": 0, "source_trial": 4, "seed": 9, "params": config}
    with pytest.raises(RuntimeError, match="no member attributes"):
        MemberObjective(lambda m: 0.0)(make_trial(tmp_path, {}))


def test_trial_saves_predictions_per_split(tmp_path: Path) -> None:
    trial = make_trial(tmp_path, {})
    y = np.arange(5.0)
    assert trial.save_predictions("val", y=y, mean=y, var=np.ones(5)).name == "predictions_val.npz"
    assert trial.save_predictions(y=y, probs=np.full((5, 2), 0.5)).name == "predictions.npz"
    loaded = predictions.load(tmp_path, "val")
    assert loaded is not None and np.array_equal(loaded["mean"], y)
    assert predictions.load(tmp_path, "cal") is None
    with pytest.raises(ValueError, match="split"):
        trial.save_predictions("train", y=y, mean=y)
    with pytest.raises(ValueError, match="var has 4 rows"):
        trial.save_predictions("cal", y=y, mean=y, var=np.ones(4))
    with pytest.raises(ValueError, match="mean= .regression. or probs="):
        trial.save_predictions("cal", y=y)


def test_greedy_trace_is_the_score_of_the_weighted_mixture() -> None:
    from hpwf.ensembles import _uq as uq

    y, cands = planted()
    rng = np.random.default_rng(3)
    for k in range(6, 12):  # more candidates with random biases and spreads
        cands[k] = {"y": y, "mean": y + rng.normal(0, 0.7, 400), "var": np.full(400, rng.uniform(0.1, 1.0))}
    sel = greedy(cands, size=7)
    chosen = sorted(sel.weights)
    c = combine([cands[k] for k in chosen], [sel.weights[k] for k in chosen])
    assert sel.rounds is not None  # the kept prefix's score is its best, and the mixture's
    assert sel.trace[sel.rounds - 1] == pytest.approx(uq.gaussian_nll(y, c["mean"], c["var"]), rel=1e-9)
    assert sel.trace[sel.rounds - 1] == min(sel.trace)
    assert sel.trace[0] == pytest.approx(min(sel.single.values()), rel=1e-12)


def test_greedy_sums_are_centred_for_large_offset_targets() -> None:
    """Defect 3: E[m^2] - mean^2 of raw means loses every digit when targets sit at 1e8."""
    y, cands = planted()
    shifted = {k: {**c, "y": c["y"] + 1e8, "mean": c["mean"] + 1e8} for k, c in cands.items()}
    plain, offset = greedy(cands, size=6), greedy(shifted, size=6)
    assert offset.weights == plain.weights
    assert offset.trace == pytest.approx(plain.trace, abs=1e-6)


def test_greedy_returns_the_best_prefix_not_the_last_round() -> None:
    """Defect 4: with replacement the score rises after its minimum; Caruana keeps the best prefix."""
    _, cands = planted()
    sel = greedy(cands, size=3, metric="nll")
    assert sel.trace[2] > sel.trace[1]  # round 3 made the mixture worse ...
    assert sel.weights == {3: 0.5, 5: 0.5} and sel.rounds == 2  # ... so the two-round prefix is returned
    loose = greedy(cands, size=3, metric="nll", tolerance=10.0)
    assert loose.rounds == 1 and loose.weights == {3: 1.0}  # the shortest prefix within the tolerance


def test_greedy_starts_from_top_k_and_keeps_distinct_members() -> None:
    y = np.linspace(-1, 1, 50)
    cands = {0: {"y": y, "mean": y, "var": np.full(50, 0.01)}, 1: {"y": y, "mean": y + 1, "var": np.full(50, 0.01)},
             2: {"y": y, "mean": y + 0.1, "var": np.full(50, 0.02)}}
    assert greedy(cands, size=4).weights == {0: 1.0}  # collapses to one trial: no epistemic spread
    two = greedy(cands, size=4, min_distinct=2)
    assert len(two.weights) >= 2 and 1 not in two.weights
    top = greedy(cands, size=2, init=2)
    assert top.trace[0] == pytest.approx(top.single[0]) and set(top.weights) <= {0, 2}
    with pytest.raises(ValueError, match="min_distinct"):
        greedy(cands, size=2, min_distinct=4)


def test_bagged_greedy_averages_weights_over_resamples() -> None:
    _, cands = planted()
    bagged = greedy(cands, size=4, bags=8, seed=1)
    assert sum(bagged.weights.values()) == pytest.approx(1.0)
    assert bagged.weights[3] + bagged.weights[5] > 0.9 and bagged.bags == 8


def test_a_recorded_selections_weights_sum_to_one_as_a_reader_combines_them() -> None:
    record = Selection("greedy", {4: 1 / 3, 7: 1 / 3, 9: 1 / 3}, metric="nll").as_json()
    assert sum(record["weights"].values()) == pytest.approx(1.0)  # rounded to 6 digits they summed to 0.999999
    assert list(record["weights"]) == ["4", "7", "9"]
