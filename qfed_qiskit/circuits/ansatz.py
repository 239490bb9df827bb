"""The Quantum-Train ansatz: L blocks of U3 on every qubit followed by a ring of CU3 gates."""

from __future__ import annotations

from qiskit.circuit import ParameterVector, QuantumCircuit

from qfed_qiskit.exceptions import QFedInputError


def qt_ansatz(num_qubits: int, blocks: int, *, name: str = "theta") -> QuantumCircuit:
    """Build the QT circuit as a parameterised Qiskit circuit.

    Each block applies ``U3(θ, φ, λ)`` to every qubit, then ``CU3`` from control ``i`` to target
    ``(i + 1) mod n`` for ``i = 0 … n-1`` (paper.md, "Quantum part"). With one qubit the ring is
    empty. Parameters are ordered block by block: first the ``3 n`` U3 angles, then the ``3 n`` CU3
    angles, each gate's ``(θ, φ, λ)`` in turn.

    This circuit is the single source of truth for every engine: the exact torch engine compiles it
    and the Qiskit primitives run it. It has no measurements; samplers add them.

    Args:
        num_qubits: Number of qubits ``n``.
        blocks: Number of blocks ``L``.
        name: Name of the :class:`~qiskit.circuit.ParameterVector`.

    Returns:
        The circuit, with ``6 n L`` parameters (``3 n L`` when ``n == 1``).
    """
    if num_qubits < 1 or blocks < 1:
        raise QFedInputError(
            f"num_qubits and blocks must be >= 1, got num_qubits={num_qubits}, blocks={blocks}"
        )
    ring = num_qubits if num_qubits > 1 else 0
    per_block = 3 * num_qubits + 3 * ring
    theta = ParameterVector(name, per_block * blocks)
    qc = QuantumCircuit(num_qubits, name="qt_ansatz")
    k = 0
    for _ in range(blocks):
        for q in range(num_qubits):
            qc.u(theta[k], theta[k + 1], theta[k + 2], q)
            k += 3
        for q in range(ring):
            qc.cu(theta[k], theta[k + 1], theta[k + 2], 0.0, q, (q + 1) % num_qubits)
            k += 3
    return qc
