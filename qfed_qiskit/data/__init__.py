"""Data: FashionMNIST loading and checks, and client partitions."""

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
