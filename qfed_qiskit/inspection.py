"""Sizes and circuit statistics of a Quantum-Train configuration (what ``qfed-qiskit inspect`` prints)."""

from __future__ import annotations

from typing import Any

from qfed_qiskit.models.cnn import TargetCNN, count_parameters
from qfed_qiskit.models.mapping import DEFAULT_HIDDEN, MappingMLP


def circuit_stats(circuit: Any) -> dict[str, int]:
    """Depth and two-qubit gate count of a circuit."""
    two_qubit = sum(1 for inst in circuit.data if len(inst.qubits) == 2)
    return {"circuit_depth": int(circuit.depth()), "two_qubit_gates": two_qubit}


def inspect_model(*, blocks: int = 16, chunk_size: int = 1, activation: str = "none") -> dict[str, Any]:
    """Parameter counts, compression and circuit size of a QT model on the paper's CNN.

    Returns:
        ``qubits``, ``blocks``, ``chunk_size``, ``num_chunks``, ``target_params``, ``qnn_params``,
        ``mapping_params``, ``trainable_params``, ``compression`` (fraction of the target's
        parameters saved), ``circuit_depth`` and ``two_qubit_gates``.
    """
    from qfed_qiskit.circuits import qt_ansatz, qt_sizing

    target_params = count_parameters(TargetCNN(activation=activation))
    sizing = qt_sizing(target_params=target_params, chunk_size=chunk_size, blocks=blocks)
    mapping = MappingMLP(num_qubits=sizing.num_qubits, chunk_size=chunk_size, hidden=DEFAULT_HIDDEN)
    mapping_params = count_parameters(mapping)
    trainable = sizing.qnn_params + mapping_params
    circuit = qt_ansatz(sizing.num_qubits, blocks)
    return {
        "qubits": sizing.num_qubits,
        "blocks": blocks,
        "chunk_size": chunk_size,
        "num_chunks": sizing.num_chunks,
        "target_params": target_params,
        "qnn_params": sizing.qnn_params,
        "mapping_params": mapping_params,
        "trainable_params": trainable,
        "compression": round(1.0 - trainable / target_params, 4),
        **circuit_stats(circuit),
    }
