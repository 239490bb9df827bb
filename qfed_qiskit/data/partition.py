"""Split a training set among federated clients: IID equal shards or label-skewed Dirichlet."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from qfed_qiskit.exceptions import QFedInputError

PARTITION_HELP = "'iid' or 'dirichlet:ALPHA' with ALPHA > 0 (e.g. dirichlet:0.5)"


def parse_partition(spec: str) -> tuple[str, float | None]:
    """Parse ``"iid"`` or ``"dirichlet:ALPHA"`` into ``(kind, alpha)``.

    Raises:
        QFedInputError: For anything else.
    """
    text = spec.strip().lower()
    if text == "iid":
        return "iid", None
    kind, _, value = text.partition(":")
    if kind == "dirichlet":
        try:
            alpha = float(value)
        except ValueError:
            alpha = float("nan")
        if np.isfinite(alpha) and alpha > 0:
            return "dirichlet", alpha
    raise QFedInputError(f"partition={spec!r} is not allowed (expected {PARTITION_HELP})")


def _check_clients(num_samples: int, num_clients: int) -> None:
    if num_clients < 1 or num_clients > num_samples:
        raise QFedInputError(
            f"clients={num_clients} (expected 1 <= clients <= {num_samples} training samples)"
        )


def iid_partition(num_samples: int, num_clients: int, *, seed: int) -> list[NDArray[np.int64]]:
    """Equal-size disjoint shards of a seeded permutation (the remainder is dropped, as in QFed)."""
    _check_clients(num_samples, num_clients)
    order = np.random.default_rng(seed).permutation(num_samples)
    size = num_samples // num_clients
    return [np.sort(order[i * size : (i + 1) * size]).astype(np.int64) for i in range(num_clients)]


def dirichlet_partition(
    labels: NDArray[np.integer],
    num_clients: int,
    alpha: float,
    *,
    seed: int,
    min_size: int = 1,
    max_tries: int = 100,
) -> list[NDArray[np.int64]]:
    """Label-skewed shards: each class is split among clients by Dirichlet(alpha) proportions.

    Smaller ``alpha`` gives more skew. Shards are disjoint and cover every sample; draws are
    repeated until every client has at least ``min_size`` samples.

    Raises:
        QFedInputError: For bad arguments, or when no draw gives every client ``min_size``.
    """
    labels = np.asarray(labels)
    _check_clients(labels.shape[0], num_clients)
    if not alpha > 0:
        raise QFedInputError(f"dirichlet alpha={alpha} (expected a number > 0)")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(max_tries):
        shards: list[list[NDArray[np.int64]]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha))) * idx.size).astype(int)
            for client, part in enumerate(np.split(idx, cuts[:-1])):
                shards[client].append(part.astype(np.int64))
        out = [np.sort(np.concatenate(parts)) for parts in shards]
        if min(part.size for part in out) >= min_size:
            return out
    raise QFedInputError(
        f"dirichlet:{alpha} with {num_clients} clients left a client with fewer than {min_size} "
        f"samples in {max_tries} draws; use a larger alpha or fewer clients"
    )


def make_partition(
    spec: str, labels: NDArray[np.integer], num_clients: int, *, seed: int
) -> list[NDArray[np.int64]]:
    """Shards for a partition spec (see :func:`parse_partition`)."""
    kind, alpha = parse_partition(spec)
    if kind == "iid":
        return iid_partition(len(labels), num_clients, seed=seed)
    assert alpha is not None
    return dirichlet_partition(labels, num_clients, alpha, seed=seed)


def client_partition(
    spec: str, labels: NDArray[np.integer], num_clients: int, *, seed: int
) -> list[NDArray[np.int64]]:
    """:func:`make_partition`, refusing a partition that leaves a client without samples.

    Raises:
        QFedInputError: For a bad spec, or when a client would get no samples.
    """
    parts = make_partition(spec, labels, num_clients, seed=seed)
    for cid, idx in enumerate(parts):
        if len(idx) == 0:
            raise QFedInputError(f"partition {spec!r}: client {cid} got no samples")
    return parts
