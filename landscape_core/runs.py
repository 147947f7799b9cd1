"""Run folders: what training writes and every analysis reads.

A run is a folder holding
- ``run.json``: format version, model spec, dataset spec, optimizer and training config, per-epoch
  history, final metrics, timings, library versions and the weights' content hash;
- ``model.safetensors``: the final state dict (parameters and buffers);
- ``trajectory.safetensors`` (optional): parameter snapshots along training, one tensor per parameter
  with a leading snapshot axis, plus ``__steps__`` (int64 step numbers).

Writes are atomic: everything goes to a hidden temporary folder beside the target, which is then
renamed into place, so a half-written run is never visible to :func:`list_runs`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .data import DataBundle, load_dataset
from .graph_import import GRAPH_FILE, MODEL_DEF, ONNX_MODEL, rebuild
from .models import build_model
from .params import weights_hash
from .user_data import DATA_FILE, USER_DATA, load_user_bundle

FORMAT_VERSION = 1
RUN_JSON, MODEL_FILE, TRAJ_FILE = "run.json", "model.safetensors", "trajectory.safetensors"
EXTRA_FILES = (GRAPH_FILE, DATA_FILE)  # a graph-format model's ONNX file; the user's own data
STEPS_KEY = "__steps__"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


class RunError(RuntimeError):
    """A run folder is missing, incomplete, or inconsistent."""


def workspace_dir(override: str | os.PathLike | None = None) -> Path:
    """Where user runs live: ``override``, else ``$LANDSCAPE_WORKSPACE``, else ``./workspace``."""
    p = Path(override or os.environ.get("LANDSCAPE_WORKSPACE", "workspace"))
    return p


def checkpoints_dir() -> Path:
    """The shipped demo runs (``checkpoints/`` at the repository root)."""
    return Path(__file__).resolve().parent.parent / "checkpoints"


def library_versions() -> dict[str, str]:
    import numpy

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "landscape_core": "0.1.0",
    }


def validate_run_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise ValueError(
            f"invalid run name {name!r}: use 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


@dataclass
class Run:
    """A loaded run. ``model`` is in eval mode with the saved weights; data are ``(X, y)`` tensors."""

    path: Path
    meta: dict
    model: nn.Module
    data: DataBundle
    _trajectory: tuple[dict[str, Tensor], Tensor] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.meta.get("name", self.path.name)

    @property
    def train_data(self) -> tuple[Tensor, Tensor]:
        return self.data.train

    @property
    def test_data(self) -> tuple[Tensor, Tensor]:
        return self.data.test

    @property
    def weights_hash(self) -> str:
        return self.meta["weights_hash"]

    def trajectory(self) -> tuple[dict[str, Tensor], Tensor]:
        """``(snapshots, steps)``: ``snapshots[name]`` has shape ``(S, *param_shape)``.

        Raises RunError when the run stored no trajectory.
        """
        if self._trajectory is None:
            f = self.path / TRAJ_FILE
            if not f.exists():
                raise RunError(f"run {self.name!r} has no trajectory snapshots")
            t = load_file(str(f))
            steps = t.pop(STEPS_KEY)
            self._trajectory = (t, steps)
        return self._trajectory


def save_run(
    path: str | os.PathLike,
    model: nn.Module,
    meta: Mapping[str, Any],
    trajectory: tuple[Mapping[str, Tensor], Tensor] | None = None,
    *,
    overwrite: bool = False,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Atomically write a run folder at ``path`` and return it.

    ``meta`` must contain ``model`` (spec) and ``dataset`` (spec dict); format version, weights hash,
    library versions and creation time are filled in here. ``extra_files`` (names from
    :data:`EXTRA_FILES`: an imported ONNX graph, the user's own data) are written in the same atomic step.
    """
    path = Path(path)
    if "model" not in meta or "dataset" not in meta:
        raise ValueError("run metadata needs 'model' and 'dataset' specs")
    bad = [n for n in (extra_files or {}) if n not in EXTRA_FILES]
    if bad:
        raise ValueError(f"extra run file {bad[0]!r} is not allowed; allowed: {', '.join(EXTRA_FILES)}")
    if path.exists() and not overwrite:
        raise RunError(f"run folder {path} already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    full = dict(meta)
    full.setdefault("name", path.name)
    full["format_version"] = FORMAT_VERSION
    full["weights_hash"] = weights_hash(state)
    full.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    full["versions"] = library_versions()
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
    old: Path | None = None
    try:
        save_file(state, str(tmp / MODEL_FILE))
        if trajectory is not None:
            snaps, steps = trajectory
            t = {k: v.detach().to("cpu").contiguous() for k, v in snaps.items()}
            t[STEPS_KEY] = torch.as_tensor(steps, dtype=torch.int64).contiguous()
            save_file(t, str(tmp / TRAJ_FILE))
        for fname, blob in (extra_files or {}).items():
            (tmp / fname).write_bytes(blob)
        (tmp / RUN_JSON).write_text(json.dumps(full, indent=2, default=_json_default))
        if overwrite and path.exists():  # overwrite: move the old one aside first, then swap
            old = path.parent / f".old-{path.name}-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            # rename(2) refuses a non-empty target, so a run another process saved under the same
            # name in the meantime is never replaced: the loser gets RunError and nothing changes.
            try:
                os.rename(tmp, path)
            except OSError as e:
                if path.exists():
                    raise RunError(f"run folder {path} already exists") from e
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not path.exists():  # failed mid-swap: put the old run back
            os.replace(old, path)
        raise
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_meta(path: str | os.PathLike) -> dict:
    """Parse ``run.json`` of a run folder (no weights loaded)."""
    f = Path(path) / RUN_JSON
    if not f.is_file():
        raise RunError(f"{path} is not a run folder (no {RUN_JSON})")
    try:
        meta = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{f} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise RunError(f"{f}: unsupported run format version {meta.get('format_version')!r}")
    return meta


def load_run(path: str | os.PathLike, *, device: str | torch.device = "cpu", verify: bool = True) -> Run:
    """Load a run folder: model (eval mode, weights loaded), dataset tensors and metadata.

    With ``verify`` the weights' content hash is checked against ``run.json``.
    """
    path = Path(path)
    meta = read_meta(path)
    mf = path / MODEL_FILE
    if not mf.is_file():
        raise RunError(f"run {path} has no {MODEL_FILE}")
    try:
        state = load_file(str(mf))
    except Exception as e:
        raise RunError(f"{mf} could not be read: {e}") from None
    if verify and weights_hash(state) != meta.get("weights_hash"):
        raise RunError(f"run {path}: weights do not match the hash in {RUN_JSON} (file changed or corrupt)")
    spec = meta["model"]
    if isinstance(spec, dict) and spec.get("name") in (ONNX_MODEL, MODEL_DEF):
        try:
            model = rebuild(path, spec)
        except ValueError as e:
            raise RunError(f"run {path}: {e}") from None
    else:
        model = build_model(spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise RunError(f"run {path}: weights do not fit the model spec: {first[1] if len(first) > 1 else first[0]}") from None
    model = model.to(device).eval()
    ds = meta["dataset"]
    if isinstance(ds, dict) and ds.get("name") == USER_DATA:
        try:
            data = load_user_bundle(path, ds)
        except (ValueError, KeyError, OSError) as e:
            raise RunError(f"run {path}: its own data could not be read: {e}") from None
    else:
        data = load_dataset(ds)
    return Run(path=path, meta=meta, model=model, data=data)


@dataclass(frozen=True)
class RunInfo:
    path: Path
    meta: dict
    source: str  # "shipped" or "workspace"

    @property
    def name(self) -> str:
        return self.meta.get("name", self.path.name)


def list_runs(*folders: str | os.PathLike, include_shipped: bool = True) -> list[RunInfo]:
    """Complete runs in the given folders (default: workspace), plus the shipped ones.

    Hidden temporary folders and broken runs are skipped, so an interrupted save never shows.
    """
    sources: list[tuple[Path, str]] = []
    if include_shipped:
        sources.append((checkpoints_dir(), "shipped"))
    for f in folders or (workspace_dir(),):
        sources.append((Path(f), "workspace"))
    out: list[RunInfo] = []
    seen: set[Path] = set()
    for folder, source in sources:
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if p.name.startswith(".") or not p.is_dir() or p.resolve() in seen:
                continue
            if not (p / MODEL_FILE).is_file():
                continue
            try:
                meta = read_meta(p)
            except RunError:
                continue
            seen.add(p.resolve())
            out.append(RunInfo(p, meta, source))
    return out


def delete_run(path: str | os.PathLike, *, workspace: str | os.PathLike | None = None) -> None:
    """Delete a run folder; only runs inside the workspace may be deleted."""
    path = Path(path).resolve()
    ws = workspace_dir(workspace).resolve()
    if ws not in path.parents:
        raise RunError(f"refusing to delete {path}: only runs inside the workspace {ws} can be deleted")
    read_meta(path)
    trash = path.parent / f".del-{path.name}-{uuid.uuid4().hex[:8]}"
    os.replace(path, trash)  # atomic disappearance from list_runs
    shutil.rmtree(trash, ignore_errors=True)


def rename_run(path: str | os.PathLike, new_name: str, *, workspace: str | os.PathLike | None = None) -> Path:
    """Rename a workspace run (folder and ``name`` in run.json)."""
    validate_run_name(new_name)
    path = Path(path).resolve()
    ws = workspace_dir(workspace).resolve()
    if ws not in path.parents:
        raise RunError(f"only runs inside the workspace {ws} can be renamed")
    target = path.parent / new_name
    if target.exists():
        raise RunError(f"a run named {new_name!r} already exists")
    meta = read_meta(path)
    meta["name"] = new_name
    tmp = path / f".{RUN_JSON}.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path / RUN_JSON)
    os.replace(path, target)
    return target


def cleanup_partial(folder: str | os.PathLike | None = None) -> int:
    """Remove leftovers of interrupted saves/deletes (hidden ``.tmp-``/``.old-``/``.del-`` folders).

    An ``.old-NAME-xxxxxxxx`` folder whose run ``NAME`` is missing (an overwrite killed between its two
    renames) is renamed back to ``NAME`` instead of deleted, so the previous run is recovered.
    """
    folder = workspace_dir(folder)
    n = 0
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_dir() and p.name.startswith((".tmp-", ".old-", ".del-")):
                target = folder / p.name[len(".old-") : -9] if p.name.startswith(".old-") else None
                if target is not None and p.name[-9] == "-" and target.name and not target.exists():
                    os.replace(p, target)
                else:
                    shutil.rmtree(p, ignore_errors=True)
                n += 1
    return n


def unique_run_path(folder: str | os.PathLike, stem: str) -> Path:
    """``folder/stem``, or ``folder/stem-2``, ``-3``... if taken."""
    folder = Path(folder)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "run"
    p, i = folder / stem, 2
    while p.exists():
        p, i = folder / f"{stem}-{i}", i + 1
    return p


def export_zip(run_path: str | os.PathLike, dest_zip: str | os.PathLike) -> Path:
    """Write the run folder as a zip (entries relative to the folder, e.g. ``run.json``) and return its path.

    Only the run's regular files are stored (no hidden leftovers, links or absolute names); the archive
    is written to a temporary file beside ``dest_zip`` and renamed into place.
    """
    import zipfile

    run_path = Path(run_path)
    read_meta(run_path)  # refuses folders that are not runs
    dest = Path(dest_zip)
    dest.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(
        p for p in run_path.rglob("*")
        if p.is_file() and not p.is_symlink() and not any(part.startswith(".") for part in p.relative_to(run_path).parts)
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}-", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for p in files:
                zf.write(p, arcname=p.relative_to(run_path).as_posix())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
