"""``python -m landscape_core hessian``: JSON keys and values, shipped checkpoint, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape_core.cli import main
from landscape_core.data import analysis_subset
from landscape_core.exact import dense_hessian
from landscape_core.functional import LossFunction
from landscape_core.models import build_model, model_spec
from landscape_core.runs import checkpoints_dir, load_run, save_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    spec = model_spec("mlp", [2], 2, width=5, depth=1, activation="tanh")
    meta = {"model": spec, "dataset": {"name": "moons", "n_samples": 80, "seed": 0}}
    return save_run(tmp_path_factory.mktemp("runs") / "tiny", build_model(spec, seed=0), meta)


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_shipped_checkpoint_required_keys(capsys):
    path = checkpoints_dir() / "moons-tiny"
    if not (path / "run.json").is_file():  # pragma: no cover - the shipped runs are committed
        pytest.fail("checkpoints/moons-tiny is missing")
    rc, out, _ = _run(capsys, "hessian", str(path), "--top-k", "3", "--trace", "--trace-probes", "12", "--samples", "64", "--json")
    assert rc == 0
    d = json.loads(out)
    assert {"eigenvalues", "residuals", "trace", "matvecs", "seconds"} <= set(d)
    assert len(d["eigenvalues"]) == 3 and d["eigenvalues"] == sorted(d["eigenvalues"], reverse=True)
    assert {"mean", "stderr"} <= set(d["trace"]) and d["trace"]["stderr"] >= 0
    assert d["matvecs"] > 0 and d["converged"]


def test_values_match_dense_with_density_per_layer_exact(capsys, tiny_run):
    rc, out, _ = _run(capsys, "hessian", str(tiny_run), "--top-k", "2", "--trace", "--trace-probes", "30",
                      "--density", "--density-probes", "2", "--lanczos-steps", "10", "--per-layer", "--exact",
                      "--samples", "all", "--json")
    assert rc == 0
    d = json.loads(out)
    run = load_run(tiny_run)
    X, y = analysis_subset(*run.train_data, None)
    H = dense_hessian(LossFunction(run.model, X, y))
    ev = torch.linalg.eigvalsh(H).flip(0).numpy()
    assert np.allclose(d["eigenvalues"], ev[:2], rtol=1e-4)
    assert np.allclose(d["exact_eigenvalues"], ev, atol=1e-5)
    assert [b["name"] for b in d["per_layer"]] == ["net.1", "net.3"]
    assert abs(sum(b["trace"] for b in d["per_layer"]) - float(H.trace())) < 1e-4
    assert {"grid", "density", "ritz_values", "ritz_weights", "sigma"} <= set(d["density"])


def test_bad_k_and_samples_one_line_exit_2(capsys, tiny_run):
    rc, out, err = _run(capsys, "hessian", str(tiny_run), "--top-k", "1000", "--json")
    assert rc == 2 and out == ""
    assert err.strip().count("\n") == 0 and "top_k" in err and "1000" in err and "27" in err
    with pytest.raises(SystemExit) as e:
        main(["hessian", str(tiny_run), "--samples", "0"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    rc, _, err = _run(capsys, "hessian", "no-such-run-xyz", "--json")
    assert rc == 2 and "no-such-run-xyz" in err


def test_module_entry_point_exit_code(tiny_run):
    p = subprocess.run([sys.executable, "-m", "landscape_core", "hessian", str(tiny_run), "--top-k", "0"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1


def test_operator_flag_lanczos_matches_the_dense_matrix_of_each_operator(capsys, tiny_run):
    """``--operator``: Lanczos top-k of the GGN / Fisher / empirical Fisher equals the same operator's dense
    float64 spectrum (``--exact``), and the exact Fisher equals the GGN for softmax cross-entropy."""
    tops = {}
    for op in ("hessian", "ggn", "fisher", "empirical-fisher"):
        rc, out, _ = _run(capsys, "hessian", str(tiny_run), "--operator", op, "--top-k", "3", "--exact",
                          "--samples", "all", "--json")
        assert rc == 0
        d = json.loads(out)
        assert d["operator"] == op and d["settings"]["operator"] == op
        # float32 operator vs float64 dense matrix: relative agreement ~1e-5 of the top eigenvalue
        np.testing.assert_allclose(d["eigenvalues"], d["exact_eigenvalues"][:3], rtol=1e-4,
                                   atol=1e-5 * abs(d["exact_eigenvalues"][0]))
        if op != "hessian":
            assert min(d["exact_eigenvalues"]) > -1e-10 * d["exact_eigenvalues"][0]  # PSD
        tops[op] = d["exact_eigenvalues"]
    np.testing.assert_allclose(tops["fisher"], tops["ggn"], rtol=1e-8, atol=1e-12)
    assert not np.allclose(tops["ggn"], tops["hessian"], rtol=1e-3)  # the residual term is not zero here
    with pytest.raises(SystemExit) as e:  # argparse refuses an unknown operator: exit 2, one line
        main(["hessian", str(tiny_run), "--operator", "kfac"])
    assert e.value.code == 2 and "kfac" in capsys.readouterr().err
