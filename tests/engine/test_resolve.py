"""The one resolver: a run, its folder and a ready loss give the same analysis loss; bad input is refused."""

from __future__ import annotations

import pytest
import torch

from landscape_core.analyses.resolve import as_run, loss_function
from landscape_core.functional import loss_function_for_run
from landscape_core.runs import RunError, checkpoints_dir, load_run

RUN = checkpoints_dir() / "moons-tiny"


def test_run_path_and_loss_resolve_to_the_same_loss():
    run = load_run(RUN)
    ref = loss_function_for_run(run, samples=40, seed=3, split="test")
    for source in (run, RUN, str(RUN)):
        lf = loss_function(source, samples=40, seed=3, split="test")
        assert torch.equal(lf.X, ref.X) and torch.equal(lf.y, ref.y)
        assert float(lf(lf.params0)) == float(ref(ref.params0))  # same data, same weights, same order
    assert loss_function(ref, samples=1, split="train") is ref  # a ready loss is used as is
    assert as_run(run) is run and as_run(RUN).weights_hash == run.weights_hash


def test_bad_sources_and_settings_are_one_line_value_errors(tmp_path):
    with pytest.raises(ValueError, match="expected a Run, a run folder path or a LossFunction, got int"):
        loss_function(3)
    with pytest.raises(ValueError, match="samples must be a positive integer or None"):
        loss_function(RUN, samples=0)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        loss_function(RUN, split="val")
    with pytest.raises(ValueError, match="expected a Run or a run folder path"):
        as_run(1.5)
    with pytest.raises(RunError):
        as_run(tmp_path / "not-a-run")
