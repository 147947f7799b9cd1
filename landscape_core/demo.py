"""The shipped demo analyses: settings, cache keys and the builder of ``checkpoints/demo-analyses.json``.

The home page shows, for the shipped runs digits-sgd / digits-sam / digits-adam and the sharp contrast
digits-sgd-sharp (SGD at lr 0.5): a 21x21 surface on the plane of the top-2 Hessian eigenvectors, a
1-D slice along a random filter-normalised direction, and top-1 Lanczos + Hutchinson traces on two
disjoint-seed batches of 256 training examples. Computing them costs seconds of CPU on a cold start, so they ship
with the checkpoints. Each entry is keyed by run name + weights hash + canonical JSON of the settings
(:func:`demo_key`), so the home page uses it only for exactly those weights and settings. Defined here
(not in ``ui/``) so ``scripts/make_demo_cache.py`` builds the file from the engine alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .analyses.hessian import analyze_hessian
from .analyses.surface import compute_surface
from .runs import load_run

DEMO_RUNS = ("digits-sgd", "digits-sam", "digits-adam", "digits-sgd-sharp")
#: the plane of each run's top-2 Hessian eigenvectors, as unit vectors in weight space (normalization
#: "none"), +-0.5 in weight-space distance: near a minimum the loss along eigenvector 1 then rises as
#: lambda_max t^2 / 2, so one shared axis compares sharpness honestly (the 3-D panels and the 1-D slices)
DEMO_PLANE: dict[str, Any] = {"directions": "hessian", "dims": 2, "grid": 21, "samples": 256, "span": 0.5,
                              "seed": 0, "normalization": "none", "ignore_1d": True, "split": "train"}
#: one random filter-normalised direction (Li et al. 2018), the usual picture, for contrast
DEMO_RANDOM: dict[str, Any] = {"directions": "random", "dims": 1, "grid": 41, "samples": 256, "span": 1.0,
                               "seed": 0, "normalization": "filter", "ignore_1d": True, "split": "train"}
DEMO_SURFACE = DEMO_PLANE  # the name other modules import
DEMO_CURVATURE: dict[str, Any] = {"top_k": 1, "trace": True, "trace_probes": 20, "trace_method": "hutchinson",
                                  "smallest": False, "samples": 256, "seed": 0, "split": "train"}
#: the same estimate on another 256 training examples (seed 1 draws them): the spread between the two is
#: the sampling uncertainty of lambda_max that the home page's claims must exceed
DEMO_CURVATURE_CHECK: dict[str, Any] = {**DEMO_CURVATURE, "seed": 1}
DEMO_CACHE = "demo-analyses.json"


def demo_key(kind: str, name: str, weights_hash: str, settings: Mapping[str, Any]) -> str:
    """Key of one shipped analysis: kind, run name, weights hash and the settings as canonical JSON."""
    return f"{kind}|{name}|{weights_hash}|{json.dumps(dict(settings), sort_keys=True, separators=(',', ':'))}"


def build_demo_cache(checkpoints: Path, *, log: Any = print) -> dict:
    """The cache document for the demo runs present in ``checkpoints`` (``SurfaceResult`` and
    ``CurvatureResult`` in their ``to_dict()`` form, the surface with its axis ``labels``)."""
    entries: dict[str, dict] = {}
    for name in DEMO_RUNS:
        path = Path(checkpoints) / name
        if not (path / "run.json").is_file():
            continue
        run = load_run(path)
        h = run.weights_hash
        for settings in (DEMO_PLANE, DEMO_RANDOM):
            res = compute_surface(run, use_cache=False, **settings)
            entries[demo_key("surface", name, h, settings)] = {**res.to_dict(), "labels": res.labels}
        hess = analyze_hessian(run, **DEMO_CURVATURE).to_dict()
        entries[demo_key("hessian", name, h, DEMO_CURVATURE)] = hess
        check = analyze_hessian(run, **DEMO_CURVATURE_CHECK).to_dict()
        entries[demo_key("hessian", name, h, DEMO_CURVATURE_CHECK)] = check
        log(f"{name}: {h[:12]} lambda_max={hess['eigenvalues'][0]:.4g} (other batch {check['eigenvalues'][0]:.4g}) "
            f"trace={hess['trace']['mean']:.4g}+-{hess['trace']['stderr']:.2g}")
    return {"version": 1, "entries": entries}


__all__ = ["DEMO_CACHE", "DEMO_CURVATURE", "DEMO_CURVATURE_CHECK", "DEMO_PLANE", "DEMO_RANDOM", "DEMO_RUNS",
           "DEMO_SURFACE", "build_demo_cache", "demo_key"]
