"""Sizing of a Quantum-Train model: qubits, chunks and parameter counts."""

from __future__ import annotations

import math
from dataclasses import dataclass

from qfed_qiskit.exceptions import QFedInputError


@dataclass(frozen=True)
class QTSizing:
    """How many qubits and angles a QT model needs to generate ``target_params`` weights.

    Attributes:
        target_params: Number of weights of the target (classical) model.
        chunk_size: Weights generated per basis state (``c``; 1 is the paper's setting).
        num_chunks: ``ceil(target_params / chunk_size)`` basis states that are used.
        num_qubits: ``ceil(log2(num_chunks))`` (at least 1).
        blocks: Number of ansatz blocks ``L``.
        qnn_params: Number of circuit angles: per block, 3 per qubit (U3) and 3 per ring edge
            (CU3), i.e. ``6 * num_qubits * blocks`` (the ring is empty for one qubit).
    """

    target_params: int
    chunk_size: int
    num_chunks: int
    num_qubits: int
    blocks: int
    qnn_params: int


def qt_sizing(*, target_params: int, chunk_size: int = 1, blocks: int = 16) -> QTSizing:
    """Compute the QT sizing for a target model.

    Args:
        target_params: Number of weights to generate (6,690 for the paper's CNN).
        chunk_size: Weights per basis state.
        blocks: Ansatz blocks ``L``.

    Returns:
        The sizing.

    Raises:
        QFedInputError: If an argument is not a positive integer.
    """
    for name, value in (
        ("target_params", target_params),
        ("chunk_size", chunk_size),
        ("blocks", blocks),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise QFedInputError(f"{name} must be a positive integer, got {value!r}")
    num_chunks = math.ceil(target_params / chunk_size)
    num_qubits = max(1, math.ceil(math.log2(num_chunks)))
    ring_edges = num_qubits if num_qubits > 1 else 0
    return QTSizing(
        target_params=target_params,
        chunk_size=chunk_size,
        num_chunks=num_chunks,
        num_qubits=num_qubits,
        blocks=blocks,
        qnn_params=(3 * num_qubits + 3 * ring_edges) * blocks,
    )
