"""Tree math on parameter dicts: algebra, flattening, hashing."""

import pytest
import torch

from landscape_core import params as P


def _tree(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g)}


def test_add_scaled_and_lincomb_match_manual_math():
    a, b, c = _tree(0), _tree(1), _tree(2)
    out = P.lincomb(a, [(0.5, b), (-2.0, c)])
    for k in a:
        torch.testing.assert_close(out[k], a[k] + 0.5 * b[k] - 2.0 * c[k])
    torch.testing.assert_close(P.add_scaled(a, b, 3.0)["w"], a["w"] + 3.0 * b["w"])
    assert torch.equal(a["w"], _tree(0)["w"])  # inputs untouched


def test_dot_norm_flatten_roundtrip():
    a, b = _tree(0), _tree(1)
    fa, fb = P.flatten(a), P.flatten(b)
    assert P.dot(a, b) == pytest.approx(float(fa.double() @ fb.double()), rel=1e-12)
    assert P.norm(a) == pytest.approx(float(fa.double().norm()), rel=1e-12)
    back = P.unflatten(fa, a)
    assert all(torch.equal(back[k], a[k]) for k in a)
    with pytest.raises(ValueError, match="entries"):
        P.unflatten(fa[:-1], a)


def test_key_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in keys"):
        P.add_scaled({"a": torch.zeros(1)}, {"b": torch.zeros(1)})


def test_weights_hash_sensitive_to_values_dtype_and_names():
    a = _tree(0)
    h = P.weights_hash(a)
    assert h == P.weights_hash({k: v.clone() for k, v in reversed(list(a.items()))})
    b = {k: v.clone() for k, v in a.items()}
    b["w"][0, 0] += 1e-7
    assert P.weights_hash(b) != h
    assert P.weights_hash({k: v.double() for k, v in a.items()}) != h
    assert P.weights_hash({"x" + k: v for k, v in a.items()}) != h


def test_randn_like_is_seeded():
    a = _tree(0)
    d1 = P.randn_like(a, torch.Generator().manual_seed(5))
    d2 = P.randn_like(a, torch.Generator().manual_seed(5))
    d3 = P.randn_like(a, torch.Generator().manual_seed(6))
    assert all(torch.equal(d1[k], d2[k]) for k in a)
    assert not torch.equal(d1["w"], d3["w"])
