"""Sequence / signal models: references (torch's own LSTM / GRU cells), causal masking, registry, and the
existing engine on them (dense Hessian, GGN, empirical Fisher by vmap, Lanczos, filter-normalised
directions, surfaces, trajectories, SAM training)."""

import pytest
import torch
from torch import nn

from landscape_core.curvature_operators import curvature_operator
from landscape_core.directions import random_direction
from landscape_core.fisher import empirical_fisher_operator
from landscape_core.functional import LossFunction
from landscape_core.hessian import hessian_operator
from landscape_core.lanczos import lanczos
from landscape_core.models import TOKEN_MODELS, build_model, model_spec
from landscape_core.params import model_hash
from landscape_core.seqmodels import GRUClassifier, LSTMClassifier, SelfAttention, SignalCNN, TinyTransformer

TOL = dict(atol=1e-10, rtol=1e-8)  # float64 products of a few hundred terms


def test_lstm_and_gru_match_torch_reference_cells():
    torch.manual_seed(0)
    x = torch.randint(0, 5, (4, 6))
    for ours, ref in ((LSTMClassifier((6,), 3, 5, width=7, embed=4), nn.LSTM(4, 7, batch_first=True)),
                      (GRUClassifier((6,), 3, 5, width=7, embed=4), nn.GRU(4, 7, batch_first=True))):
        with torch.no_grad():
            ref.weight_ih_l0.copy_(ours.ih[0].weight)
            ref.bias_ih_l0.copy_(ours.ih[0].bias)
            ref.weight_hh_l0.copy_(ours.hh[0].weight)
            ref.bias_hh_l0.zero_()  # our recurrent Linear has no bias (the input one carries it)
            h, _ = ref(ours.embed(x))
            assert torch.allclose(ours(x), ours.head(h[:, -1]), atol=1e-6)


def test_causal_attention_ignores_later_positions():
    torch.manual_seed(0)
    att = SelfAttention(8, 2, causal=True)
    x = torch.randn(3, 5, 8)
    x2 = x.clone()
    x2[:, 3:] = torch.randn(3, 2, 8)
    a, b = att(x), att(x2)
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-6)
    assert not torch.allclose(a[:, 3:], b[:, 3:], atol=1e-3)
    full = SelfAttention(8, 2, causal=False)
    assert not torch.allclose(full(x)[:, :3], full(x2)[:, :3], atol=1e-3)


def test_registry_builds_the_new_models_and_rejects_bad_inputs():
    assert set(TOKEN_MODELS) == {"transformer", "lstm", "gru"}
    m = build_model(model_spec("transformer", (3,), 7, vocab_size=8, width=16, heads=4, depth=2), seed=1)
    assert m(torch.randint(0, 8, (5, 3))).shape == (5, 7)
    m2 = build_model(model_spec("transformer", (3,), 7, vocab_size=8, width=16, heads=4, depth=2), seed=1)
    assert model_hash(m) == model_hash(m2)
    assert build_model(model_spec("cnn1d", (1, 40), 10), seed=0)(torch.randn(2, 1, 40)).shape == (2, 10)
    with pytest.raises(ValueError, match="token sequences"):
        TinyTransformer((1, 8, 8), 10, vocab_size=4)
    with pytest.raises(ValueError, match="vocab_size"):
        LSTMClassifier((5,), 2, vocab_size=None)
    with pytest.raises(ValueError, match="not divisible by heads=3"):
        TinyTransformer((3,), 5, 6, width=16, heads=3)
    with pytest.raises(ValueError, match="signal input"):
        SignalCNN((1, 8, 8), 10)


def _token_problem(kind: str):
    torch.manual_seed(0)
    if kind == "transformer":
        m = TinyTransformer((3,), 5, 6, width=4, heads=2, mlp_ratio=1)
        X = torch.randint(0, 6, (10, 3))
        y = torch.randint(0, 5, (10,))
    else:
        m = LSTMClassifier((4,), 2, 2, width=3, embed=2)
        X = torch.randint(0, 2, (10, 4))
        y = X.sum(1) % 2
    return m.eval(), X, y


