"""FashionMNIST from the four original IDX files, found on disk or downloaded, and checked."""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import EllipsisType
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import TensorDataset

from qfed_qiskit.exceptions import DataError

logger = logging.getLogger(__name__)

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGE_MAGIC = 0x00000803
LABEL_MAGIC = 0x00000801
FULL_SIZES = (60_000, 10_000)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qfed-qiskit"
HOW_TO_GET = (
    "get it with `apt-get install dataset-fashion-mnist` (Debian), pass --data-dir DIR or set "
    "QFED_DATA_DIR to a folder holding the four IDX files"
)


@dataclass(frozen=True)
class FashionMNIST:
    """The train and test splits as uint8 images ``(N, 28, 28)`` and int64 labels ``(N,)``."""

    train_images: NDArray[np.uint8]
    train_labels: NDArray[np.int64]
    test_images: NDArray[np.uint8]
    test_labels: NDArray[np.int64]
    source: str


def _file_in(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _has_all(folder: Path) -> bool:
    return all(_file_in(folder, stem) is not None for stem in FILES.values())


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise DataError(
            f"{path}: cannot read ({reason}); the file is corrupt or truncated; {HOW_TO_GET}"
        ) from None


def read_idx(path: Path, *, kind: Literal["images", "labels"]) -> NDArray[np.uint8]:
    """Read one IDX file of ``kind`` ``"images"`` (N×28×28) or ``"labels"`` (N) and check it.

    Raises:
        DataError: Bad magic number, wrong dimensions, or a size that does not match the header.
    """
    raw = _read_bytes(path)
    magic, ndim = (IMAGE_MAGIC, 3) if kind == "images" else (LABEL_MAGIC, 1)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{path}: file is truncated ({len(raw)} bytes, header needs {header}); {HOW_TO_GET}"
        )
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(
            f"{path}: not an IDX {kind} file (magic 0x{found:08x}, expected "
            f"0x{magic:08x}); {HOW_TO_GET}"
        )
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if kind == "images" and dims[1:] != [28, 28]:
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28; {HOW_TO_GET}")
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: holds {len(raw) - header} data bytes but its header announces {expected} "
            f"(dims {dims}); the file is truncated or corrupt; {HOW_TO_GET}"
        )
    # A writable copy: torch refuses to wrap read-only buffers safely.
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _download(root: Path) -> Path:
    """Fetch FashionMNIST with torchvision into ``root`` and return the folder of the raw files."""
    try:
        from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST

        TorchvisionFashionMNIST(root=str(root), train=True, download=True)
        TorchvisionFashionMNIST(root=str(root), train=False, download=True)
    except Exception as exc:  # torchvision raises many kinds (URLError, RuntimeError, OSError)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"FashionMNIST not found locally and the download failed ({message}); {HOW_TO_GET}"
        ) from None
    return root / "FashionMNIST" / "raw"


def find_data_dir(data_dir: str | Path | None = None, *, download: bool = True) -> Path:
    """The folder holding the four IDX files.

    Order: ``data_dir`` (``--data-dir``), env ``QFED_DATA_DIR``, Debian's
    ``/usr/share/datasets/fashion-mnist``, torchvision's cache, then torchvision's download.
    An explicitly given folder that lacks the files is an error (no silent fallback).

    Raises:
        DataError: If no folder has the files (and the download is off or failed).
    """
    explicit = data_dir if data_dir is not None else os.environ.get("QFED_DATA_DIR") or None
    if explicit is not None:
        folder = Path(explicit).expanduser()
        origin = "--data-dir" if data_dir is not None else "QFED_DATA_DIR"
        if not folder.is_dir():
            raise DataError(f"{folder} ({origin}): folder not found; {HOW_TO_GET}")
        missing = [stem for stem in FILES.values() if _file_in(folder, stem) is None]
        if missing:
            raise DataError(
                f"{folder / (missing[0] + '.gz')} ({origin}): file not found "
                f"({len(missing)} of 4 FashionMNIST files missing); {HOW_TO_GET}"
            )
        return folder
    cached = DOWNLOAD_ROOT / "FashionMNIST" / "raw"
    for folder in (DEBIAN_DIR, cached):
        if _has_all(folder):
            return folder
    if not download:
        raise DataError(f"FashionMNIST not found in {DEBIAN_DIR} or {cached}; {HOW_TO_GET}")
    logger.info("downloading FashionMNIST with torchvision into %s", DOWNLOAD_ROOT)
    return _download(DOWNLOAD_ROOT)


def load_fashion_mnist(
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    expected_sizes: tuple[int, int] | EllipsisType | None = ...,
) -> FashionMNIST:
    """Load and check FashionMNIST.

    Args:
        data_dir: Folder with the IDX files (gzip or raw); see :func:`find_data_dir` for the search.
        download: Allow torchvision's download as the last resort.
        expected_sizes: Required (train, test) sizes; ``None`` accepts any consistent size;
            default (``...``) :data:`FULL_SIZES` (60,000 / 10,000), looked up at call time.

    Returns:
        The data set.

    Raises:
        DataError: One line naming the file and the problem, for any missing, truncated,
            corrupt or inconsistent file.
    """
    if expected_sizes is ...:  # resolved here, not in the signature, so FULL_SIZES can be patched
        expected_sizes = FULL_SIZES
    folder = find_data_dir(data_dir, download=download)
    arrays: dict[str, NDArray[np.uint8]] = {}
    for key, stem in FILES.items():
        path = _file_in(folder, stem)
        if path is None:
            raise DataError(f"{folder / stem}.gz: file not found; {HOW_TO_GET}")
        arrays[key] = read_idx(path, kind="images" if key.endswith("images") else "labels")
        if key.endswith("labels") and arrays[key].size and int(arrays[key].max()) > 9:
            raise DataError(
                f"{path}: label {int(arrays[key].max())} out of range 0-9; {HOW_TO_GET}"
            )
    for split, want in zip(("train", "test"), expected_sizes or (None, None), strict=True):
        n_img = arrays[f"{split}_images"].shape[0]
        n_lab = arrays[f"{split}_labels"].shape[0]
        labels_path = _file_in(folder, FILES[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(
                f"{labels_path}: {n_lab} labels for {n_img} {split} images; {HOW_TO_GET}"
            )
        if want is not None and n_img != want:
            raise DataError(
                f"{_file_in(folder, FILES[f'{split}_images'])}: {n_img} {split} "
                f"images, expected {want:,}; {HOW_TO_GET}"
            )
    return FashionMNIST(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"].astype(np.int64),
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"].astype(np.int64),
        source=str(folder),
    )


def to_tensor_dataset(images: NDArray[np.uint8], labels: NDArray[np.int64]) -> TensorDataset:
    """Float32 ``(N, 1, 28, 28)`` images normalised with mean 0.5, std 0.5, and int64 labels."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    x = x.sub_(0.5).div_(0.5).unsqueeze(1)
    y = torch.from_numpy(np.ascontiguousarray(labels)).to(torch.int64)
    return TensorDataset(x, y)
