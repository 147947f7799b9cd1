"""Run health: divergence / chance-level verdicts during training and the import plausibility check."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from landscape_core.data import load_dataset
from landscape_core.health import (
    STALL_STEPS,
    Divergence,
    ImportCheck,
    chance_band,
    check_import,
    check_training,
    run_health,
)
from landscape_core.runs import RUN_JSON, load_run
from landscape_core.training import TrainConfig, train

KW = dict(num_classes=10, lr=1.0, batch_size=64, n_test=450, optimizer="sgd")


def _rows(*pairs, steps_per_epoch: int = STALL_STEPS):
    return [{"epoch": i + 1, "step": (i + 1) * steps_per_epoch, "train_loss": loss, "test_acc": acc}
            for i, (loss, acc) in enumerate(pairs)]


def test_chance_band_is_three_binomial_sd():
    p, m = chance_band(10, 450)
    assert p == pytest.approx(0.1)
    assert m == pytest.approx(3 * math.sqrt(0.1 * 0.9 / 450))  # 0.04243
    with pytest.raises(ValueError, match="num_classes"):
        chance_band(1, 10)


def test_learning_run_is_healthy():
    assert check_training(_rows((1.2, 0.6), (0.5, 0.9)), **KW) is None
    assert check_training([], **KW) is None


def test_memorising_is_not_diverging():
    # grokking-like: 97 classes, train set fitted, test accuracy at chance for many epochs, loss flat
    rows = [{"epoch": e, "step": e * STALL_STEPS, "train_loss": 0.01, "train_acc": 1.0, "test_acc": 0.01}
            for e in (1, 2, 3)]
    assert check_training(rows, **{**KW, "num_classes": 97}) is None
    rows[-1]["train_acc"] = 0.011  # train accuracy at chance as well: it is not learning
    assert check_training(rows, **{**KW, "num_classes": 97}).status == "diverged"


def test_without_accuracy_only_the_loss_rules_apply():
    nan = float("nan")  # mse losses report no accuracy
    assert check_training(_rows((2.3, nan), (2.3, nan)), **KW) is None
    assert check_training(_rows((1.0, nan), (float("inf"), nan)), **KW).reason == "non-finite"
    one = {**KW, "num_classes": 1}
    assert check_training(_rows((5.0, 0.1), (5.0, 0.1)), **one) is None


def test_non_finite_and_exploded_loss_stop():
    v = check_training(_rows((1.2, 0.6), (float("nan"), 0.1)), **KW)
    assert (v.status, v.reason, v.stop, v.epoch) == ("diverged", "non-finite", True, 2)
    # 2 ln 10 = 4.605: a loss of 4.7 is worse than a uniform guess twice over, even at 60% accuracy
    v = check_training(_rows((4.7, 0.6)), **KW)
    assert (v.reason, v.stop) == ("exploded", True)
    assert "4.61" in v.message
    assert check_training(_rows((4.5, 0.6)), **KW) is None


def test_collapse_to_chance_stops_and_explains_lr_batch_and_2_over_lr():
    v = check_training(_rows((3.08, 0.376), (2.41, 0.102)), **KW, lambda_max=35.0)
    assert (v.status, v.reason, v.stop) == ("diverged", "collapsed", True)
    for part in ("lr=1", "batch size 64", "largest measured lambda_max = 35 > 2/lr = 2", "10.2%", "37.6%", "450 test examples"):
        assert part in v.message
    assert "\n" not in v.message
    # just above the band (0.1 + 0.0424) is not chance
    assert check_training(_rows((3.0, 0.376), (2.4, 0.143)), **KW) is None
    # without sharpness tracking it says so
    assert "lambda_max not tracked" in check_training(_rows((3.0, 0.376), (2.4, 0.1)), **KW).message


def test_chance_with_falling_loss_keeps_training_but_stall_stops():
    v = check_training(_rows((2.30, 0.11)), **KW)
    assert (v.status, v.stop) == ("chance", False)
    v = check_training(_rows((2.295, 0.111), (2.284, 0.127)), **KW)  # -0.48% per epoch: still learning
    assert (v.status, v.stop) == ("chance", False)
    v = check_training(_rows((2.301, 0.104), (2.300, 0.104)), **KW)  # -0.04% over STALL_STEPS: stalled
    assert (v.status, v.reason, v.stop) == ("diverged", "stalled", True)


def test_a_plateau_at_the_start_is_not_a_stall_until_enough_steps():
    """Full batch (one step per epoch): a fresh Transformer sits on the ln C plateau for tens of steps
    before its loss falls. Flat for 50 steps is not a stall; flat for STALL_STEPS steps is."""
    ln47 = math.log(47)
    kw = {**KW, "num_classes": 47, "n_test": 552}
    flat = [(ln47 - 1e-4 * i, 0.02) for i in range(50)]
    v = check_training(_rows(*flat, steps_per_epoch=1), **kw)
    assert (v.status, v.stop) == ("chance", False)
    flat = [(ln47 - 1e-6 * i, 0.02) for i in range(STALL_STEPS + 2)]
    v = check_training(_rows(*flat, steps_per_epoch=1), **kw)
    assert (v.status, v.reason, v.stop) == ("diverged", "stalled", True)


def test_verdict_round_trip_and_run_health():
    v = check_training(_rows((3.0, 0.4), (2.4, 0.1)), **KW)
    assert Divergence.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    assert run_health({"status": "diverged", "health": v.to_dict()}) == {"status": "diverged", "message": v.message}
    assert run_health({"status": "ok", "health": None}) is None
    assert run_health({}) is None


def test_sgd_lr_1_on_digits_stops_early_and_is_marked(tmp_path):
    cfg = TrainConfig(dataset={"name": "digits"}, optimizer="sgd", lr=1.0, epochs=6, snapshots=4, seed=0)
    res = train(cfg, out_dir=tmp_path, name="lr1")
    assert res.meta["status"] == "diverged"
    assert len(res.history) < cfg.epochs  # stopped early
    assert res.history[-1]["test_acc"] <= 0.1 + 3 * math.sqrt(0.09 / 450)
    saved = json.loads((res.path / RUN_JSON).read_text())
    assert saved["status"] == "diverged" and "lr=1" in saved["health"]["message"]
    assert load_run(res.path).meta["health"]["reason"] in ("collapsed", "exploded", "stalled")


def test_healthy_training_is_marked_ok():
    res = train(TrainConfig(dataset={"name": "moons", "n_samples": 200}, width=8, depth=1, lr=0.1, epochs=3,
                            batch_size=20, snapshots=0))
    assert res.meta["status"] == "ok" and res.meta["health"] is None


@pytest.fixture(scope="module")
def shipped():
    run = load_run("checkpoints/digits-sgd")
    X, y = load_dataset(run.meta["dataset"]).test
    return run.meta["model"], run.model.state_dict(), X, y


def test_import_of_tanh_weights_as_relu_names_the_activation(shipped):
    spec, state, X, y = shipped
    ok = check_import(spec, state, (X, y), num_classes=10)
    assert ok.status == "ok" and ok.cause is None
    assert ok.test_acc == pytest.approx(0.9711, abs=1e-3)  # run.json's final test_acc, 437/450
    relu = copy.deepcopy(spec)
    relu["kwargs"]["activation"] = "relu"
    bad = check_import(relu, state, (X, y), num_classes=10)
    assert (bad.status, bad.cause, bad.suggestion) == ("suspect", "activation", {"activation": "tanh"})
    assert bad.test_acc < 0.8  # 74.7% (336/450) on this data
    assert bad.alternatives["activation=tanh"] == ok.test_acc  # same weights, same data, same arithmetic
    assert "tanh" in bad.message and "relu" in bad.message
    assert ImportCheck.from_dict(json.loads(json.dumps(bad.to_dict()))) == bad


def test_import_diagnoses_normalisation_and_dataset(shipped):
    spec, state, X, y = shipped
    shifted = check_import(spec, state, (X * 0.001, y), num_classes=10)  # inputs squashed to ~0
    assert (shifted.status, shifted.cause) == ("suspect", "normalisation")
    assert shifted.alternatives["inputs standardised"] > 0.9
    wrong = check_import(spec, state, (X, torch.roll(y, 1)), num_classes=10, claimed={"test_acc": 0.97})
    assert (wrong.status, wrong.cause) == ("suspect", "dataset")
    assert "97.0%" in wrong.message


def test_the_import_pipeline_call_flags_the_relu_import(tmp_path):
    """The call the importer makes after evaluating (see health.check_import): today's silent 74.7% case."""
    from landscape_core.data import analysis_subset
    from landscape_core.uploads import EVAL_SAMPLES, import_upload

    src = "checkpoints/digits-sgd/model.safetensors"
    path = import_upload("model.safetensors", src, workspace=tmp_path, dataset="digits",
                         model_spec={"name": "mlp", "width": 64, "depth": 3, "activation": "relu"})
    run = load_run(path)
    assert run.meta["final"]["test_acc"] < 0.8  # imported "successfully" at 74.7%
    chk = check_import(run.meta["model"], run.model.state_dict(),
                       analysis_subset(*run.data.test, EVAL_SAMPLES, seed=0), num_classes=run.data.num_classes,
                       claimed=None)  # a bare state dict claims nothing; a run zip passes its run.json "final"
    assert (chk.status, chk.cause, chk.suggestion) == ("suspect", "activation", {"activation": "tanh"})
    assert chk.test_acc == pytest.approx(run.meta["final"]["test_acc"])  # same subset as the importer's
    assert chk.alternatives["activation=tanh"] > 0.95
