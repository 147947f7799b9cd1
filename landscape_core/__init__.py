"""Landscape Explorer's engine: loss-landscape geometry and optimization dynamics in pure PyTorch.

Never imports streamlit. The public API, grouped by concept:
"""

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
    list_runs,
    load_run,
    rename_run,
    save_run,
    workspace_dir,
)

__all__ = [
    # data
    "DATASETS", "DataBundle", "DataError", "DatasetSpec", "analysis_subset", "load_dataset",
    # models
    "MODELS", "build_model", "count_parameters", "has_batchnorm", "model_spec",
    # parameters and loss closures
    "Params", "model_hash", "weights_hash", "LossFunction", "loss_function_for_run",
    # runs
    "Run", "RunError", "RunInfo", "checkpoints_dir", "delete_run", "list_runs", "load_run",
    "rename_run", "save_run", "workspace_dir",
]
