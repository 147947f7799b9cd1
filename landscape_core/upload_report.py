"""The import report: what an upload import detected and did (format, architecture, key mapping, data)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .matching import MappingRow
from .runs import RUN_JSON, read_meta
from .upload_files import UploadError

FORMAT_NAMES = {
    "run_zip": "run exported by the app (zip)",
    "safetensors": "safetensors state dict",
    "pt": "PyTorch state dict (torch.save, loaded weights-only)",
    "onnx": "ONNX model graph",
}


@dataclass(frozen=True)
class ImportReport:
    """What an import detected and did, for display (Probe page, CLI) and stored in ``run.json``.

    Attributes:
        path: the new run folder.
        name: the run's name.
        kind: ``run_zip``, ``safetensors``, ``pt`` or ``onnx`` (decided by the file's content).
        format: the format in words, with the wrapper key / prefix when there was one.
        architecture: registry name (``mlp``, ``cnn``, ``resnet20``), ``onnx`` or ``model_def``.
        model_spec: the full spec the run rebuilds its model from.
        n_params: number of trainable parameters (what curvature is computed over).
        mapping: file key -> model key, shape, one row per tensor, in the model's order.
        renamed: whether the file's keys differed from the model's (a structural match).
        data: the data the run is evaluated and analysed on, in words.
        dataset: the run's dataset spec (embedded dataset or the user's own data).
        notes: what was assumed or converted (e.g. the activation, reshaped inputs).
        weights_hash: content hash of the stored weights.
        metrics: train/test loss and accuracy of the imported model.
    """

    path: str
    name: str
    kind: str
    format: str
    architecture: str
    model_spec: dict
    n_params: int
    mapping: tuple[MappingRow, ...]
    renamed: bool
    data: str
    dataset: dict
    notes: tuple[str, ...] = ()
    weights_hash: str = ""
    metrics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["mapping"] = [r.to_dict() for r in self.mapping]
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImportReport:
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        kw["mapping"] = tuple(MappingRow.from_dict(r) for r in d.get("mapping", ()))
        kw["notes"] = tuple(d.get("notes", ()))
        return cls(**kw)

    def mapping_table(self) -> list[dict]:
        """Rows ``{"file key", "model key", "shape"}`` ready for a table widget."""
        return [{"file key": r.file_key, "model key": r.model_key, "shape": str(tuple(r.shape))}
                for r in self.mapping]


def import_report(run_path: str | os.PathLike) -> ImportReport:
    """The :class:`ImportReport` stored in an imported run's ``run.json``."""
    meta = read_meta(run_path)
    if not isinstance(meta.get("import"), dict):
        raise UploadError(f"run {run_path} was not imported (no import report in {RUN_JSON})")
    return ImportReport.from_dict({**meta["import"], "path": str(run_path), "name": meta.get("name", "")})
