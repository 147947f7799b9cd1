"""AppTest of pages/9_Flatness_and_noise.py on the shipped moons-tiny (and digits-sgd) runs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from app_helpers import chart_by_key as _chart

from landscape_core.analyses.flatness import flatness_summary
from landscape_core.analyses.noise import noise_vs_batch_size
from landscape_core.runs import checkpoints_dir, load_run
from ui import exports
from ui.figures import figure_arrays

PAGE = "pages/9_Flatness_and_noise.py"
TINY = checkpoints_dir() / "moons-tiny"
DIGITS = checkpoints_dir() / "digits-sgd"




def test_flatness_invariance_and_noise(app_test):
    for p in (TINY, DIGITS):
        if not (p / "run.json").is_file():
            pytest.fail(f"shipped run {p.name} is missing")
    at = app_test(PAGE, timeout=300)
    at.session_state["active_run"] = str(TINY)
    at.session_state["flat_samples"] = 128
    at.session_state["flat_dirs"] = 5
    at.session_state["flat_others"] = [str(DIGITS)]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.get("plotly_chart")  # nothing heavy before the buttons
    at.button(key="flat_compute").click().run()
    assert not at.exception, [e.value for e in at.exception]

    stem = _chart(at, "flat_stem")
    markers = [d for d in stem["data"] if d.get("mode") == "markers"]
    assert [d["name"] for d in markers] == ["moons-tiny", "digits-sgd"]
    for d, path in zip(markers, (TINY, DIGITS)):
        ref = flatness_summary(load_run(path), samples=128, n_directions=5, rho=0.05, epsilon=1e-3, ascent_steps=5,
                               basin_directions=5, seed=0, split="train")
        np.testing.assert_allclose(figure_arrays({"data": [d]}, 0, "y"), ref.profile.mean_increase, rtol=1e-4,
                                   atol=1e-7)
    table = at.dataframe[0].value
    assert list(table["run"]) == ["moons-tiny", "digits-sgd"]
    assert table["adaptive sharpness"].iloc[1] == pytest.approx(ref.adaptive_sharpness.value, rel=1e-4)  # digits
    assert table["epsilon-sharpness (%)"].iloc[1] == pytest.approx(ref.epsilon_sharpness.value, rel=1e-4)
    at.toggle(key="flat_log").set_value(True).run()
    assert _chart(at, "flat_stem")["layout"]["yaxis"]["type"] == "log"

    # rescaling demo: filter-normalised profile and adaptive sharpness invariant, lambda_max not
    at.button(key="flat_inv_btn").click().run()
    assert not at.exception, [e.value for e in at.exception]
    inv = at.dataframe[-1].value
    by = dict(zip(inv["measure"], inv["invariant"]))
    assert by["adaptive sharpness"] == "yes" and by["lambda_max"] == "NO" and by["epsilon-sharpness"] == "NO"
    assert all(v == "yes" for k, v in by.items() if k.startswith("filter-normalised"))
    assert any("ReLU instead" in i.value for i in at.info)  # moons-tiny is tanh: honest substitution
    assert _chart(at, "flat_invariance")["data"][0]["type"] == "bar"

    # gradient noise scale equals the engine's estimate on the same draws
    at.button(key="noise_btn").click().run()
    assert not at.exception, [e.value for e in at.exception]
    ref_n = noise_vs_batch_size(load_run(TINY), (16, 32, 64, 128, 256), n_batches=10, samples=512, seed=0,
                                split="train")
    b = [m for m in at.metric if m.label == "B_simple"][0]
    assert float(b.value) == pytest.approx(ref_n.b_simple, rel=1e-3)
    norms = _chart(at, "noise_norms")
    np.testing.assert_allclose(figure_arrays(norms, 0, "y"), ref_n.mean_sq_norm, rtol=1e-5)
    assert norms["layout"]["xaxis"]["type"] == "log"

    # CSV export of the profiles reads back
    rows = [{"radius": r, "mean_increase": m} for r, m in zip(ref.profile.radii, ref.profile.mean_increase)]
    back = np.genfromtxt(io.BytesIO(exports.table_csv_bytes(rows)), delimiter=",", names=True)
    np.testing.assert_allclose(back["mean_increase"], ref.profile.mean_increase, rtol=1e-9)


def test_empty_workspace(app_test, empty_checkpoints):
    at = app_test(PAGE).run()
    assert not at.exception
    assert any("No runs yet" in i.value for i in at.info)
