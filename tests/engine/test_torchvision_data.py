"""torchvision datasets read from small local copies written in each dataset's own on-disk format.

MNIST / Fashion-MNIST: the raw IDX files torchvision 0.29 reads from ``<root>/<Class>/raw/``
(``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``; only their presence is checked). CIFAR-10: the python pickle batches in
``<root>/cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``, ``batches.meta``). torchvision
checks those against the official MD5s, which a fixture cannot match, so ``landscape_core.data``
reads them itself (array-only unpickler) when torchvision refuses: tested here, including a file that
tries to smuggle in code.
"""

from __future__ import annotations

import pickle
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from landscape_core.data import DataError, DatasetSpec, load_dataset


def _write_idx_images(path: Path, images: np.ndarray) -> None:
    n, h, w = images.shape
    path.write_bytes(struct.pack(">iiii", 0x00000803, n, h, w) + images.astype(np.uint8).tobytes())


def _write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">ii", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes())


def _mnist_copy(root: Path, folder: str, n_train: int = 30, n_test: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        _write_idx_images(raw / f"{prefix}-images-idx3-ubyte", imgs)
        _write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[prefix] = (imgs, labels)
    return out


@pytest.mark.parametrize("name,folder,mean,std", [
    ("mnist", "MNIST", 0.1307, 0.3081),
    ("fashion_mnist", "FashionMNIST", 0.2860, 0.3530),
])
def test_mnist_family_from_idx_files(tmp_path, name, folder, mean, std):
    written = _mnist_copy(tmp_path, folder)
    b = load_dataset(DatasetSpec(name=name, root=str(tmp_path)))
    (Xtr, ytr), (Xte, yte) = b.train, b.test
    imgs, labels = written["train"]
    assert Xtr.shape == (30, 1, 28, 28) and Xte.shape == (12, 1, 28, 28)
    assert Xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    expected = (torch.from_numpy(imgs).float().unsqueeze(1) / 255.0 - mean) / std
    torch.testing.assert_close(Xtr, expected, rtol=1e-6, atol=1e-6)
    assert ytr.tolist() == labels.tolist() and yte.tolist() == written["t10k"][1].tolist()
    assert b.input_shape == (1, 28, 28) and b.num_classes == 10
    capped = load_dataset(DatasetSpec(name=name, root=str(tmp_path), train_size=10))
    assert len(capped.train[1]) == 10 and torch.bincount(capped.train[1]).tolist() == [1] * 10


def _cifar_copy(root: Path, per_batch: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        entry = {"batch_label": name, "labels": labels, "data": data,
                 "filenames": [f"img{i}.png" for i in range(per_batch)]}
        (d / name).write_bytes(pickle.dumps(entry, protocol=2))
        batches[name] = (data, labels)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (d / "batches.meta").write_bytes(pickle.dumps({"label_names": names, "num_vis": 3072}, protocol=2))
    return batches


def test_cifar10_from_pickle_batches(tmp_path):
    batches = _cifar_copy(tmp_path)
    b = load_dataset(DatasetSpec(name="cifar10", root=str(tmp_path)))
    (Xtr, ytr), (Xte, yte) = b.train, b.test
    assert Xtr.shape == (30, 3, 32, 32) and Xte.shape == (6, 3, 32, 32)
    raw = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    torch.testing.assert_close(Xtr, (torch.from_numpy(raw).float() / 255.0 - mean) / std, rtol=1e-6, atol=1e-6)
    assert ytr.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert yte.tolist() == batches["test_batch"][1]
    assert b.class_names[:3] == ("airplane", "automobile", "bird")
    assert b.input_shape == (3, 32, 32)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_cifar10_batch_with_code_is_refused_and_never_run(tmp_path):
    _cifar_copy(tmp_path)
    marker = tmp_path / "pwned"
    bad = {"labels": [0], "data": np.zeros((1, 3072), np.uint8), "x": _Evil(marker)}
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match="refusing"):
        load_dataset(DatasetSpec(name="cifar10", root=str(tmp_path)))
    assert not marker.exists()


def _offline(*args, **kwargs):
    raise urllib.error.URLError("no network")


@pytest.mark.parametrize("name,cls", [("mnist", "MNIST"), ("cifar10", "CIFAR10"), ("fashion_mnist", "FashionMNIST")])
def test_missing_copy_without_network_is_a_one_line_data_error(tmp_path, monkeypatch, name, cls):
    monkeypatch.setattr(getattr(torchvision.datasets, cls), "download", _offline)
    with pytest.raises(DataError) as err:
        load_dataset(DatasetSpec(name=name, root=str(tmp_path / "empty")))
    msg = str(err.value)
    assert "\n" not in msg and name in msg and "download failed" in msg and str(tmp_path / "empty") in msg
    # it says which files to put where, and leaves no empty folders behind
    expected = "data_batch_1..5" if name == "cifar10" else f"{cls}/raw/ (train-images-idx3-ubyte"
    assert expected in msg, msg
    assert not (tmp_path / "empty").exists()


def test_failed_download_keeps_existing_folders_and_files(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", _offline)
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "MNIST" / "raw" / "notes.txt").write_text("mine")
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_dataset(DatasetSpec(name="mnist", root=str(tmp_path)))
    assert (tmp_path / "MNIST" / "raw" / "notes.txt").read_text() == "mine" and (tmp_path / "other").is_dir()
