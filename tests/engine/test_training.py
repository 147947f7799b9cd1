"""Training loop: determinism, history, cancel, snapshots, equal init/data order in compare, budgets."""

from __future__ import annotations

import pytest
import torch

from landscape_core.data import load_dataset
from landscape_core.functional import LossFunction
from landscape_core.models import build_model
from landscape_core.params import model_hash
from landscape_core.runs import load_run
from landscape_core.training import TrainConfig, compare, snapshot_steps, train

MOONS = {"name": "moons", "n_samples": 200, "noise": 0.2}




def _cfg(**kw) -> TrainConfig:
    base = dict(dataset=MOONS, model="mlp", width=8, depth=1, activation="tanh", optimizer="sgd", lr=0.1,
                batch_size=30, epochs=3, snapshots=4, seed=0)
    return TrainConfig(**{**base, **kw})


def test_same_config_same_weights_and_seed_changes_them():
    a, b = train(_cfg()), train(_cfg())
    assert model_hash(a.model) == model_hash(b.model)
    assert a.history == [{**h, "seconds": a.history[i]["seconds"]} for i, h in enumerate(b.history)]
    c = train(_cfg(seed=1))
    assert model_hash(c.model) != model_hash(a.model)
    d = train(_cfg(seed=1, init_seed=0))  # same init as a, other data order
    first = lambda r: r.trajectory[0]["net.1.weight"][0]  # noqa: E731
    assert torch.equal(first(a), first(d)) and not torch.equal(first(a), first(c))
    assert model_hash(d.model) not in (model_hash(a.model), model_hash(c.model))


