"""Zip checks for uploads: exported run zips and the zip container of ``torch.save`` files.

Zips are checked from the central directory BEFORE anything is extracted: entry count, names (no
absolute paths, no ``..``, no backslashes, no symlinks, only the known file names), total uncompressed
size and per-entry compression ratio (zip bombs). Extraction then streams each entry with a hard byte
cap, because the sizes a zip declares can lie, into a hidden ``.tmp-upload-*`` folder inside the
workspace that is removed afterwards (:func:`landscape_core.runs.cleanup_partial` removes leftovers of a
crash). TorchScript (``code/``, ``constants.pkl``) and ``torch.export`` archives are refused here.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from .runs import FORMAT_VERSION, MODEL_FILE, RUN_JSON
from .upload_files import (
    MAX_PT_ZIP_ENTRIES,
    MAX_RATIO,
    MAX_RUN_JSON_BYTES,
    MAX_RUN_ZIP_ENTRIES,
    PT2_REFUSAL,
    RATIO_MIN_BYTES,
    RUN_ZIP_FILES,
    TORCHSCRIPT_REFUSAL,
    UploadError,
    megabytes,
)


# --- zip checks --------------------------------------------------------------------------------
def _open_zip(buf: bytes, what: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(buf))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise UploadError(f"{what} is not a valid zip archive (truncated or corrupt)") from None


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _check_entry_name(name: str) -> PurePosixPath:
    if not name or "\x00" in name or "\\" in name:
        raise UploadError(f"zip entry name {name!r} is not allowed")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise UploadError(f"zip entry {name!r} has an absolute path")
    p = PurePosixPath(name)
    if any(part in ("..", ".") for part in p.parts):
        raise UploadError(f"zip entry {name!r} escapes its folder ('..')")
    return p


def _check_zip_sizes(zf: zipfile.ZipFile, *, max_entries: int, max_total: int, what: str) -> list[zipfile.ZipInfo]:
    """Entry count, symlinks, encryption, total size and compression ratio, from the central directory."""
    infos = zf.infolist()
    if len(infos) > max_entries:
        raise UploadError(f"{what} has {len(infos)} entries; at most {max_entries} are allowed")
    total = 0
    for info in infos:
        if _is_symlink(info):
            raise UploadError(f"zip entry {info.filename!r} is a symbolic link; links are not allowed")
        if info.flag_bits & 0x1:
            raise UploadError(f"zip entry {info.filename!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UploadError(f"zip entry {info.filename!r} uses an unsupported compression method")
        total += info.file_size
        if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise UploadError(
                f"zip entry {info.filename!r} expands {ratio:.0f}x ({megabytes(info.file_size)}); "
                f"compression ratios above {MAX_RATIO:.0f}x are refused (zip bomb?)"
            )
    if total > max_total:
        raise UploadError(f"{what} would expand to {megabytes(total)}, over the limit of {megabytes(max_total)}")
    return infos


def _run_zip_entries(zf: zipfile.ZipFile, max_bytes: int) -> dict[str, zipfile.ZipInfo]:
    """Validate an exported-run zip and map each known file name to its entry."""
    parts = [PurePosixPath(n).parts for n in zf.namelist()]
    if any(p and p[-1] == "archive_format" for p in parts):
        raise UploadError(PT2_REFUSAL)
    if any(p and p[-1] == "data.pkl" for p in parts):
        if any("constants.pkl" in p or "code" in p[:-1] for p in parts):
            raise UploadError(TORCHSCRIPT_REFUSAL)
        raise UploadError("this zip is a PyTorch checkpoint (torch.save), not a run export; upload it as .pt")
    infos = _check_zip_sizes(zf, max_entries=MAX_RUN_ZIP_ENTRIES, max_total=2 * max_bytes, what="run zip")
    files: dict[str, zipfile.ZipInfo] = {}
    prefixes: set[tuple[str, ...]] = set()
    for info in infos:
        p = _check_entry_name(info.filename)
        if info.is_dir():
            if len(p.parts) > 1:
                raise UploadError(f"zip entry {info.filename!r}: nested folders are not allowed in a run zip")
            continue
        if len(p.parts) > 2:
            raise UploadError(f"zip entry {info.filename!r}: files must be at the top level or in one folder")
        if p.name not in RUN_ZIP_FILES:
            raise UploadError(f"unexpected file {info.filename!r} in run zip; allowed: {', '.join(RUN_ZIP_FILES)}")
        if p.name in files:
            raise UploadError(f"run zip contains {p.name!r} twice")
        prefixes.add(p.parts[:-1])
        files[p.name] = info
    if len(prefixes) > 1:
        raise UploadError("run zip files are spread over several folders; expected one run folder")
    for required in (RUN_JSON, MODEL_FILE):
        if required not in files:
            raise UploadError(f"run zip has no {required}; export a run with the app (Runs page) and upload that")
    if files[RUN_JSON].file_size > MAX_RUN_JSON_BYTES:
        raise UploadError(f"{RUN_JSON} in the zip is {megabytes(files[RUN_JSON].file_size)}; too large")
    return files


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest_dir: Path, name: str) -> Path:
    """Stream one entry to ``dest_dir/name`` (a fixed, known name), never past its declared size."""
    dest = (dest_dir / name).resolve()
    if dest.parent != dest_dir.resolve():
        raise UploadError(f"refusing to write {name!r} outside the upload folder")
    limit = info.file_size
    written = 0
    try:
        with zf.open(info) as src, open(dest, "xb") as out:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                written += len(chunk)
                if written > limit:
                    raise UploadError(f"zip entry {info.filename!r} is larger than it declares (zip bomb?)")
                out.write(chunk)
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        raise UploadError(f"zip entry {info.filename!r} is corrupt or truncated ({type(e).__name__})") from None
    return dest


def check_torch_zip(buf: bytes, max_bytes: int) -> None:
    """Refuse TorchScript archives and zip bombs hidden in a ``torch.save`` zip, before loading."""
    zf = _open_zip(buf, "checkpoint")
    with zf:
        infos = _check_zip_sizes(zf, max_entries=MAX_PT_ZIP_ENTRIES, max_total=2 * max_bytes, what="checkpoint")
        names = [i.filename for i in infos]
        for n in names:
            _check_entry_name(n)
        parts = [PurePosixPath(n).parts for n in names]
        if any("constants.pkl" in p or "code" in p[:-1] for p in parts):
            raise UploadError(TORCHSCRIPT_REFUSAL)
        if any(p[-1] == "archive_format" for p in parts):
            raise UploadError(PT2_REFUSAL)
        if not any(p[-1] == "data.pkl" for p in parts):
            if any(p[-1] in RUN_ZIP_FILES for p in parts):
                raise UploadError("this looks like a run zip exported by the app; upload it with a .zip extension")
            raise UploadError("zip file is not a PyTorch checkpoint (no data.pkl record)")


def parse_run_json(raw: bytes) -> dict:
    """A run zip's ``run.json``: valid JSON object, our format version, a model spec; else :class:`UploadError`."""
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise UploadError(f"{RUN_JSON} in the zip is not valid JSON ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise UploadError(f"{RUN_JSON} in the zip is not a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise UploadError(
            f"{RUN_JSON}: unsupported run format version {meta.get('format_version')!r} (expected {FORMAT_VERSION})"
        )
    if not isinstance(meta.get("model"), dict):
        raise UploadError(f"{RUN_JSON} has no model spec")
    return meta


def read_run_zip(buf: bytes, max_bytes: int) -> dict[str, bytes]:
    """The known files of a checked run zip as bytes, entries read in memory with hard caps (no disk)."""
    zf = _open_zip(buf, "run zip")
    with zf:
        files = _run_zip_entries(zf, max_bytes)
        blobs = {}
        for name, info in files.items():
            try:
                with zf.open(info) as src:
                    blob = src.read(info.file_size + 1)
            except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
                raise UploadError(f"zip entry {info.filename!r} is corrupt or truncated ({type(e).__name__})") from None
            if len(blob) > info.file_size:
                raise UploadError(f"zip entry {info.filename!r} is larger than it declares (zip bomb?)")
            blobs[name] = blob
    return blobs


def extract_run_zip(buf: bytes, ws: Path, max_bytes: int) -> dict[str, bytes]:
    """Check a run zip, stream its known files into a hidden temp folder in the workspace, return their bytes.

    The temp folder is removed before returning, whatever happens.
    """
    zf = _open_zip(buf, "run zip")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-upload-", dir=ws))
    try:
        with zf:
            files = _run_zip_entries(zf, max_bytes)
            paths = {n: _extract_member(zf, info, tmp, n) for n, info in files.items()}
        return {n: p.read_bytes() for n, p in paths.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
