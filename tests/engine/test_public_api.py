"""The curated public API resolves every advertised name (lazily) to the real object."""

import importlib

import pytest

import landscape_core as lc


@pytest.mark.parametrize("name", sorted(lc._WHERE))
def test_lazy_name_resolves_to_module_attribute(name):
    mod = importlib.import_module(f"landscape_core.{lc._WHERE[name]}")
    assert getattr(lc, name) is getattr(mod, lc._ALIASES.get(name, name))


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        lc.no_such_thing  # noqa: B018


def test_load_run_api_contract():
    run = lc.load_run(lc.checkpoints_dir() / "moons-tiny")
    X, y = run.test_data
    assert run.model.training is False and len(X) == len(y) > 0
    assert run.meta["weights_hash"] == lc.model_hash(run.model)