def test_history_fields_and_final_metrics_match_an_independent_evaluation():
    res = train(_cfg())
    n_train = len(load_dataset(MOONS).train[1])
    steps_per_epoch = -(-n_train // 30)
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    for i, h in enumerate(res.history, 1):
        assert set(h) >= {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds",
                          "grad_evals"}
        assert h["grad_evals"] == i * steps_per_epoch
        assert h["lr"] == 0.1
    assert res.meta["steps"] == res.meta["grad_evals"] == 3 * steps_per_epoch
    bundle = load_dataset(MOONS)
    tl, ta = LossFunction(res.model, *bundle.train).evaluate()
    vl, va = LossFunction(res.model, *bundle.test).evaluate()
    f = res.final
    assert f["train_loss"] == pytest.approx(tl, rel=1e-6) and f["train_acc"] == ta
    assert f["test_loss"] == pytest.approx(vl, rel=1e-6) and f["test_acc"] == va
    assert f["gen_gap"] == pytest.approx(vl - tl, rel=1e-6)
    assert f["acc_gap"] == pytest.approx(ta - va)
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert set(res.meta["timings"]) == {"total_seconds", "seconds_per_epoch"}
    assert res.meta["config"]["init_seed"] == 0 and res.meta["config"]["optimizer"] == "sgd"


def test_sam_counts_two_grad_evals_per_step_and_rho_zero_equals_sgd():
    sgd, sam = train(_cfg()), train(_cfg(optimizer="sam", rho=0.05))
    assert sam.meta["grad_evals"] == 2 * sam.meta["steps"] == 2 * sgd.meta["grad_evals"]
    assert model_hash(sam.model) != model_hash(sgd.model)
    sam0 = train(_cfg(optimizer="sam", rho=0.0))
    assert model_hash(sam0.model) == model_hash(sgd.model)  # same init, same batches, rho = 0
    assert sam0.meta["grad_evals"] == sgd.meta["grad_evals"]


def test_cancel_stops_cleanly_and_saves_nothing_unless_asked(tmp_path):
    calls = [0]

    def stop_after_5() -> bool:
        calls[0] += 1
        return calls[0] > 5

    res = train(_cfg(), should_stop=stop_after_5, out_dir=tmp_path)
    assert res.cancelled and res.meta["steps"] == 5 and res.path is None
    assert list(tmp_path.iterdir()) == []
    calls[0] = 0
    res2 = train(_cfg(save_if_cancelled=True), should_stop=stop_after_5, out_dir=tmp_path, name="partial")
    assert res2.path == tmp_path / "partial" and load_run(res2.path).meta["cancelled"] is True
    snaps, steps = load_run(res2.path).trajectory()
    assert steps.tolist()[0] == 0 and steps.tolist()[-1] == 5


def test_snapshots_evenly_spaced_from_init_to_final(tmp_path):
    cfg = _cfg(snapshots=5)
    res = train(cfg, out_dir=tmp_path, name="snap")
    total = res.meta["steps"]
    run = load_run(res.path)
    snaps, steps = run.trajectory()
    assert steps.tolist() == snapshot_steps(total, 5) and len(steps) == 5
    assert steps[0] == 0 and steps[-1] == total
    init = build_model(res.meta["model"], seed=0)
    for name, p in init.named_parameters():
        assert snaps[name].shape == (5, *p.shape)
        assert torch.equal(snaps[name][0], p.detach())
        assert torch.equal(snaps[name][-1], dict(res.model.named_parameters())[name].detach())
    assert snapshot_steps(10, 3) == [0, 5, 10] and snapshot_steps(2, 12) == [0, 1, 2]


def test_compare_shares_init_and_data_order_and_grad_eval_budget_halves_sam(tmp_path):
    base = _cfg(epochs=2)
    results = compare(base, ["sgd", "adam", {"optimizer": "sam", "rho": 0.0}, "sam"], budget="steps",
                      out_dir=tmp_path)
    sgd, adam, sam0, sam = results
    for r in results[1:]:
        for name in sgd.meta["model"]["kwargs"]:
            assert r.meta["model"]["kwargs"][name] == sgd.meta["model"]["kwargs"][name]
        s1, _ = load_run(r.path).trajectory()
        s0, _ = load_run(sgd.path).trajectory()
        assert all(torch.equal(s1[k][0], s0[k][0]) for k in s0)  # same initial weights
    assert adam.meta["config"]["lr"] == 1e-3 and sgd.meta["config"]["lr"] == 0.1
    assert model_hash(sam0.model) == model_hash(sgd.model)  # same batches in the same order
    assert {r.meta["steps"] for r in results} == {sgd.meta["steps"]}
    assert sam.meta["budget"]["kind"] == "steps"

    eq = compare(base, ["sgd", "sam"], budget="grad-evals")
    assert eq[1].meta["steps"] == eq[0].meta["steps"] // 2
    assert eq[1].meta["grad_evals"] == eq[0].meta["grad_evals"] == sgd.meta["steps"]
    assert eq[1].meta["budget"] == {"kind": "grad-evals", "steps": eq[1].meta["steps"],
                                    "grad_evals": eq[0].meta["grad_evals"], "reference_steps": sgd.meta["steps"]}
    assert all(r.path is None for r in eq)


def test_progress_reports_every_epoch_with_all_keys():
    seen = []
    train(_cfg(epochs=2, batch_size=4), progress=seen.append)
    keys = {"epoch", "epochs", "step", "steps", "fraction", "train_loss", "train_acc", "test_loss", "test_acc",
            "message"}
    assert all(keys <= set(s) for s in seen)
    fr = [s["fraction"] for s in seen]
    assert fr == sorted(fr) and fr[-1] == 1.0 and fr[0] == 0.0
    assert {s["epoch"] for s in seen} == {0, 1, 2}
    assert any(s["step"] == 20 and s["event"] == "step" for s in seen)  # the ~20-step reports within an epoch
    assert [s["epoch"] for s in seen if s["event"] == "epoch"] == [1, 2]
    assert [s["event"] for s in seen][0] == "init"


def test_step_schedule_recorded_in_history():
    res = train(_cfg(epochs=4, schedule="step"))
    lrs = [h["lr"] for h in res.history]
    assert lrs[0] == pytest.approx(0.1) and lrs[1] == pytest.approx(0.01) and lrs[2] == pytest.approx(0.001)


def test_sharpness_hook_records(monkeypatch):
    calls = []

    class FakeTracker:
        def __init__(self, X, y, *, every, lr, optimizer, momentum, seed, samples):
            assert len(y) == 150 and samples == 16 and every == 3 and optimizer == "sgd" and lr == 0.1
            self.every = every

        def maybe_measure(self, step, model, optimizer):
            calls.append(step)
            return {"step": step, "lambda_max": float(step)} if step % self.every == 0 else None

    import landscape_core.training as training_module

    monkeypatch.setattr(training_module, "SharpnessTracker", FakeTracker)
    res = train(_cfg(epochs=2, sharpness_every=3, sharpness_samples=16))
    total = res.meta["steps"]
    assert calls == list(range(1, total + 1))
    assert [r["step"] for r in res.meta["sharpness"]] == list(range(3, total + 1, 3))
    assert res.history[-1]["sharpness"] == float(max(range(3, total + 1, 3)))


def test_batchnorm_stats_updated_once_per_sam_step():
    res = train(_cfg(batchnorm=True, optimizer="sam", rho=0.1, epochs=1))
    bn = res.model.net[2]
    assert int(bn.num_batches_tracked) == res.meta["steps"] == 5
    # 150 = 2 * 149 + 1 / batches of 149 leave a last batch of one, which BatchNorm cannot use: dropped
    res = train(_cfg(batchnorm=True, batch_size=149, epochs=2))
    assert res.meta["steps"] == 2 and int(res.model.net[2].num_batches_tracked) == 2
    with pytest.raises(ValueError, match="batch_size 1 is too small for BatchNorm"):
        train(_cfg(batchnorm=True, batch_size=1))


@pytest.mark.parametrize("kw,match", [
    (dict(lr=-1.0), "lr must be > 0, got -1.0"),
    (dict(optimizer="nope"), "nope"),
    (dict(epochs=0), "epochs"),
    (dict(momentum=1.5), "momentum"),
    (dict(snapshots=1), "snapshots"),
    (dict(dataset={"name": "imagenet"}), "imagenet"),
])
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        _cfg(**kw)


def test_batch_size_larger_than_dataset_names_the_value():
    with pytest.raises(ValueError, match="batch_size 99999 is larger than the 150 training examples"):
        train(_cfg(batch_size=99999))


def test_real_sharpness_tracker_matches_dense_hessian_at_the_final_step():
    from landscape_core.data import analysis_subset

    res = train(_cfg(epochs=2, sharpness_every=5, sharpness_samples=64))
    assert res.meta["steps"] == 10 and [r["step"] for r in res.meta["sharpness"]] == [5, 10]
    X, y = analysis_subset(*load_dataset(MOONS).train, 64, seed=0)
    lf = LossFunction(res.model, X, y, dtype=torch.float64)
    names = list(lf.params0)
    shapes = [lf.params0[k].shape for k in names]
    flat0 = torch.cat([lf.params0[k].reshape(-1) for k in names])

    def f(flat):
        parts, i = {}, 0
        for k, shp in zip(names, shapes):
            n = shp.numel()
            parts[k] = flat[i : i + n].reshape(shp)
            i += n
        return lf(parts)

    lam_max = float(torch.linalg.eigvalsh(torch.func.hessian(f)(flat0))[-1])
    assert res.meta["sharpness"][-1]["lambda_max"] == pytest.approx(lam_max, rel=1e-3)
    assert res.history[-1]["sharpness"] == res.meta["sharpness"][-1]["lambda_max"]
