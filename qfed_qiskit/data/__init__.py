"""Data: FashionMNIST loading and checks, and client partitions.

Names are imported on first use, so that reading a partition spec (the config does) does not
import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qfed_qiskit.data.fashion_mnist import (
        FashionMNIST,
        find_data_dir,
        load_fashion_mnist,
        read_idx,
        to_tensor_dataset,
    )
    from qfed_qiskit.data.partition import (
        dirichlet_partition,
        iid_partition,
        make_partition,
        parse_partition,
    )

_LAZY = {
    "FashionMNIST": "fashion_mnist",
    "find_data_dir": "fashion_mnist",
    "load_fashion_mnist": "fashion_mnist",
    "read_idx": "fashion_mnist",
    "to_tensor_dataset": "fashion_mnist",
    "dirichlet_partition": "partition",
    "iid_partition": "partition",
    "make_partition": "partition",
    "parse_partition": "partition",
}

__all__ = [
    "FashionMNIST",
    "dirichlet_partition",
    "find_data_dir",
    "iid_partition",
    "load_fashion_mnist",
    "make_partition",
    "parse_partition",
    "read_idx",
    "to_tensor_dataset",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
