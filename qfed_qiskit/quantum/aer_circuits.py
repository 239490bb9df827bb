"""Circuit rewrites that Aer needs: bindable gates, final measurements split off, compaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from qiskit.circuit import ParameterExpression, QuantumCircuit

from qfed_qiskit.exceptions import QFedInputError

logger = logging.getLogger(__name__)


def has_unbound(op: Any) -> bool:
    params = getattr(op, "params", None) or []
    return any(isinstance(p, ParameterExpression) and p.parameters for p in params)


def aer_unsafe_gates(circuit: QuantumCircuit) -> set[str]:
    """Names of parameterised gates that Aer's ``parameter_binds`` would silently leave unbound.

    Aer binds an instruction only if ``operation.is_parameterized()`` is true, and in Qiskit 2.x
    controlled gates other than ``cu`` (``cp``, ``crx``, ``cry``, ``crz``, ``cu3``, ...) report
    false (their angles live on the base gate), so Aer runs them with angle 0 (see
    qiskit-aer issue 2403). The QT ansatz (``u``, ``cu``) and ISA circuits are not affected.
    """
    return {
        inst.operation.name
        for inst in circuit.data
        if has_unbound(inst.operation) and not inst.operation.is_parameterized()
    }


def aer_safe_circuit(circuit: QuantumCircuit) -> QuantumCircuit:
    """``circuit`` with the gates of :func:`aer_unsafe_gates` decomposed (or itself if none)."""
    unsafe = aer_unsafe_gates(circuit)
    out = circuit
    for _ in range(4):
        if not unsafe:
            return out
        logger.debug("decomposing %s for Aer parameter binding", sorted(unsafe))
        out = out.decompose(gates_to_decompose=sorted(unsafe))
        unsafe = aer_unsafe_gates(out)
    raise QFedInputError(f"cannot make gates {sorted(unsafe)} bindable by Aer")


def final_measurements(circuit: QuantumCircuit) -> tuple[QuantumCircuit, str, tuple[int, ...]]:
    """Split off the final measurements; return the unmeasured circuit, register, qubit order."""
    if len(circuit.cregs) != 1:
        raise QFedInputError(
            f"exact sampling needs a circuit with exactly one classical register, "
            f"got {len(circuit.cregs)}"
        )
    creg = circuit.cregs[0]
    body = circuit.copy_empty_like()
    measured: dict[int, int] = {}
    done: set[int] = set()
    for instruction in circuit.data:
        name = instruction.operation.name
        qubits = [circuit.find_bit(q).index for q in instruction.qubits]
        if name == "measure":
            clbit = circuit.find_bit(instruction.clbits[0]).index
            if clbit in measured:
                raise QFedInputError(f"exact sampling: clbit {clbit} is measured twice")
            measured[clbit] = qubits[0]
            done.add(qubits[0])
            continue
        if name == "barrier":
            body.append(instruction)
            continue
        if done.intersection(qubits) or instruction.clbits:
            raise QFedInputError(
                f"exact sampling supports final measurements only; {name!r} follows a measurement"
                " or uses classical bits"
            )
        body.append(instruction)
    if sorted(measured) != list(range(circuit.num_clbits)):
        raise QFedInputError("exact sampling needs every classical bit to be measured once")
    order = tuple(measured[j] for j in range(circuit.num_clbits))
    # A fresh copy: Aer's assembly writes 0.0 into the angles of a ``cu`` gate object it is
    # handed, which sticks when the circuit holds that Python object (as after ``append`` of an
    # existing instruction) and then the parameters go unbound; ``copy`` rebuilds the gates.
    return body.copy(), creg.name, order


def active_qubits(circuit: QuantumCircuit, measured: Sequence[int]) -> list[int]:
    used = set(measured)
    for inst in circuit.data:
        if inst.operation.name != "barrier":
            used.update(circuit.find_bit(q).index for q in inst.qubits)
    return sorted(used)


def compact_circuit(circuit: QuantumCircuit, active: Sequence[int]) -> QuantumCircuit:
    """``circuit`` on ``len(active)`` qubits (``active[i] -> i``), barriers dropped."""
    index = {q: i for i, q in enumerate(active)}
    out = QuantumCircuit(len(active), name=circuit.name, global_phase=circuit.global_phase)
    for inst in circuit.data:
        if inst.operation.name == "barrier":
            continue
        qubits = [out.qubits[index[circuit.find_bit(q).index]] for q in inst.qubits]
        out.append(inst.operation, qubits)
    return out.copy()


_PART_LABEL = "_qfed_part"


def _needs_decomposition(op: Any, supported: set[str]) -> bool:
    if op.name in ("barrier", "measure"):
        return False
    unsafe = has_unbound(op) and not op.is_parameterized()
    return unsafe or (op.name not in supported and has_unbound(op))


def noise_preserving_decomposition(circuit: QuantumCircuit, supported: set[str]) -> QuantumCircuit:
    """Rewrite parameterised gates Aer cannot run or bind, keeping gate-level noise identical.

    Each such gate (e.g. ``cu`` under Aer's density-matrix method, or a ``crz`` Aer would leave
    unbound) is replaced by its definition, whose pieces are labelled ``"_qfed_part"`` so no noise
    model error attaches to them, followed by an identity ``unitary`` labelled with the gate's
    name (or label), which carries exactly the errors the noise model defines for that gate. The
    result stays parameterised, so Aer binds all parameter sets in one call. Gates without a
    definition are left as they are.

    Args:
        circuit: A circuit without measurements.
        supported: Instruction names the Aer method supports.

    Returns:
        The rewritten circuit (``circuit`` itself when nothing needs rewriting).
    """
    from qiskit.circuit.library import UnitaryGate

    if not any(_needs_decomposition(inst.operation, supported) for inst in circuit.data):
        return circuit

    def pieces(op: Any, qubits: list[Any], depth: int) -> list[tuple[Any, list[Any]]]:
        definition = op.definition if depth < 6 else None
        if not _needs_decomposition(op, supported) or definition is None:
            return [(op, qubits)]
        out: list[tuple[Any, list[Any]]] = []
        for inner in definition.data:
            mapped = [qubits[definition.find_bit(q).index] for q in inner.qubits]
            out.extend(pieces(inner.operation, mapped, depth + 1))
        return out

    out = circuit.copy_empty_like()
    for inst in circuit.data:
        op = inst.operation
        if not _needs_decomposition(op, supported):
            out.append(op, inst.qubits, inst.clbits)
            continue
        for piece, qubits in pieces(op, list(inst.qubits), 0):
            piece = piece.to_mutable()
            piece.label = _PART_LABEL
            out.append(piece, qubits)
        width = len(inst.qubits)
        out.append(UnitaryGate(np.eye(1 << width), label=op.label or op.name), inst.qubits)
    return out.copy()