def fd_hessian_columns(lf: LossFunction, V: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    """``H V`` by central differences of the full-batch gradient (float64), independent of the operators.

    Error O(h^2 * third derivatives) ~ 1e-10 plus rounding ~ eps * |g| / h ~ 1e-11. (Not
    ``torch.func.hessian``: in torch 2.14 its jacrev-over-jacrev through ``layer_norm`` with differentiated
    affine parameters disagrees with finite differences by ~0.05 on this model, while plain double
    backward and ``jvp(grad)`` agree with them to 1e-11.)
    """
    p0 = lf.params0

    def grad_at(x):
        x = x.clone().requires_grad_(True)
        d, i = {}, 0
        for k, v in p0.items():
            d[k] = x[i : i + v.numel()].reshape(v.shape)
            i += v.numel()
        return torch.autograd.grad(lf(d), x)[0]

    x0 = torch.cat([v.reshape(-1) for v in p0.values()])
    return torch.stack([(grad_at(x0 + h * v) - grad_at(x0 - h * v)) / (2 * h) for v in V.T], dim=1)


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_curvature_on_token_models_matches_finite_differences(kind):
    m, X, y = _token_problem(kind)
    h0 = model_hash(m)
    lf = LossFunction(m, X, y, batch_size=4, dtype=torch.float64)
    assert lf.X.dtype == torch.int64  # token ids stay integers
    n = sum(v.numel() for v in lf.params0.values())
    V = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    HV = fd_hessian_columns(lf, V)
    scale = float(HV.abs().max())
    for mode in ("fwd_rev", "rev_rev"):
        assert torch.allclose(hessian_operator(lf, mode=mode).matmat(V), HV, atol=1e-7 * scale, rtol=0)
    op = hessian_operator(lf)
    top = lanczos(op, 1, tol=1e-8)
    v = top.eigenvectors[:, :1]
    rq = float(v[:, 0] @ fd_hessian_columns(lf, v)[:, 0])  # Rayleigh quotient from finite differences
    assert top.converged and abs(rq - float(top.eigenvalues[0])) <= 1e-6 * abs(rq)
    G = curvature_operator("ggn", lf)
    assert torch.all(torch.einsum("ij,ij->j", V, G.matmat(V)) >= 0)  # PSD quadratic forms
    E1 = empirical_fisher_operator(lf, method="per_example").matmat(V)  # vmap of per-example gradients
    E2 = empirical_fisher_operator(lf, method="output").matmat(V)
    assert torch.allclose(E1, E2, **TOL)
    assert model_hash(m) == h0


def test_filter_normalised_direction_covers_embeddings_and_layernorm():
    m = TinyTransformer((3,), 5, 6, width=8, heads=2)
    p = {k: v.detach() for k, v in m.named_parameters()}
    d = random_direction(p, seed=0)
    for k in ("embed.weight", "pos", "blocks.0.attn.qkv.weight"):  # 2-D: each row to its weight row's norm
        assert torch.allclose(d[k].norm(dim=1), p[k].norm(dim=1), rtol=1e-5)
    assert float(d["blocks.0.ln1.weight"].abs().sum()) == 0.0  # 1-D (LayerNorm) zeroed by default
    kept = random_direction(p, seed=0, ignore_1d=False)
    assert torch.allclose(kept["blocks.0.ln1.weight"].norm(), p["blocks.0.ln1.weight"].norm(), rtol=1e-5)


@pytest.mark.parametrize("model,dataset,opt", [
    ("transformer", {"name": "modular_addition", "modulus": 7, "test_fraction": 0.5}, "sam"),
    ("lstm", {"name": "parity", "seq_len": 5, "n_samples": 32}, "adamw"),
])
def test_train_surface_and_trajectory_on_sequence_tasks(tmp_path, model, dataset, opt):
    from landscape_core.analyses.surface import compute_surface
    from landscape_core.analyses.trajectory import project_trajectory
    from landscape_core.runs import load_run
    from landscape_core.training import TrainConfig, train

    cfg = TrainConfig(dataset=dataset, model=model, width=8, depth=1, heads=2, optimizer=opt,
                      lr=0.01, weight_decay=0.1, batch_size=8, epochs=3, snapshots=4, sharpness_every=2,
                      sharpness_samples=16)
    res = train(cfg, path=tmp_path / "run")
    assert all(r["sharpness"] is not None and r["weight_norm"] > 0 for r in res.history)
    assert res.meta["grad_evals"] == res.meta["steps"] * (2 if opt == "sam" else 1)
    run = load_run(tmp_path / "run")
    assert model_hash(run.model) == model_hash(res.model)
    s = compute_surface(run, dims=2, grid=3, samples=None, use_cache=False)
    lf = LossFunction(run.model, *run.train_data)
    assert abs(float(s.to_dict()["loss"][1][1]) - float(lf(lf.params0))) < 1e-5  # grid centre = theta0
    proj = project_trajectory(run, samples=None)
    assert len(proj.to_dict()["steps"]) == 4
