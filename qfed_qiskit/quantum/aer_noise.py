"""Aer noise-model surgery: readout matrices and their application, restriction to a few qubits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qfed_qiskit.exceptions import QFedInputError


def readout_matrices(noise_model: Any, qubits: Sequence[int]) -> list[NDArray[np.float64] | None]:
    """Per-qubit 2x2 readout assignment matrices (rows: true bit, columns: recorded bit)."""
    if noise_model is None:
        return [None] * len(qubits)
    default = getattr(noise_model, "_default_readout_error", None)
    local: dict[tuple[int, ...], Any] = getattr(noise_model, "_local_readout_errors", {}) or {}
    for key in local:
        if len(key) != 1:
            raise QFedInputError("exact sampling supports single-qubit readout errors only")
    out: list[NDArray[np.float64] | None] = []
    for q in qubits:
        error = local.get((q,), default)
        if error is None:
            out.append(None)
            continue
        if error.number_of_qubits != 1:
            raise QFedInputError("exact sampling supports single-qubit readout errors only")
        out.append(np.asarray(error.probabilities, dtype=np.float64))
    return out


def apply_readout(
    probs: NDArray[np.float64], matrices: Sequence[NDArray[np.float64] | None]
) -> NDArray[np.float64]:
    """Apply independent per-bit readout errors to distributions of shape ``(N, 2**k)``.

    Args:
        probs: Distributions; bit ``j`` of the outcome index is classical bit ``j``.
        matrices: For each bit, ``M[true, recorded]`` or None for a perfect readout.

    Returns:
        The distributions of the recorded outcomes.
    """
    k = len(matrices)
    n = probs.shape[0]
    tensor = probs.reshape((n,) + (2,) * k)
    for j, matrix in enumerate(matrices):
        if matrix is None:
            continue
        axis = k - j  # C order: the last axis is bit 0
        tensor = np.moveaxis(np.tensordot(tensor, matrix, axes=([axis], [0])), -1, axis)
    out: NDArray[np.float64] = tensor.reshape(n, 1 << k)
    return out


def restrict_noise_model(noise_model: Any, qubits: Sequence[int]) -> Any:
    """``noise_model`` on ``qubits`` only, renumbered ``qubits[i] -> i``.

    Keeps all-qubit errors, and the local gate and readout errors whose qubits all lie in
    ``qubits``. A device noise model covers every qubit of the device (Aer spends about 2 s per
    run just loading FakeTorino's), while a transpiled QT circuit uses a handful of them.
    Custom noise passes (delay relaxation) are dropped: circuits with delays are not compacted.
    """
    from qiskit_aer.noise import NoiseModel

    index = {int(q): i for i, q in enumerate(qubits)}
    out = NoiseModel(basis_gates=noise_model.basis_gates)
    for label, error in noise_model._default_quantum_errors.items():
        out.add_all_qubit_quantum_error(error, label, warnings=False)
    for label, local in noise_model._local_quantum_errors.items():
        for on, error in local.items():
            if all(q in index for q in on):
                out.add_quantum_error(error, label, [index[q] for q in on], warnings=False)
    if noise_model._default_readout_error is not None:
        out.add_all_qubit_readout_error(noise_model._default_readout_error, warnings=False)
    for on, error in noise_model._local_readout_errors.items():
        if all(q in index for q in on):
            out.add_readout_error(error, [index[q] for q in on], warnings=False)
    return out
