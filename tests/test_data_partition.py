"""Client partitions: IID equal shards and Dirichlet label skew."""

from __future__ import annotations

import numpy as np
import pytest

from qfed_qiskit.data import dirichlet_partition, iid_partition, make_partition, parse_partition
from qfed_qiskit.exceptions import QFedInputError


def test_iid_shards_are_equal_disjoint_and_seeded() -> None:
    """Equal sizes (remainder dropped), no overlap, same seed -> same shards."""
    shards = iid_partition(103, 4, seed=7)
    assert [s.size for s in shards] == [25, 25, 25, 25]
    assert np.unique(np.concatenate(shards)).size == 100
    again = iid_partition(103, 4, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(shards, again, strict=True))
    other = iid_partition(103, 4, seed=8)
    assert not all(np.array_equal(a, b) for a, b in zip(shards, other, strict=True))


def test_dirichlet_covers_all_and_is_disjoint() -> None:
    """Every sample goes to exactly one client."""
    labels = np.repeat(np.arange(10), 50)
    shards = dirichlet_partition(labels, 5, 0.5, seed=0)
    allidx = np.concatenate(shards)
    assert allidx.size == labels.size and np.unique(allidx).size == labels.size
    assert min(s.size for s in shards) >= 1


def test_dirichlet_small_alpha_is_skewed() -> None:
    """alpha = 0.05 concentrates classes; alpha = 1000 is close to uniform."""
    labels = np.repeat(np.arange(10), 200)

    def top_class_share(alpha: float) -> float:
        shards = dirichlet_partition(labels, 4, alpha, seed=1)
        return float(np.mean([np.bincount(labels[s], minlength=10).max() / s.size for s in shards]))

    assert top_class_share(0.05) > 0.5
    assert top_class_share(1000.0) < 0.2


@pytest.mark.parametrize(
    "spec",
    [
        "dirichlet",
        "dirichlet:",
        "dirichlet:0",
        "dirichlet:-1",
        "dirichlet:abc",
        "dirichlet:nan",
        "noniid",
        "",
    ],
)
def test_bad_partition_specs(spec: str) -> None:
    """Anything but iid / dirichlet:ALPHA>0 is a one-line input error naming the value."""
    with pytest.raises(QFedInputError) as info:
        parse_partition(spec)
    assert repr(spec) in str(info.value) and "\n" not in str(info.value)


def test_parse_partition_good_specs() -> None:
    """iid and dirichlet:ALPHA parse."""
    assert parse_partition("iid") == ("iid", None)
    assert parse_partition("Dirichlet:0.3") == ("dirichlet", 0.3)


@pytest.mark.parametrize("clients", [0, 11])
def test_bad_client_counts(clients: int) -> None:
    """Clients must be between 1 and the number of samples."""
    with pytest.raises(QFedInputError, match="clients"):
        iid_partition(10, clients, seed=0)


def test_make_partition_dispatches() -> None:
    """make_partition follows the spec."""
    labels = np.repeat(np.arange(10), 10)
    assert len(make_partition("iid", labels, 3, seed=0)) == 3
    assert sum(s.size for s in make_partition("dirichlet:1", labels, 3, seed=0)) == 100
