"""Sizes and circuit statistics of a Quantum-Train configuration (``qfed-qiskit inspect``)."""

from __future__ import annotations

from typing import Any

from qfed_qiskit.models.cnn import count_parameters
from qfed_qiskit.models.mapping import DEFAULT_HIDDEN, MappingMLP


def circuit_stats(circuit: Any) -> dict[str, int]:
    """Depth and two-qubit gate count of a circuit."""
    two_qubit = sum(1 for inst in circuit.data if len(inst.qubits) == 2)
    return {"circuit_depth": int(circuit.depth()), "two_qubit_gates": two_qubit}


def inspect_model(
    *,
    blocks: int = 16,
    chunk_size: int = 1,
    activation: str = "none",
    backend: str | None = None,
) -> dict[str, Any]:
    """Parameter counts, compression and circuit size of a QT model on the paper's CNN.

    Args:
        blocks: Ansatz blocks ``L``.
        chunk_size: Weights generated per basis state.
        activation: Mapping-MLP activation.
        backend: A backend profile name or path; adds the keys of
            :func:`qfed_qiskit.profiles.describe_backend`.

    Returns:
        ``qubits``, ``blocks``, ``chunk_size``, ``num_chunks``, ``target_params``, ``qnn_params``,
        ``mapping_params``, ``trainable_params``, ``compression`` (fraction of the target's
        parameters saved), ``circuit_depth`` and ``two_qubit_gates``; with ``backend`` also
        ``backend``, ``backend_kind``, ``exact``, ``shots``, ``gradient``, ``isa_depth``,
        ``isa_two_qubit_gates``, ``circuits_per_step`` and ``shots_per_step``.
    """
    from qfed_qiskit.circuits import qt_ansatz
    from qfed_qiskit.models.quantum_train import target_sizing

    sizing = target_sizing(chunk_size=chunk_size, blocks=blocks, activation=activation)
    target_params = sizing.target_params
    mapping = MappingMLP(num_qubits=sizing.num_qubits, chunk_size=chunk_size, hidden=DEFAULT_HIDDEN)
    mapping_params = count_parameters(mapping)
    trainable = sizing.qnn_params + mapping_params
    circuit = qt_ansatz(sizing.num_qubits, blocks)
    backend_keys: dict[str, Any] = {}
    if backend is not None:
        from qfed_qiskit.profiles import describe_backend

        backend_keys = describe_backend(backend, circuit)
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
        **backend_keys,
    }
