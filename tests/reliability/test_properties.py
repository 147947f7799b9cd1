"""Property-based tests (hypothesis, bounded and derandomised for CI): over training and analysis settings,
anything the engine accepts either runs to a finite result or fails with a one-line ValueError naming the
problem; never another exception type (TypeError, IndexError, RuntimeError, ZeroDivisionError...)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from landscape_core.data import DataError
from landscape_core.models import ACTIVATIONS
from landscape_core.optimizers import OPTIMIZERS
from landscape_core.params import model_hash
from landscape_core.runs import checkpoints_dir, load_run
from landscape_core.training import TrainConfig, train

PROPS = settings(max_examples=20, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _clear_value_error(e: BaseException) -> None:
    assert isinstance(e, (ValueError, DataError)), f"{type(e).__name__}: {e}"
    msg = str(e)
    assert msg and "\n" not in msg.strip(), f"not a one-line message: {msg!r}"


@st.composite
def one_fault(draw, valid: dict, invalid: dict) -> dict:
    """A dict of valid settings; in about half the examples one field gets an invalid value instead."""
    kw = {k: draw(v) for k, v in valid.items()}
    if draw(st.booleans()):
        field = draw(st.sampled_from(sorted(invalid)))
        kw[field] = draw(invalid[field])
    return kw


def check_property(inner, outcomes: list[str], min_ok: int) -> None:
    """Run a hypothesis property, then insist that some examples ran through (not only rejections)."""
    inner()
    assert outcomes.count("ok") >= min_ok, f"only {outcomes.count('ok')} of {len(outcomes)} examples ran"
    assert outcomes.count("error") >= 1, "no invalid setting was tried"


_train_valid = {
    "dataset_name": st.sampled_from(["moons", "circles", "spirals"]),
    "n_samples": st.integers(40, 160),
    "noise": st.sampled_from([0.0, 0.1, 0.3]),
    "lr": st.floats(1e-3, 0.5),
    "batch_size": st.integers(1, 64),
    "epochs": st.integers(1, 2),
    "optimizer": st.sampled_from(OPTIMIZERS),
    "width": st.integers(1, 8),
    "depth": st.integers(0, 2),
    "activation": st.sampled_from(sorted(ACTIVATIONS)),
    "batchnorm": st.booleans(),
    "momentum": st.sampled_from([0.0, 0.5, 0.9]),
    "rho": st.sampled_from([0.0, 0.05]),
    "snapshots": st.sampled_from([0, 2, 3]),
    "seed": st.integers(0, 3),
}
_train_invalid = {
    "dataset_name": st.just("imagenet"),
    "n_samples": st.integers(0, 12),
    "lr": st.sampled_from([0.0, -0.1, float("nan"), float("inf"), 1e4]),
    "batch_size": st.sampled_from([-1, 0, 500, 10**6]),
    "epochs": st.sampled_from([0, -1]),
    "optimizer": st.sampled_from(["lion", ""]),
    "width": st.sampled_from([0, -3]),
    "activation": st.just("swish"),
    "momentum": st.sampled_from([1.0, -0.5]),
    "rho": st.just(-0.1),
    "snapshots": st.just(1),
    "noise": st.sampled_from([-1.0, 10.0]),
}
train_settings = one_fault(_train_valid, _train_invalid)


def test_training_settings_run_or_fail_clearly():
    outcomes: list[str] = []

    @PROPS
    @given(kw=train_settings)
    def prop(kw):
        kw = dict(kw)
        kw["dataset"] = {"name": kw.pop("dataset_name"), "n_samples": kw.pop("n_samples"), "noise": kw.pop("noise")}
        try:
            cfg = TrainConfig(**kw)
            res = train(cfg)
        except Exception as e:  # noqa: BLE001 - the property is about the exception type
            _clear_value_error(e)
            outcomes.append("error")
            return
        outcomes.append("ok")
        assert len(res.history) == kw["epochs"] >= 1
        assert all(math.isfinite(h["train_loss"]) for h in res.history)
        assert 0.0 <= res.final["test_acc"] <= 1.0
        assert len(model_hash(res.model)) == 64

    check_property(prop, outcomes, min_ok=4)


@pytest.fixture(scope="module")
def moons_run():
    return load_run(checkpoints_dir() / "moons-tiny")


analysis_settings = one_fault(
    {
        "grid": st.integers(2, 9),
        "span": st.floats(0.01, 2.0),
        "samples": st.integers(1, 128),
        "dims": st.sampled_from([1, 2]),
        "directions": st.sampled_from(["random", "pca", "gradient", "hessian"]),
        "normalization": st.sampled_from(["filter", "layer", "none"]),
        "split": st.sampled_from(["train", "test"]),
    },
    {
        "grid": st.sampled_from([-1, 0, 1, 2.5, True, 5000]),
        "span": st.sampled_from([0.0, -1.0, float("inf"), float("nan")]),
        "samples": st.integers(-2, 0),
        "dims": st.sampled_from([0, 3]),
        "directions": st.sampled_from(["sideways", "PCA"]),
        "normalization": st.just("wobbly"),
        "split": st.just("valid"),
    },
)


def test_surface_settings_run_or_fail_clearly(moons_run):
    from landscape_core.analyses.surface import compute_surface

    outcomes: list[str] = []

    @settings(PROPS, max_examples=15)
    @given(kw=analysis_settings)
    def prop(kw):
        try:
            res = compute_surface(moons_run, seed=0, use_cache=False, **kw).to_dict()
        except Exception as e:  # noqa: BLE001
            _clear_value_error(e)
            outcomes.append("error")
            return
        outcomes.append("ok")
        loss = res["loss"]
        n = len(loss) if kw["dims"] == 1 else len(loss) * len(loss[0])
        assert n == kw["grid"] ** kw["dims"]

    check_property(prop, outcomes, min_ok=4)


hessian_settings = one_fault(
    {
        "top_k": st.integers(1, 4),
        "samples": st.integers(1, 64),
        "trace": st.booleans(),
        "trace_probes": st.integers(1, 4),
        "trace_method": st.sampled_from(["hutch++", "hutchinson"]),
        "split": st.sampled_from(["train", "test"]),
        "seed": st.integers(0, 3),
    },
    {
        "top_k": st.sampled_from([-1, 0, 355, 10**6]),  # the tiny model has 354 parameters
        "samples": st.integers(-1, 0),
        "trace_probes": st.just(0),
        "trace_method": st.just("magic"),
        "split": st.just("valid"),
    },
)


def test_hessian_settings_run_or_fail_clearly(moons_run):
    from landscape_core.analyses.hessian import analyze_hessian

    outcomes: list[str] = []
    before = model_hash(moons_run.model)

    @settings(PROPS, max_examples=12)
    @given(kw=hessian_settings)
    def prop(kw):
        try:
            res = analyze_hessian(moons_run, smallest=False, max_iter=60, **kw).to_dict()
        except Exception as e:  # noqa: BLE001
            _clear_value_error(e)
            outcomes.append("error")
            return
        finally:
            assert model_hash(moons_run.model) == before
        outcomes.append("ok")
        eig = res["eigenvalues"]
        assert len(eig) == kw["top_k"] and all(math.isfinite(x) for x in eig)
        assert eig == sorted(eig, reverse=True)

    check_property(prop, outcomes, min_ok=3)


flatness_settings = one_fault(
    {
        "samples": st.one_of(st.none(), st.integers(1, 100)),
        "n_directions": st.integers(2, 3),
        "radii": st.sampled_from([(0.05, 0.2), (0.1,)]),
        "epsilon": st.sampled_from([1e-3, 1e-2]),
        "threshold": st.sampled_from([0.1, 0.5]),
        "basin_directions": st.just(2),
        "ascent_steps": st.integers(1, 2),
    },
    {
        "samples": st.integers(-1, 0),
        "n_directions": st.integers(0, 1),
        "radii": st.sampled_from([(), (0.0,), (-0.1, 0.1), (float("nan"),)]),
        "epsilon": st.sampled_from([0.0, -1.0]),
        "threshold": st.sampled_from([0.0, -0.5]),
        "basin_directions": st.just(0),
        "ascent_steps": st.just(0),
    },
)


def test_flatness_settings_run_or_fail_clearly(moons_run):
    from landscape_core.analyses.flatness import flatness_summary

    outcomes: list[str] = []

    @settings(PROPS, max_examples=15)
    @given(kw=flatness_settings)
    def prop(kw):
        try:
            res = flatness_summary(moons_run, seed=0, max_radius=0.5, **kw).to_dict()
        except Exception as e:  # noqa: BLE001
            _clear_value_error(e)
            outcomes.append("error")
            return
        outcomes.append("ok")
        assert math.isfinite(res["loss"])

    check_property(prop, outcomes, min_ok=2)


# ------------------------------------------------------------------ fuzzed uploads
@st.composite
def _mutation(draw, size: int) -> list[tuple[str, int, int]]:
    """A few byte-level edits: flip, truncate, insert, or zero a span."""
    ops = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "zero"]))
        pos = draw(st.integers(0, max(size - 1, 0)))
        ops.append((kind, pos, draw(st.integers(1, 64))))
    return ops


def _apply(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    b = bytearray(data)
    for kind, pos, n in ops:
        pos = min(pos, max(len(b) - 1, 0))
        if kind == "flip" and b:
            b[pos] ^= 0xFF
        elif kind == "truncate":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = bytes((pos + i * 37) % 256 for i in range(n))
        elif kind == "zero":
            b[pos : pos + n] = bytes(len(b[pos : pos + n]))
    return bytes(b)


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "zip"])
def test_mutated_uploads_import_or_fail_with_upload_error(tmp_path, fmt):
    """Any byte-level corruption of a valid file is imported (if still valid) or refused with UploadError."""
    from rel_helpers import (
        digits_model,
        digits_spec,
        state_bytes_pt,
        state_bytes_safetensors,
        tree_listing,
        zip_folder,
    )

    from landscape_core.runs import list_runs, save_run
    from landscape_core.uploads import UploadError, import_upload

    model = digits_model(seed=0)
    if fmt == "pt":
        data = state_bytes_pt(dict(model.state_dict()))
    elif fmt == "safetensors":
        data = state_bytes_safetensors(model.state_dict())
    else:
        src = save_run(tmp_path / "src" / "r", model, {"model": digits_spec(), "dataset": {"name": "digits"}})
        data = zip_folder(src, prefix="r")
    ws = tmp_path / "ws"
    ws.mkdir()
    outcomes: list[str] = []
    spec = {"name": "mlp", "kwargs": {"width": 16, "depth": 2, "activation": "tanh"}}

    @settings(PROPS, max_examples=25)
    @given(ops=_mutation(len(data)))
    def prop(ops):
        bad = _apply(data, ops)
        before = {p for p in tree_listing(tmp_path) if not p.startswith("ws")}
        try:
            path = import_upload(f"f.{fmt}", bad, workspace=ws, model_spec=spec)
        except UploadError as e:
            assert str(e) and "\n" not in str(e)
            outcomes.append("error")
        else:
            assert path.parent == ws.resolve()
            outcomes.append("ok")
        assert {p for p in tree_listing(tmp_path) if not p.startswith("ws")} == before
        assert not [p for p in ws.iterdir() if p.name.startswith(".")]

    prop()
    assert outcomes.count("error") >= 5
    assert len(list_runs(ws, include_shipped=False)) == outcomes.count("ok")
