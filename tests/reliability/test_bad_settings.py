"""Bad settings give one clear error, never a crash: through the engine (ValueError naming the value) and
the command line (exit code 2, exactly one ``error: ...`` line on stderr, no traceback)."""

from __future__ import annotations

import pytest
import torch

from landscape_core.cli import main
from landscape_core.data import DatasetSpec
from landscape_core.directions import random_direction, random_plane
from landscape_core.functional import loss_function_for_run
from landscape_core.models import build_model, model_spec
from landscape_core.runs import checkpoints_dir, load_run
from landscape_core.training import TrainConfig, train

MOONS = {"name": "moons", "n_samples": 80}


@pytest.fixture(scope="module")
def moons_run():
    return load_run(checkpoints_dir() / "moons-tiny")


def one_line_error(capsys, argv: list[str], match: str) -> str:
    """Run the CLI in-process; it must exit 2 with exactly one ``error:`` line mentioning ``match``."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse errors exit from inside the parser
        code = e.code
    out, err = capsys.readouterr()
    assert code == 2, (argv, code, err)
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err
    assert match.lower() in err.lower(), err
    return err


# ------------------------------------------------------------------ engine
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"lr": 0.0}, "lr must be > 0, got 0.0"),
        ({"lr": -0.1}, "lr must be > 0, got -0.1"),
        ({"lr": float("nan")}, "lr must be > 0"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"optimizer": "lion"}, "unknown optimizer 'lion'"),
        ({"model": "vit"}, "unknown model 'vit'"),
        ({"dataset": {"name": "imagenet"}}, "unknown dataset 'imagenet'"),
        ({"schedule": "wavy"}, "unknown schedule 'wavy'"),
        ({"momentum": 1.5}, "momentum must be in [0, 1)"),
        ({"rho": -1.0}, "rho must be >= 0"),
    ],
)
def test_train_config_rejects(kwargs, match):
    with pytest.raises(ValueError) as info:
        TrainConfig(**{"dataset": MOONS, **kwargs})
    assert match in str(info.value) and "\n" not in str(info.value)


def test_batch_size_over_the_dataset():
    cfg = TrainConfig(dataset=MOONS, width=4, depth=1, batch_size=10_000, epochs=1, snapshots=0)
    with pytest.raises(ValueError, match="batch_size 10000 is larger than the 60 training examples"):
        train(cfg)


def test_unknown_activation_reaches_a_clear_error():
    cfg = TrainConfig(dataset=MOONS, width=4, depth=1, activation="swish", epochs=1, snapshots=0, batch_size=8)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        train(cfg)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        build_model(model_spec("mlp", (2,), 2, activation="swish"))


def test_unknown_dataset_and_model_names():
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        DatasetSpec(name="nope")
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        model_spec("nope", (2,), 2)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        build_model({"name": "nope", "kwargs": {}})


def test_unknown_direction_normalisation(moons_run):
    params = dict(moons_run.model.named_parameters())
    with pytest.raises(ValueError, match="wobbly"):
        random_direction({k: v.detach() for k, v in params.items()}, normalization="wobbly", seed=0)
    with pytest.raises(ValueError, match="wobbly"):
        random_plane({k: v.detach() for k, v in params.items()}, normalization="wobbly", seed=0)


def test_samples_zero(moons_run):
    from landscape_core.analyses.hessian import analyze_hessian

    with pytest.raises(ValueError, match="samples must be >= 1"):
        loss_function_for_run(moons_run, samples=0)
    with pytest.raises(ValueError, match="0"):
        analyze_hessian(moons_run, samples=0, top_k=1, trace=False, smallest=False)


def test_k_larger_than_the_parameter_count(moons_run):
    from landscape_core.analyses.hessian import analyze_hessian

    n = sum(p.numel() for p in moons_run.model.parameters())
    with pytest.raises(ValueError, match=f"top_k must be between 1 and the number of parameters {n}, got {n + 1}"):
        analyze_hessian(moons_run, top_k=n + 1, samples=64, trace=False, smallest=False)
    with pytest.raises(ValueError, match="top_k"):
        analyze_hessian(moons_run, top_k=0, samples=64, trace=False, smallest=False)


@pytest.mark.parametrize("grid,span,match", [(1, 1.0, "grid must be an integer >= 2, got 1"),
                                             (0, 1.0, "grid must be"), (11, 0.0, "span must be positive"),
                                             (11, -1.0, "span must be positive"), (11, (1.0, 1.0), "span")])
def test_surface_grid_and_span(moons_run, grid, span, match):
    from landscape_core.surface import surface_2d

    lf = loss_function_for_run(moons_run, samples=64)
    d1, d2 = random_plane(lf.params0, seed=0)
    with pytest.raises(ValueError, match=match):
        surface_2d(lf, d1, d2, grid=grid, span=span)


def test_analysis_never_mutates_the_run_model_on_bad_settings(moons_run):
    from landscape_core.analyses.hessian import analyze_hessian
    from landscape_core.params import model_hash

    before = model_hash(moons_run.model)
    for kw in ({"top_k": 10**6}, {"samples": 0}, {"split": "valid"}, {"trace_method": "magic"}):
        with pytest.raises(ValueError):
            analyze_hessian(moons_run, **{"top_k": 1, "samples": 32, **kw})
    assert model_hash(moons_run.model) == before
    assert all(torch.isfinite(p).all() for p in moons_run.model.parameters())


# ------------------------------------------------------------------ command line: train (H1)
TRAIN = ["train", "--dataset", "moons", "--n-samples", "80", "--width", "4", "--depth", "1", "--epochs", "1",
         "--snapshots", "0"]


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--lr", "0"], "lr"),
        (["--lr", "-0.5"], "lr"),
        (["--batch-size", "100000"], "batch_size 100000 is larger than"),
        (["--batch-size", "0"], "batch"),
        (["--epochs", "0"], "epochs"),
        (["--optimizer", "lion"], "lion"),
        (["--model", "transformer"], "transformer"),
        (["--activation", "swish"], "swish"),
        (["--schedule", "wavy"], "wavy"),
        (["--name", "../escape"], "invalid run name"),
    ],
)
def test_cli_train_bad_settings(capsys, tmp_path, extra, match):
    one_line_error(capsys, [*TRAIN, *extra, "--workspace", str(tmp_path / "ws")], match)
    assert not (tmp_path / "escape").exists()


def test_cli_unknown_dataset_and_command(capsys):
    one_line_error(capsys, ["train", "--dataset", "imagenet"], "imagenet")
    one_line_error(capsys, ["frobnicate"], "frobnicate")


# ------------------------------------------------------------------ command line: analyses (H1-H4)
M = "moons-tiny"
CMP = ["compare", "--dataset", "moons", "--n-samples", "80", "--width", "4", "--depth", "1", "--epochs", "1",
       "--snapshots", "0", "--no-save"]
CLI_CASES = {
    "compare-lr-0": ([*CMP, "--lr", "0"], "lr must be > 0"),
    "compare-lr-neg": ([*CMP, "--lr", "-1"], "lr must be > 0"),
    "compare-batch-over-data": ([*CMP, "--batch-size", "100000"], "larger than the 60 training examples"),
    "compare-unknown-optimizer": ([*CMP, "--optimizers", "sgd,lion"], "lion"),
    "compare-no-optimizer": ([*CMP, "--optimizers", ""], "at least one"),
    "hessian-k-0": (["hessian", M, "--top-k", "0"], "top-k"),
    "hessian-k-over-params": (["hessian", M, "--top-k", "100000"], "number of parameters 354"),
    "hessian-samples-0": (["hessian", M, "--samples", "0"], "samples"),
    "hessian-probes-0": (["hessian", M, "--trace", "--trace-probes", "0"], "trace-probes"),
    "hessian-tol": (["hessian", M, "--tol", "-1"], "tol must be > 0"),
    "hessian-unknown-run": (["hessian", "no-such-run"], "no-such-run"),
    "hessian-unknown-method": (["hessian", M, "--trace-method", "magic"], "magic"),
    "surface-grid-1": (["surface", M, "--grid", "1"], "grid"),
    "surface-grid-huge": (["surface", M, "--grid", "100000"], "at most 1001"),
    "surface-span-0": (["surface", M, "--span", "0"], "span"),
    "surface-span-neg": (["surface", M, "--span", "-1"], "span"),
    "surface-span-nan": (["surface", M, "--span", "nan"], "span"),
    "surface-samples-0": (["surface", M, "--samples", "0"], "samples"),
    "surface-unknown-direction": (["surface", M, "--directions", "sideways"], "sideways"),
    "surface-unknown-normalization": (["surface", M, "--normalization", "wobbly"], "wobbly"),
    "surface-dims-3": (["surface", M, "--dims", "3"], "dims"),
    "surface-jobs-0": (["surface", M, "--n-jobs", "0", "--grid", "3"], "n-jobs"),
    "surface-through-count": (["surface", M, "--through", "digits-sgd", "--grid", "3"], "--through needs 2"),
    "connect-incompatible": (["connect", M, "digits-sgd"], "different model specs"),
    "connect-points-1": (["connect", M, M, "--points", "1"], "points"),
    "connect-samples-0": (["connect", M, M, "--samples", "0"], "samples"),
    "connect-unknown-curve": (["connect", M, M, "--curve", "spline"], "spline"),
    "connect-bezier-steps-0": (["connect", M, M, "--curve", "bezier", "--steps", "0"], "steps"),
    "connect-bezier-lr-0": (["connect", M, M, "--curve", "bezier", "--lr", "0"], "lr"),
    "flatness-radius-0": (["flatness", M, "--radii", "0"], "radii"),
    "flatness-radius-neg": (["flatness", M, "--radii", "-0.1"], "radii"),
    "flatness-directions-1": (["flatness", M, "--directions", "1"], "directions"),
    "flatness-samples-0": (["flatness", M, "--samples", "0"], "samples"),
    "flatness-epsilon-0": (["flatness", M, "--epsilon", "0"], "epsilon"),
    "flatness-threshold-neg": (["flatness", M, "--threshold", "-1"], "threshold"),
    "noise-b-small-0": (["noise", M, "--b-small", "0"], "b-small"),
    "noise-b-big-over-data": (["noise", M, "--b-big", "100000"], "exceeds the 450 examples"),
    "noise-small-over-big": (["noise", M, "--b-small", "64", "--b-big", "32"], "must be smaller"),
    "noise-batches-0": (["noise", M, "--batches", "0"], "batches"),
    "noise-samples-0": (["noise", M, "--samples", "0"], "samples"),
}


def _cli(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_analysis_bad_settings_exit_2_with_an_error_line(capsys, case):
    argv, match = CLI_CASES[case]
    code, err = _cli(capsys, argv)
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
    assert code == 2, (argv, code, err)
    assert "Traceback" not in err
    assert lines and lines[-1].startswith("error: ") and match.lower() in lines[-1].lower(), err
    assert sum(ln.startswith("error: ") for ln in lines) == 1


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_analysis_bad_settings_stderr_is_exactly_one_line(capsys, case):
    """Validation happens before any progress output, so stderr holds only the error line."""
    code, err = _cli(capsys, CLI_CASES[case][0])
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "\r" not in err, err
