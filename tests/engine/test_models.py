"""Models: output shapes on digits/CIFAR shapes, parameter counts, registry round trip, bad names."""

from __future__ import annotations

import json

import pytest
import torch

from landscape_core.models import MLP, MODELS, build_model, count_parameters, has_batchnorm, model_spec
from landscape_core.params import model_hash

DIGITS, CIFAR = (1, 8, 8), (3, 32, 32)


@pytest.mark.parametrize("name,shape,kw", [
    ("mlp", DIGITS, dict(width=32, depth=2)),
    ("mlp", CIFAR, dict(width=16, depth=1, batchnorm=True)),
    ("cnn", DIGITS, dict(channels=4)),
    ("cnn", CIFAR, dict(channels=4, batchnorm=True)),
    ("resnet20", CIFAR, dict(width=4)),
    ("resnet20", DIGITS, dict(width=4)),
    ("mlp", (2,), dict(width=16, depth=2, activation="tanh")),
])
def test_output_shapes(name, shape, kw):
    model = build_model(model_spec(name, shape, 10, **kw), seed=0)
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(0))
    assert model(x).shape == (5, 10)
    assert not model.training


def test_mlp_parameter_count_matches_widths():
    # 64 -> 64 -> 64 -> 64 -> 10: the benchmark model
    m = MLP((1, 8, 8), 10, width=64, depth=3, activation="tanh")
    assert count_parameters(m) == (64 * 64 + 64) * 3 + 64 * 10 + 10 == 13130
    tiny = MLP((2,), 2, width=16, depth=2, activation="tanh")
    assert count_parameters(tiny) == 2 * 16 + 16 + 16 * 16 + 16 + 16 * 2 + 2 == 354
    assert count_parameters(MLP((2,), 3, depth=0)) == 2 * 3 + 3  # depth 0: logistic regression
    assert has_batchnorm(MLP((2,), 2, batchnorm=True)) and not has_batchnorm(tiny)


def test_resnet20_has_twenty_weight_layers():
    m = build_model(model_spec("resnet20", CIFAR, 10), seed=0)
    convs = [n for n, mod in m.named_modules() if isinstance(mod, torch.nn.Conv2d) and mod.kernel_size == (3, 3)]
    linears = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    assert len(convs) + len(linears) == 20
    assert 270_000 < count_parameters(m) < 275_000  # ~0.27M as in He et al. 2016


def test_registry_round_trip_through_json_and_seeded_init():
    spec = model_spec("cnn", DIGITS, 10, channels=4, activation="tanh")
    spec2 = json.loads(json.dumps(spec))
    a, b = build_model(spec, seed=7), build_model(spec2, seed=7)
    assert model_hash(a) == model_hash(b)
    assert model_hash(build_model(spec, seed=8)) != model_hash(a)
    assert spec2 == {"name": "cnn", "kwargs": {"input_shape": [1, 8, 8], "num_classes": 10, "channels": 4,
                                               "activation": "tanh"}}
    state = a.state_dict()
    c = build_model(spec2)
    c.load_state_dict(state)
    x = torch.randn(3, *DIGITS)
    assert torch.equal(a(x), c(x))
    assert {"mlp", "cnn", "resnet20", "cnn1d", "transformer", "lstm", "gru"} <= set(MODELS)


def test_seeded_build_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model(model_spec("mlp", DIGITS, 10), seed=0)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("call,match", [
    (lambda: model_spec("vgg", DIGITS, 10), "vgg"),
    (lambda: build_model({"name": "vgg", "kwargs": {}}), "vgg"),
    (lambda: build_model({"kwargs": {}}), "model spec"),
    (lambda: build_model(model_spec("mlp", DIGITS, 10, activation="swishy")), "swishy"),
    (lambda: build_model(model_spec("mlp", DIGITS, 10, width=0)), "width=0"),
    (lambda: build_model(model_spec("cnn", (2,), 10)), "image input"),
])
def test_bad_names_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
