"""The grokking lab's engine: preset config (full batch AdamW on modular addition), summary of the curves,
weight norm and lambda_max recording along training."""

import pytest

from landscape_core.data import load_dataset
from landscape_core.presets import GROKKING, grokking_config, grokking_summary
from landscape_core.training import train


def test_grokking_config_is_full_batch_adamw_on_modular_addition():
    cfg = grokking_config()
    n = len(load_dataset(cfg.dataset).train[1])
    assert cfg.batch_size == n == round(0.5 * 47 * 47)
    assert (cfg.model, cfg.optimizer, cfg.weight_decay, cfg.lr) == ("transformer", "adamw", 1.0, GROKKING["lr"])
    assert cfg.dataset["modulus"] == 47 and cfg.dataset["test_fraction"] == 0.5
    small = grokking_config(modulus=11, train_fraction=0.3, epochs=5)
    assert small.batch_size == round(0.3 * 121) and small.epochs == 5
    with pytest.raises(ValueError, match="train_fraction must be in \\[0.05, 0.95\\], got 1.5"):
        grokking_config(train_fraction=1.5)


def test_grokking_summary_finds_saturation_and_jump():
    hist = [{"step": s, "train_acc": tr, "test_acc": te, "weight_norm": w}
            for s, tr, te, w in [(10, 0.5, 0.1, 30.0), (20, 1.0, 0.2, 29.0), (30, 1.0, 0.5, 25.0),
                                 (40, 1.0, 0.97, 20.0), (50, 1.0, 0.99, 19.0)]]
    s = grokking_summary(hist)
    assert (s["train_saturated_step"], s["test_jump_step"], s["delay_steps"]) == (20, 40, 20)
    assert (s["weight_norm_start"], s["weight_norm_at_jump"], s["final_test_acc"]) == (30.0, 20.0, 0.99)
    assert grokking_summary(hist[:3])["test_jump_step"] is None


def test_grokking_run_records_weight_norm_sharpness_and_snapshots():
    cfg = grokking_config(modulus=5, width=8, heads=2, epochs=4, eval_every=2, sharpness_every=2, snapshots=3,
                          sharpness_samples=8)
    res = train(cfg)
    assert [r["step"] for r in res.history] == [2, 4]  # full batch: one step per epoch
    assert all(r["weight_norm"] > 0 and r["sharpness"] is not None for r in res.history)
    assert [m["step"] for m in res.meta["sharpness"]] == [2, 4]
    snaps, steps = res.trajectory
    assert steps.tolist() == [0, 2, 4] and "embed.weight" in snaps
    assert set(grokking_summary(res.history)) >= {"train_saturated_step", "test_jump_step"}


def test_token_datasets_and_token_models_go_together():
    from landscape_core.training import TrainConfig

    with pytest.raises(ValueError, match="dataset 'parity' has token inputs: choose model transformer, lstm, gru; got 'mlp'"):
        TrainConfig(dataset={"name": "parity"}, model="mlp")
    with pytest.raises(ValueError, match="model 'lstm' needs a token dataset .*got 'digits'"):
        TrainConfig(dataset={"name": "digits"}, model="lstm")


def test_beta2_reaches_the_adam_family_and_is_validated():
    import torch

    from landscape_core.optimizers import make_optimizer
    from landscape_core.training import TrainConfig

    p = [torch.nn.Parameter(torch.zeros(2))]
    for name in ("adam", "adamw", "sam-adam"):
        opt = make_optimizer(name, p, lr=1e-3, beta2=0.98)
        group = getattr(opt, "base_optimizer", opt).param_groups[0]
        assert group["betas"] == (0.9, 0.98)
    assert make_optimizer("adamw", p, lr=1e-3).param_groups[0]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="beta2 must be in \\[0, 1\\), got 1.0"):
        make_optimizer("adam", p, lr=1e-3, beta2=1.0)
    with pytest.raises(ValueError, match="beta2 must be in \\[0, 1\\), got 1.5"):
        TrainConfig(beta2=1.5)
