"""FashionMNIST loading: search order, checks, one-line errors for bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from qfed_qiskit.data import fashion_mnist as fm
from qfed_qiskit.data import find_data_dir, load_fashion_mnist, to_tensor_dataset
from qfed_qiskit.exceptions import DataError
from tests.idx_utils import idx_bytes, write_idx_dataset

_REAL_DOWNLOAD = fm._download


@pytest.fixture(autouse=True)
def _no_system_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the real data or the network."""
    monkeypatch.delenv("QFED_DATA_DIR", raising=False)
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(fm, "DOWNLOAD_ROOT", tmp_path / "no-cache")

    def no_download(root: Path) -> Path:
        raise DataError("download disabled in tests")

    monkeypatch.setattr(fm, "_download", no_download)


def _one_line_error(data_dir: Path, **kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        load_fashion_mnist(data_dir, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("gz", [True, False])
def test_loads_gzip_and_raw(tmp_path: Path, gz: bool) -> None:
    """Both .gz and uncompressed IDX files load with consistent shapes and dtypes."""
    folder = write_idx_dataset(tmp_path / "d", 50, 20, gz=gz)
    data = load_fashion_mnist(folder, expected_sizes=None)
    assert data.train_images.shape == (50, 28, 28) and data.train_images.dtype == np.uint8
    assert data.test_labels.shape == (20,) and data.test_labels.dtype == np.int64
    assert data.source == str(folder)


def test_normalisation_mean_half_std_half(tmp_path: Path) -> None:
    """Pixels map 0 -> -1 and 255 -> +1, as (x/255 - 0.5) / 0.5."""
    images = np.array([[[0] * 28] * 28, [[255] * 28] * 28], dtype=np.uint8)
    ds = to_tensor_dataset(images, np.array([1, 2]))
    x, y = ds.tensors
    assert x.shape == (2, 1, 28, 28) and x.dtype == torch.float32
    assert float(x[0].max()) == -1.0 and float(x[1].min()) == 1.0
    assert y.tolist() == [1, 2]


def test_env_var_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """QFED_DATA_DIR is searched when no folder is passed."""
    folder = write_idx_dataset(tmp_path / "env", 10, 10)
    monkeypatch.setenv("QFED_DATA_DIR", str(folder))
    assert find_data_dir() == folder


def test_debian_folder_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a folder or env var, Debian's dataset folder is used."""
    folder = write_idx_dataset(tmp_path / "debian", 10, 10)
    monkeypatch.setattr(fm, "DEBIAN_DIR", folder)
    assert find_data_dir() == folder


def test_nothing_found_without_download(tmp_path: Path) -> None:
    """No data anywhere and no download: one line saying how to get it."""
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        find_data_dir(download=False)


def test_failed_download_is_one_line() -> None:
    """A download failure (no network) becomes a DataError, not a traceback."""
    with pytest.raises(DataError, match="download disabled"):
        find_data_dir()


def test_explicit_folder_beats_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--data-dir is searched before QFED_DATA_DIR."""
    explicit = write_idx_dataset(tmp_path / "explicit", 10, 10)
    monkeypatch.setenv("QFED_DATA_DIR", str(write_idx_dataset(tmp_path / "env", 10, 10)))
    assert find_data_dir(explicit) == explicit


def test_env_folder_missing_files_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QFED_DATA_DIR without the files is an error, not a silent fallback to other folders."""
    monkeypatch.setattr(fm, "DEBIAN_DIR", write_idx_dataset(tmp_path / "debian", 10, 10))
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("QFED_DATA_DIR", str(empty))
    with pytest.raises(DataError) as info:
        find_data_dir()
    message = str(info.value)
    assert "QFED_DATA_DIR" in message and "train-images-idx3-ubyte" in message
    assert "\n" not in message


def test_torchvision_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Raw files that torchvision downloaded earlier are found without downloading again."""
    root = tmp_path / "cache"
    raw = write_idx_dataset(root / "FashionMNIST" / "raw", 10, 10, gz=False)
    monkeypatch.setattr(fm, "DOWNLOAD_ROOT", root)
    assert find_data_dir(download=False) == raw


class _FailingTorchvision:
    def __init__(self, root: str, train: bool, download: bool) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz\n<urlopen error>")


def test_download_failure_becomes_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torchvision download error (no network) becomes a one-line DataError."""
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", _FailingTorchvision)
    monkeypatch.setattr(fm, "_download", _REAL_DOWNLOAD)
    with pytest.raises(DataError) as info:
        find_data_dir()
    message = str(info.value)
    assert "download failed" in message and "dataset-fashion-mnist" in message
    assert "\n" not in message


def test_download_success_uses_raw_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After torchvision's download, its raw IDX files are read with our own parser."""
    import torchvision.datasets

    class FakeTorchvision:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            write_idx_dataset(Path(root) / "FashionMNIST" / "raw", 12, 8, gz=False)

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeTorchvision)
    monkeypatch.setattr(fm, "_download", _REAL_DOWNLOAD)
    data = load_fashion_mnist(expected_sizes=None)
    assert data.source == str(tmp_path / "no-cache" / "FashionMNIST" / "raw")
    assert data.train_images.shape == (12, 28, 28) and data.test_labels.shape == (8,)


def test_explicit_folder_missing_file(tmp_path: Path) -> None:
    """An explicit folder lacking files is an error naming the missing file."""
    folder = write_idx_dataset(tmp_path / "d", 10, 10)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    message = _one_line_error(folder)
    assert "t10k-labels-idx1-ubyte.gz" in message and "file not found" in message


def test_explicit_folder_does_not_exist(tmp_path: Path) -> None:
    """A folder that does not exist is named in the error."""
    assert "folder not found" in _one_line_error(tmp_path / "nope")


def test_truncated_file(tmp_path: Path) -> None:
    """A file shorter than its header announces is reported as truncated."""
    folder = write_idx_dataset(tmp_path / "d", 10, 10, gz=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    message = _one_line_error(folder, expected_sizes=None)
    assert "train-images-idx3-ubyte" in message and "truncated" in message


def test_corrupt_gzip(tmp_path: Path) -> None:
    """A damaged gzip stream is reported as corrupt, naming the file."""
    folder = write_idx_dataset(tmp_path / "d", 10, 10)
    path = folder / "train-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = b"\x00" * (len(data) - len(data) // 2)
    path.write_bytes(bytes(data))
    message = _one_line_error(folder, expected_sizes=None)
    assert "train-labels-idx1-ubyte.gz" in message and "corrupt" in message


def test_truncated_gzip(tmp_path: Path) -> None:
    """A gzip file cut short is reported, naming the file."""
    folder = write_idx_dataset(tmp_path / "d", 10, 10)
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    assert "t10k-images-idx3-ubyte.gz" in _one_line_error(folder, expected_sizes=None)


def test_bad_magic(tmp_path: Path) -> None:
    """A labels file in the images slot is rejected by its magic number."""
    folder = write_idx_dataset(tmp_path / "d", 10, 10, gz=False)
    (folder / "train-images-idx3-ubyte").write_bytes(
        idx_bytes(np.zeros(10, dtype=np.uint8), images=False)
    )
    assert "not an IDX images file" in _one_line_error(folder, expected_sizes=None)


def test_wrong_image_size(tmp_path: Path) -> None:
    """Images must be 28x28."""
    folder = write_idx_dataset(tmp_path / "d", 10, 10, gz=False)
    (folder / "t10k-images-idx3-ubyte").write_bytes(
        idx_bytes(np.zeros((10, 32, 32), dtype=np.uint8), images=True)
    )
    assert "expected 28x28" in _one_line_error(folder, expected_sizes=None)


def test_bad_label_value(tmp_path: Path) -> None:
    """Labels outside 0-9 are rejected."""
    folder = write_idx_dataset(tmp_path / "d", 10, 10)
    labels = np.full(10, 12, dtype=np.uint8)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(labels, images=False))
    )
    assert "label 12 out of range" in _one_line_error(folder, expected_sizes=None)


def test_count_mismatch_between_images_and_labels(tmp_path: Path) -> None:
    """Images and labels of a split must have the same count."""
    folder = write_idx_dataset(tmp_path / "d", 10, 10)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(9, dtype=np.uint8), images=False))
    )
    assert "9 labels for 10 train images" in _one_line_error(folder, expected_sizes=None)


def test_full_sizes_required_by_default(tmp_path: Path) -> None:
    """By default the real data set's 60,000 / 10,000 samples are required."""
    folder = write_idx_dataset(tmp_path / "d", 10, 10)
    message = _one_line_error(folder)
    assert "10 train images, expected 60,000" in message


@pytest.mark.slow
def test_real_data_if_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real FashionMNIST (Debian package) loads with 60,000 / 10,000 samples."""
    real = Path("/usr/share/datasets/fashion-mnist")
    if not real.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    data = load_fashion_mnist(real)
    assert data.train_images.shape == (60000, 28, 28)
    assert data.test_images.shape == (10000, 28, 28)
    assert sorted(np.unique(data.train_labels).tolist()) == list(range(10))
