"""The Probe page: import an uploaded checkpoint (any format the engine accepts) as a workspace run.

:func:`process_upload` is the whole import as a plain function (no widgets), so it is tested directly;
:func:`checkpoint_widgets` draws the uploader and what the file holds and returns the import settings
(:class:`ProbeSettings`, frozen), :func:`import_block` runs the import behind the button and
:func:`report_view` shows what was detected (format, architecture, parameter count, the key mapping
file key -> model key, the data, notes, metrics) with buttons that open the analysis pages on it.
All checking is done by ``landscape_core.uploads`` (untrusted input: sizes, magic numbers, zip rules,
weights-only loading, shapes against the architecture); every refusal is one red line and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

from landscape_core.data import DATASETS, DataError
from landscape_core.health import run_health
from landscape_core.runs import RunError, read_meta
from landscape_core.uploads import ImportReport, UploadError, import_checkpoint, import_report, inspect_upload

from .cache import clear_caches
from .common import error_line, show_error
from .state import refresh_active_run_caption, set_active_run, workspace

# the file widget's filter only; the engine decides the format by content (magic bytes)
ACCEPTED_TYPES = ["zip", "safetensors", "pt", "pth", "th", "bin", "ckpt", "onnx"]
DATA_TYPES = ["npz", "csv"]
ACTIVATIONS = ["relu", "tanh", "gelu"]
AUTO_DATASET = "fits the model (automatic)"
ANALYSES = (("Curvature", "pages/6_Curvature.py", ":material/blur_circular:"),
            ("Loss surface", "pages/5_Loss_surface.py", ":material/landscape:"),
            ("Flatness and noise", "pages/9_Flatness_and_noise.py", ":material/straighten:"))
_KIND_WORDS = {"run_zip": "an exported run", "safetensors": "a safetensors state dict",
               "pt": "a PyTorch state dict (torch.save, read weights-only)", "onnx": "an ONNX model graph"}


@dataclass(frozen=True)
class UploadOutcome:
    """Result of :func:`process_upload`: ``ok`` with the new run's ``path`` and ``report``, or a one-line
    ``message``."""

    ok: bool
    message: str
    path: str | None = None
    report: ImportReport | None = None

    def to_dict(self) -> dict:
        return {"ok": self.ok, "message": self.message, "path": self.path,
                "report": self.report.to_dict() if self.report is not None else None}


@dataclass(frozen=True)
class ProbeSettings:
    """What the Probe page's widgets chose: the engine call's arguments besides the file itself."""

    model_spec: dict | None = None  # None: read off the weights (or the run zip / graph)
    dataset: str | None = None  # None: the run's own, or the embedded dataset that fits
    data_name: str | None = None  # the user's own data file (.npz / .csv), if any
    data: bytes | None = None
    label_column: str = "label"
    name: str | None = None


def mlp_spec(width: int, depth: int, activation: str, batchnorm: bool) -> dict:
    """A flat MLP spec as ``import_checkpoint`` accepts it (input shape / classes come from the data)."""
    return {"name": "mlp", "width": int(width), "depth": int(depth), "activation": activation,
            "batchnorm": bool(batchnorm)}


def process_upload(filename: str, data: bytes, *, model_spec: dict | None = None, dataset: str | dict | None = None,
                   name: str | None = None, workspace_path: str | Path | None = None,
                   user_data: bytes | None = None, user_data_name: str | None = None,
                   label_column: str = "label") -> UploadOutcome:
    """Import an uploaded checkpoint as a run folder in the workspace.

    Args:
        filename: the uploaded file's name (its extension names the format family; the content decides).
        data: the file's bytes.
        model_spec: architecture (default: read off the weights structurally; a run zip carries its own).
        dataset: dataset name/spec to evaluate and analyse it on (default: the zip's own, else the embedded
            dataset whose input fits the model).
        name: run name (default from the file); made unique.
        workspace_path: target folder (default the app's workspace).
        user_data: the user's own ``.npz`` / ``.csv`` bytes (replaces ``dataset``), stored with the run.
        user_data_name: that file's name (its extension says which of the two).
        label_column: the label column of a ``.csv``.

    Returns:
        An :class:`UploadOutcome`; never raises for bad input.
    """
    try:
        rep = import_checkpoint(filename, data, workspace=str(workspace_path or workspace()), model_spec=model_spec,
                                dataset=None if user_data is not None else dataset, name=name or None,
                                user_data=user_data, user_data_name=user_data_name, label_column=label_column)
    except (UploadError, DataError, RunError, ValueError) as e:
        return UploadOutcome(False, error_line(e))
    except Exception as e:  # noqa: BLE001 - anything else from a hostile file is still one line
        return UploadOutcome(False, f"could not import {Path(filename).name}: {type(e).__name__}: {error_line(e)}")
    clear_caches()
    return UploadOutcome(True, f"Imported {Path(filename).name} as run {rep.name}; it is now the active run.",
                         rep.path, rep)


@st.cache_data(show_spinner=False, max_entries=8)
def _inspect(filename: str, data: bytes) -> dict[str, Any]:
    try:
        return {"ok": True, **inspect_upload(filename, data)}
    except (UploadError, ValueError, RunError) as e:
        return {"ok": False, "message": error_line(e)}
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "message": f"{type(e).__name__}: {error_line(e)}"}


def _activation(kw: dict, key: str, col: Any) -> str:
    return col.selectbox("Activation", ACTIVATIONS, key=key,
                         index=ACTIVATIONS.index(kw["activation"]) if kw.get("activation") in ACTIVATIONS else 0,
                         help="Not visible in the weights: pick the one the model was trained with (default relu).")


def _architecture_widgets(guess: dict | None) -> dict:
    """The architecture, pre-filled from what the weights' names and shapes say (``guess``)."""
    kw = dict((guess or {}).get("kwargs") or {})
    names = ["mlp", "cnn", "resnet20"]
    g = (guess or {}).get("name", "mlp")
    model = st.selectbox("Architecture", names, index=names.index(g) if g in names else 0, key="probe_model",
                         help="Read off the layer structure (renamed layouts are matched by graph order and "
                              "shapes); the weights are checked against it.")
    st.caption("Activations are not stored in the weights: **relu** is assumed unless you choose another.")
    if model == "mlp":
        c1, c2, c3, c4 = st.columns(4)
        if kw.get("widths"):  # hidden layers of different widths (e.g. fc1 12 -> fc2 8)
            text = c1.text_input("Hidden widths", ", ".join(str(w) for w in kw["widths"]), key="probe_widths")
            try:
                widths = [int(w) for w in text.replace(" ", "").split(",") if w]
            except ValueError:
                widths = []
            act = _activation(kw, "probe_act", c3)
            bn = c4.toggle("BatchNorm", value=bool(kw.get("batchnorm", False)), key="probe_bn")
            return {"name": "mlp", "widths": widths, "activation": act, "batchnorm": bool(bn)}
        width = c1.number_input("Width", 1, 4096, int(kw.get("width", 64)), key="probe_width")
        depth = c2.number_input("Hidden layers", 0, 32, int(kw.get("depth", 2)), key="probe_depth")
        act = _activation(kw, "probe_act", c3)
        bn = c4.toggle("BatchNorm", value=bool(kw.get("batchnorm", False)), key="probe_bn")
        return mlp_spec(width, depth, act, bn)
    if model == "cnn":
        c1, c2, c3 = st.columns(3)
        ch = c1.number_input("Channels", 1, 512, int(kw.get("channels", 16)), key="probe_channels")
        act = _activation(kw, "probe_cnn_act", c2)
        bn = c3.toggle("BatchNorm", value=bool(kw.get("batchnorm", False)), key="probe_cnn_bn")
        return {"name": "cnn", "channels": int(ch), "activation": act, "batchnorm": bool(bn)}
    c1, c2 = st.columns(2)
    w = c1.number_input("Base width", 1, 256, int(kw.get("width", 16)), key="probe_rn_width")
    shortcuts = ["projection", "zeropad"]
    sc = c2.selectbox("Shortcut", shortcuts, index=shortcuts.index(kw.get("shortcut", "projection"))
                      if kw.get("shortcut") in shortcuts else 0, key="probe_rn_shortcut",
                      help="zeropad: the parameter-free option A of the original CIFAR ResNet paper.")
    return {"name": "resnet20", "width": int(w), "shortcut": sc}


def _data_widgets(guessed: str | None) -> tuple[str | None, str | None, bytes | None, str]:
    """``(dataset, data file name, data bytes, label column)``: an embedded dataset or the user's own file."""
    own = st.file_uploader("Your own data (optional)", type=DATA_TYPES, key="probe_data",
                           help=".npz with X, y (optional X_test, y_test; read without pickle) or a .csv with a "
                                "label column; shape-checked against the model and stored with the run.")
    label = st.text_input("Label column (.csv)", "label", key="probe_label")
    if own is not None:
        st.caption(f"Data: **{own.name}** (used instead of an embedded dataset).")
        return None, own.name, own.getvalue(), label.strip() or "label"
    opts = [AUTO_DATASET, *DATASETS]
    ds = st.selectbox("Dataset", opts, index=opts.index(guessed) if guessed in opts else 0, key="probe_dataset",
                      help="The data the analysis pages evaluate this model on.")
    return (None if ds == AUTO_DATASET else ds), None, None, label


def checkpoint_widgets() -> tuple[str, bytes, ProbeSettings] | None:
    """The uploader, what the file holds, and the import settings; ``None`` when there is no usable file."""
    up = st.file_uploader("Checkpoint", type=ACCEPTED_TYPES, key="probe_file",
                          help="Recognised by content, not by extension; loaded weights-only, nothing in the "
                               "file is executed.")
    if up is None:
        st.caption("Accepted: a run zip (Runs page -> Download); a state dict as `.safetensors` or "
                   "`.pt/.pth/.th/.bin/.ckpt` (plain, DataParallel `module.`, torch.compile, Hugging Face "
                   "`pytorch_model.bin`, Lightning `.ckpt`); an ONNX graph (`.onnx`) for other architectures.")
        return None
    data = up.getvalue()
    info = _inspect(up.name, data)
    if not info["ok"]:
        show_error(info["message"])
        return None
    extra = "".join(f", {w}" for w in (info.get("wrapper") and f"weights under {info['wrapper']!r}",
                                       info.get("prefix_stripped") and f"prefix {info['prefix_stripped']!r}") if w)
    st.write(f"**{info['filename']}**: {_KIND_WORDS.get(info['kind'], info['kind'])}{extra}, "
             f"{info['num_tensors']} tensors, {info['num_params']:,} numbers.")
    with st.expander("Tensors in the file"):
        st.dataframe([{"name": t["name"], "shape": str(t["shape"]), "dtype": t["dtype"]} for t in info["tensors"]],
                     hide_index=True)
    spec = _architecture_widgets(info.get("guessed_model")) if info["kind"] in ("pt", "safetensors") else None
    dataset, data_name, own, label = _data_widgets(info.get("guessed_dataset"))
    name = st.text_input("Run name (optional)", key="probe_name", placeholder="from the file name")
    return up.name, data, ProbeSettings(spec, dataset, data_name, own, label, name.strip() or None)


def import_block(filename: str, data: bytes, s: ProbeSettings) -> None:
    """The import button; on success the run becomes the active run and its report is remembered."""
    if not st.button("Import as a run", type="primary", key="probe_go"):
        return
    with st.spinner("Checking and importing..."):
        out = process_upload(filename, data, model_spec=s.model_spec, dataset=s.dataset, name=s.name,
                             user_data=s.data, user_data_name=s.data_name, label_column=s.label_column)
    if out.ok:
        set_active_run(out.path)
        st.session_state["probe_last"] = out.path
        st.session_state["probe_ok"] = out.message
        refresh_active_run_caption()
        st.rerun()  # the sidebar was drawn before the import: draw it again with the new active run
    else:
        st.session_state.pop("probe_last", None)
        show_error(out.message)


def _open(path: str, page: str) -> None:
    set_active_run(path)
    try:
        st.switch_page(page)
    except StreamlitAPIException:  # pages not registered (a page run alone, as in AppTest)
        st.session_state["probe_flash"] = "It is the active run: open the page from the sidebar."


def report_view() -> None:
    """What the last import detected, and buttons that open the analysis pages on it."""
    ok = st.session_state.pop("probe_ok", None)
    if ok:
        st.success(ok)
    path = st.session_state.get("probe_last")
    if not path:
        return
    try:
        rep = import_report(path)
    except (UploadError, RunError, ValueError):  # deleted or renamed since
        st.session_state.pop("probe_last", None)
        return
    st.subheader(f"What was detected: {rep.name}")
    spec_kw = {k: v for k, v in rep.model_spec.get("kwargs", {}).items() if k not in ("file", "sha256")}
    st.markdown(f"- **Format**: {rep.format}\n- **Architecture**: `{rep.architecture}` "
                f"{', '.join(f'{k}={v}' for k, v in spec_kw.items())}\n"
                f"- **Parameters**: {rep.n_params:,}\n- **Data**: {rep.data or 'none'}")
    if rep.metrics:
        cols = st.columns(4)
        for col, (k, label) in zip(cols, (("train_loss", "train loss"), ("test_loss", "test loss"),
                                          ("train_acc", "train acc"), ("test_acc", "test acc"))):
            v = rep.metrics.get(k)
            col.metric(label, "-" if v is None else (f"{v:.1%}" if k.endswith("acc") else f"{v:.4f}"))
    health = run_health(read_meta(path))  # set by the import plausibility check (health.check_import)
    if health is not None:
        st.warning(f"**Suspect import**: {health['message']}")
    st.caption("Key mapping: " + ("the file's names differ from the model's; matched by graph order and shapes."
                                  if rep.renamed else "the file's names are the model's own."))
    st.dataframe(rep.mapping_table(), hide_index=True)
    for note in rep.notes:
        st.caption(f"Note: {note}")
    st.write("**Analyse** this run (it becomes the active run):")
    for col, (label, page, icon) in zip(st.columns(len(ANALYSES)), ANALYSES):
        if col.button(label, icon=icon, key=f"probe_open_{Path(page).stem}"):
            _open(path, page)
    flash = st.session_state.pop("probe_flash", None)
    if flash:
        st.info(flash)
