"""Write small FashionMNIST-format IDX files for tests (learnable synthetic classes)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from qfed_qiskit.data.fashion_mnist import FILES, IMAGE_MAGIC, LABEL_MAGIC


def idx_bytes(array: np.ndarray, *, images: bool) -> bytes:
    """The IDX encoding of a uint8 array (N×28×28 images or N labels)."""
    magic = IMAGE_MAGIC if images else LABEL_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def synthetic_images(labels: np.ndarray, *, seed: int) -> np.ndarray:
    """28×28 uint8 images: a fixed random template per class plus noise (a CNN learns it fast)."""
    templates = np.random.default_rng(12345).integers(0, 256, size=(10, 28, 28))
    noise = np.random.default_rng(seed).integers(-40, 41, size=(labels.size, 28, 28))
    return np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)


def write_idx_dataset(
    folder: Path, n_train: int, n_test: int, *, seed: int = 0, gz: bool = True
) -> Path:
    """Write the four FashionMNIST files with ``n_train``/``n_test`` synthetic samples."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    parts = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        parts[f"{split}_images"] = idx_bytes(synthetic_images(labels, seed=seed + n), images=True)
        parts[f"{split}_labels"] = idx_bytes(labels, images=False)
    for key, stem in FILES.items():
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(parts[key], compresslevel=1))
        else:
            (folder / stem).write_bytes(parts[key])
    return folder
