"""The Probe page: import an uploaded checkpoint (run zip, .safetensors, .pt/.pth) as a workspace run.

:func:`process_upload` is the whole import as a plain function (no widgets), so it is tested directly;
:func:`render_probe_page` draws the uploader, shows what the file holds, lets the user choose the
architecture (pre-filled from the tensor shapes) and the dataset, and makes the result the active run.
All checking is done by ``landscape_core.uploads`` (untrusted input: sizes, magic numbers, zip rules,
weights-only loading, shapes against the architecture); every refusal is one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from landscape_core.data import DATASETS, DataError
from landscape_core.health import run_health
from landscape_core.runs import RunError, read_meta
from landscape_core.uploads import UploadError, import_upload, inspect_upload

from .cache import clear_caches
from .common import error_line, show_error
from .state import refresh_active_run_caption, set_active_run, workspace

ACCEPTED_TYPES = ["zip", "safetensors", "pt", "pth"]


@dataclass(frozen=True)
class UploadOutcome:
    """Result of :func:`process_upload`: ``ok`` with the new run's ``path``, or a one-line ``message``."""

    ok: bool
    message: str
    path: str | None = None

    def to_dict(self) -> dict:
        return {"ok": self.ok, "message": self.message, "path": self.path}


def mlp_spec(width: int, depth: int, activation: str, batchnorm: bool) -> dict:
    """A flat MLP spec as ``import_upload`` accepts it (input shape / classes come from the dataset)."""
    return {"name": "mlp", "width": int(width), "depth": int(depth), "activation": activation,
            "batchnorm": bool(batchnorm)}


def process_upload(filename: str, data: bytes, *, model_spec: dict | None = None, dataset: str | dict | None = None,
                   name: str | None = None, workspace_path: str | Path | None = None) -> UploadOutcome:
    """Import an uploaded checkpoint as a run folder in the workspace.

    Args:
        filename: the uploaded file's name (its extension must match its content).
        data: the file's bytes.
        model_spec: architecture for a bare state dict (ignored need for a run zip, which carries one).
        dataset: dataset name/spec to evaluate and analyse it on (default: the zip's own, else digits).
        name: run name (default from the file); made unique.
        workspace_path: target folder (default the app's workspace).

    Returns:
        An :class:`UploadOutcome`; never raises for bad input.
    """
    try:
        path = import_upload(filename, data, workspace=str(workspace_path or workspace()), model_spec=model_spec,
                             dataset=dataset, name=name or None)
    except (UploadError, DataError, RunError, ValueError) as e:
        return UploadOutcome(False, error_line(e))
    except Exception as e:  # noqa: BLE001 - anything else from a hostile file is still one line
        return UploadOutcome(False, f"could not import {Path(filename).name}: {type(e).__name__}: {error_line(e)}")
    clear_caches()
    return UploadOutcome(True, f"Imported {Path(filename).name} as run {path.name}; it is now the active run.",
                         str(path))


@st.cache_data(show_spinner=False, max_entries=8)
def _inspect(filename: str, data: bytes) -> dict[str, Any]:
    try:
        return {"ok": True, **inspect_upload(filename, data)}
    except (UploadError, ValueError, RunError) as e:
        return {"ok": False, "message": error_line(e)}
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "message": f"{type(e).__name__}: {error_line(e)}"}


def _architecture_widgets(guess: dict | None) -> dict:
    kw = dict((guess or {}).get("kwargs") or {})
    names = ["mlp", "cnn", "resnet20"]
    g = (guess or {}).get("name", "mlp")
    model = st.selectbox("Architecture", names, index=names.index(g) if g in names else 0, key="probe_model",
                         help="Pre-filled from the tensor names and shapes; the weights are checked against it.")
    if model == "mlp":
        c1, c2, c3, c4 = st.columns(4)
        width = c1.number_input("Width", 1, 4096, int(kw.get("width", 64)), key="probe_width")
        depth = c2.number_input("Hidden layers", 0, 32, int(kw.get("depth", 2)), key="probe_depth")
        acts = ["relu", "tanh", "gelu"]
        act = c3.selectbox("Activation", acts, index=acts.index(kw.get("activation", "relu"))
                           if kw.get("activation") in acts else 0, key="probe_act",
                           help="Not visible in the weights: pick the one the model was trained with.")
        bn = c4.toggle("BatchNorm", value=bool(kw.get("batchnorm", False)), key="probe_bn")
        return mlp_spec(width, depth, act, bn)
    if model == "cnn":
        c1, c2, c3 = st.columns(3)
        ch = c1.number_input("Channels", 1, 512, int(kw.get("channels", 16)), key="probe_channels")
        act = c2.selectbox("Activation", ["relu", "tanh", "gelu"], key="probe_cnn_act")
        bn = c3.toggle("BatchNorm", value=bool(kw.get("batchnorm", False)), key="probe_cnn_bn")
        return {"name": "cnn", "channels": int(ch), "activation": act, "batchnorm": bool(bn)}
    w = st.number_input("Base width", 1, 256, int(kw.get("width", 16)), key="probe_rn_width")
    return {"name": "resnet20", "width": int(w)}


def render_probe_page() -> None:
    """Draw the Probe checkpoint page."""
    up = st.file_uploader("Checkpoint", type=ACCEPTED_TYPES, key="probe_file",
                          help="A run exported by this app (.zip), or a state dict saved as .safetensors or "
                               ".pt/.pth (loaded weights-only: nothing in the file is executed).")
    if up is None:
        st.caption("Accepted: a run zip (Runs page -> Download), a `.safetensors` state dict, or a `.pt/.pth` "
                   "state dict. Architecture and dataset are taken from the run, or chosen below.")
        return
    data = up.getvalue()
    info = _inspect(up.name, data)
    if not info["ok"]:
        show_error(info["message"])
        return
    kind = {"run_zip": "an exported run", "safetensors": "a safetensors state dict", "pt": "a PyTorch state dict"}
    st.write(f"**{info['filename']}**: {kind.get(info['kind'], info['kind'])} with {info['num_tensors']} tensors, "
             f"{info['num_params']:,} numbers.")
    with st.expander("Tensors"):
        st.dataframe([{"name": t["name"], "shape": str(t["shape"]), "dtype": t["dtype"]} for t in info["tensors"]],
                     hide_index=True)
    spec = None
    if info["kind"] != "run_zip":
        spec = _architecture_widgets(info.get("guessed_model"))
    ds_guess = info.get("guessed_dataset") or "digits"
    opts = list(DATASETS)
    dataset = st.selectbox("Dataset", opts, index=opts.index(ds_guess) if ds_guess in opts else 0, key="probe_dataset",
                           help="The data the analysis pages evaluate this model on.")
    name = st.text_input("Run name (optional)", key="probe_name", placeholder="from the file name")
    if st.button("Import as a run", type="primary", key="probe_go"):
        with st.spinner("Checking and importing..."):
            out = process_upload(up.name, data, model_spec=spec, dataset=dataset, name=name.strip() or None)
        if out.ok:
            set_active_run(out.path)
            refresh_active_run_caption()
            st.session_state["probe_last"] = out.path
            health = run_health(read_meta(out.path))  # set by the import plausibility check (health.check_import)
            if health is None:
                st.success(out.message)
            else:
                st.error(f"{out.message} **Suspect**: {health['message']}", icon="⚠️")
        else:
            show_error(out.message)
