"""The shipped demo analyses: settings, cache keys and the builder of ``checkpoints/demo-analyses.json``.

The home page shows three 21x21 surfaces and top-1 Lanczos + Hutchinson traces of the shipped runs
digits-sgd / digits-sam / digits-adam. Computing them costs seconds of CPU on a cold start, so they ship
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

DEMO_RUNS = ("digits-sgd", "digits-sam", "digits-adam")
DEMO_SURFACE: dict[str, Any] = {"directions": "random", "dims": 2, "grid": 21, "samples": 256, "span": 1.0,
                                "seed": 0, "normalization": "filter", "ignore_1d": True, "split": "train"}
DEMO_CURVATURE: dict[str, Any] = {"top_k": 1, "trace": True, "trace_probes": 20, "trace_method": "hutchinson",
                                  "smallest": False, "samples": 256, "seed": 0, "split": "train"}
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
        res = compute_surface(run, use_cache=False, **DEMO_SURFACE)
        surf = {**res.to_dict(), "labels": res.labels}
        entries[demo_key("surface", name, h, DEMO_SURFACE)] = surf
        hess = analyze_hessian(run, **DEMO_CURVATURE).to_dict()
        entries[demo_key("hessian", name, h, DEMO_CURVATURE)] = hess
        log(f"{name}: {h[:12]} lambda_max={hess['eigenvalues'][0]:.4g} "
            f"trace={hess['trace']['mean']:.4g} centre loss={surf['center_loss']:.4g}")
    return {"version": 1, "entries": entries}


__all__ = ["DEMO_CACHE", "DEMO_CURVATURE", "DEMO_RUNS", "DEMO_SURFACE", "build_demo_cache", "demo_key"]
