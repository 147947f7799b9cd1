"""The Runs page: a table of shipped + workspace runs, and rename / delete / download / make-active actions.

The actions are plain functions (testable without a browser); :func:`render_runs_page` draws them.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd
import streamlit as st

from landscape_core import runs as _runs

from .cache import clear_caches, list_runs_cached
from .common import show_error
from .state import get_active_run, set_active_run, workspace

TABLE_COLUMNS = ["name", "status", "source", "dataset", "model", "optimizer", "lr", "batch_size", "epochs",
                 "test_acc", "train_acc", "acc_gap", "gen_gap", "sec_per_epoch"]


def runs_table(rows: list[dict]) -> pd.DataFrame:
    """The run rows as a DataFrame with the columns users compare runs by."""
    df = pd.DataFrame(rows, columns=[*TABLE_COLUMNS, "path"])
    return df.set_index("name") if len(df) else df


def rename_workspace_run(path: str, new_name: str) -> str:
    """Rename a workspace run; returns the new folder path. Raises ValueError/RunError with one line."""
    new = _runs.rename_run(path, new_name.strip(), workspace=workspace())
    clear_caches()
    return str(new)


def delete_workspace_run(path: str) -> None:
    """Delete a workspace run (shipped runs are refused by ``landscape_core.runs.delete_run``)."""
    _runs.delete_run(path, workspace=workspace())
    clear_caches()


def run_zip_bytes(path: str) -> bytes:
    """The run folder as a zip archive (``landscape_core.runs.export_zip`` when available)."""
    export = getattr(_runs, "export_zip", None)
    if export is not None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / f"{Path(path).name}.zip"
            res = export(path, out)
            target = Path(res) if isinstance(res, (str, Path)) else out
            if isinstance(res, (bytes, bytearray)):
                return bytes(res)
            return target.read_bytes()
    buf = io.BytesIO()
    root = Path(path)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                zf.write(f, f"{root.name}/{f.relative_to(root)}")
    return buf.getvalue()


def _actions(row: dict) -> None:
    path = row["path"]
    is_ws = row["source"] == "workspace"
    c1, c2 = st.columns(2)
    with c1:
        if st.button("Make active run", key="runs_make_active", disabled=path == get_active_run()):
            set_active_run(path)
            st.rerun()
        st.download_button(
            "Download as zip", data=lambda: run_zip_bytes(path), file_name=f"{row['name']}.zip",
            mime="application/zip", key="runs_download",
        )
    with c2:
        if not is_ws:
            st.caption("Shipped runs are read-only: rename and delete apply to workspace runs.")
            return
        new = st.text_input("New name", value=row["name"], key="runs_new_name")
        if st.button("Rename", key="runs_rename"):
            try:
                new_path = rename_workspace_run(path, new)
                if get_active_run() in (None, path):
                    set_active_run(new_path)
                st.session_state["runs_flash"] = f"Renamed to {Path(new_path).name}."
                st.session_state.pop("runs_selected", None)
                st.rerun()
            except (ValueError, _runs.RunError) as e:
                show_error(e)
        sure = st.checkbox("I am sure: delete this run for good", key="runs_confirm_delete")
        if st.button("Delete", key="runs_delete", disabled=not sure, type="primary"):
            try:
                delete_workspace_run(path)
                if st.session_state.get("active_run") == path:
                    st.session_state["active_run"] = None
                st.session_state["runs_flash"] = f"Deleted {row['name']}."
                st.session_state.pop("runs_selected", None)
                st.session_state.pop("runs_confirm_delete", None)
                st.rerun()
            except (ValueError, _runs.RunError) as e:
                show_error(e)


def render_runs_page() -> None:
    """Draw the Runs page."""
    flash = st.session_state.pop("runs_flash", None)
    if flash:
        st.success(flash)
    rows = list_runs_cached()
    if not rows:
        st.info("No runs yet. Train one on the **Train** page or import a checkpoint on the **Probe checkpoint** page.")
        return
    table = runs_table(rows).drop(columns=["path"])
    table.insert(1, "origin", [_origin(r) for r in rows])  # imported runs: file and format
    st.dataframe(
        table,
        width="stretch",
        column_config={
            "test_acc": st.column_config.NumberColumn("test acc", format="percent"),
            "train_acc": st.column_config.NumberColumn("train acc", format="percent"),
            "acc_gap": st.column_config.NumberColumn("acc gap", format="percent"),
            "gen_gap": st.column_config.NumberColumn("loss gap", format="%.3f"),
            "sec_per_epoch": st.column_config.NumberColumn("s / epoch", format="%.2f"),
        },
    )
    st.caption(f"Workspace folder: `{workspace()}` · loss gap = test loss - train loss.")
    names = [r["name"] + ("" if r["source"] == "workspace" else " (shipped)") for r in rows]
    active = get_active_run()
    paths = [r["path"] for r in rows]
    idx = paths.index(active) if active in paths else 0
    if st.session_state.get("runs_selected") not in (None, *names):
        st.session_state.pop("runs_selected")
    choice = st.selectbox("Run", names, index=idx, key="runs_selected")
    row = rows[names.index(choice)]
    st.subheader(row["name"])
    st.caption(f"`{row['path']}` · weights {row['weights_hash'][:12]}")
    _actions(row)


def _origin(row: dict) -> str:
    """``trained`` / ``shipped``, or ``imported <file> (<format>)`` for a checkpoint probed on the Probe page."""
    try:
        meta = _runs.read_meta(row["path"])
    except (_runs.RunError, OSError, ValueError):
        return ""
    up = meta.get("upload") if isinstance(meta.get("upload"), dict) else None
    if up is None:
        return "shipped" if row["source"] != "workspace" else "trained"
    return f"imported {up.get('filename', '?')} ({up.get('kind', '?')})"
