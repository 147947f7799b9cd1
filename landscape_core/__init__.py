"""Landscape Explorer's engine: loss-landscape geometry and optimization dynamics in pure PyTorch.

Never imports streamlit. The curated public API is below, grouped by concept; names outside the
core are imported lazily on first use, so ``import landscape_core`` stays cheap.

Example:
    >>> import landscape_core as lc
    >>> run = lc.load_run("checkpoints/digits-sam")
    >>> lc.analyze_hessian(run, top_k=3, samples=256).eigenvalues      # doctest: +SKIP
"""

from __future__ import annotations

import importlib

from .data import DATASETS, DataBundle, DataError, DatasetSpec, analysis_subset, load_dataset
from .functional import LossFunction, loss_function_for_run
from .models import MODELS, build_model, count_parameters, has_batchnorm, model_spec
from .params import Params, model_hash, weights_hash
from .runs import (
    Run,
    RunError,
    RunInfo,
    checkpoints_dir,
    delete_run,
    export_zip,
    list_runs,
    load_run,
    rename_run,
    save_run,
    workspace_dir,
)

_LAZY: dict[str, tuple[str, ...]] = {
    # training
    "sam": ("SAM",),
    "optimizers": ("make_optimizer", "make_schedule"),
    "training": ("TrainConfig", "TrainResult", "train", "compare"),
    # curvature: operators and estimators (estimators take an operator, never a model)
    "operators": ("LinearOperator", "ParameterOperator", "DenseOperator", "DiagonalOperator", "as_operator"),
    "ggn": ("ggn_operator", "GGNOperator"),
    "fisher": ("fisher_operator", "mc_fisher_operator", "empirical_fisher_operator"),
    "curvature_operators": ("curvature_operator", "OPERATOR_KINDS"),
    "hessian": ("hessian_operator", "HessianOperator"),
    "determinism": ("check_deterministic",),
    "mlp_curvature": ("MLPCurvature",),
    # (the function ``lanczos`` is exported as ``lanczos_eigs``: the submodule shares its name)
    "lanczos": ("lanczos_eigs", "EigenResult", "condition_number"),
    "power": ("power_iteration",),
    "trace": ("hutchinson", "hutchinson_to_stderr", "hutchpp", "control_variate_trace", "TraceResult"),
    "density": ("slq_density", "DensityResult"),
    "exact": ("dense_hessian", "exact_spectrum"),
    "sharpness": ("SharpnessTracker",),
    # landscape
    "directions": ("random_direction", "random_plane", "normalize_direction", "pca_directions",
                   "hessian_directions", "gradient_direction", "line_through", "plane_through", "DirectionSet"),
    "evaluator": ("BatchedEvaluator", "evaluate_points"),
    "surface": ("surface_1d", "surface_2d", "progressive_surface_2d", "Surface"),
    "trajectory": ("project_snapshots", "TrajectoryProjection"),
    "export": ("save_npz", "load_npz", "save_vtp", "npz_bytes", "vtp_bytes"),
    "connectivity": ("linear_path", "bezier_curve", "PathResult"),
    "flatness": ("perturbation_profile", "epsilon_sharpness", "adaptive_sharpness", "basin_radius"),
    "noise": ("NoiseResult", "NoiseSweep"),
    "constants": ("DIRECTION_KINDS", "MODEL_NAMES", "OPTIMIZERS", "PALETTE"),
    "progress": ("ProgressFn",),
    # run-level analyses (a Run, a run folder or a LossFunction in, a frozen result out)
    "analyses.resolve": ("loss_function", "as_run"),
    "analyses.surface": ("compute_surface", "SurfaceResult"),
    "analyses.hessian": ("analyze_hessian", "CurvatureResult", "planned_hvps", "ritz_history"),
    "analyses.trajectory": ("project_trajectory",),
    "analyses.connectivity": ("connect_runs", "ConnectivityResult"),
    "analyses.flatness": ("flatness_summary", "FlatnessResult"),
    "analyses.invariance": ("invariance_demo", "InvarianceResult", "rescale_function_preserving"),
    "analyses.noise": ("gradient_noise_scale", "noise_vs_batch_size"),
    "analyses.study": ("estimator_study", "sample_budget", "EstimatorStudy", "SampleBudget"),
    "analyses.cost": ("estimate_cost", "CostEstimate", "plan_hessian", "plan_surface", "plan_connectivity"),
    "parallel": ("parallel_map", "disk_cache", "clear_cache"),
    # uploads, experiments, reports
    "uploads": ("import_upload", "inspect_upload", "import_checkpoint", "import_report", "ImportReport", "UploadError"),
    "sweep": ("SweepSpec", "run_sweep", "load_sweep", "SweepResult"),
    "presets": ("run_preset", "PresetResult"),
    "report": ("write_report", "report_html", "build_report"),
    "stats": ("kendall_tau", "correlation_table", "mean_ci"),
}
_ALIASES = {"lanczos_eigs": "lanczos"}
_WHERE = {name: mod for mod, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'landscape_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), _ALIASES.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "DATASETS", "DataBundle", "DataError", "DatasetSpec", "analysis_subset", "load_dataset",
    "MODELS", "build_model", "count_parameters", "has_batchnorm", "model_spec",
    "Params", "model_hash", "weights_hash", "LossFunction", "loss_function_for_run",
    "Run", "RunError", "RunInfo", "checkpoints_dir", "delete_run", "export_zip", "list_runs", "load_run",
    "rename_run", "save_run", "workspace_dir",
    *sorted(_WHERE),
]
