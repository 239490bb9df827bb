"""ISA transpilation once per run, measured-bit to logical-qubit mapping, ISA circuit statistics."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qiskit.circuit import ClassicalRegister, ParameterExpression, QuantumCircuit
from qiskit.converters import circuit_to_dag, dag_to_circuit
from qiskit.dagcircuit import DAGCircuit
from qiskit.transpiler import PassManager
from qiskit.transpiler.basepasses import TransformationPass

from qfed_qiskit.exceptions import QFedInputError

logger = logging.getLogger(__name__)

_CACHE_SIZE = 64

_REWRITTEN = ("u", "u3", "cu", "cu3")


def _parameterised(op: Any) -> bool:
    return any(isinstance(p, ParameterExpression) and p.parameters for p in op.params)


def rewrite_u_gates(circuit: QuantumCircuit) -> QuantumCircuit:
    """``circuit`` with parameterised U/CU gates as RZ, RY and CX, global phase dropped.

    ``U(θ, φ, λ) = e^{i(φ+λ)/2} RZ(φ) RY(θ) RZ(λ)`` and, with ``A = RZ(φ) RY(θ/2)``,
    ``B = RY(-θ/2) RZ(-(φ+λ)/2)``, ``C = RZ((λ-φ)/2)`` (``ABC = I``, ``A X B X C = RZ(φ) RY(θ)
    RZ(λ)``), ``CU(θ, φ, λ, γ) = RZ(γ + (φ+λ)/2)_control · [C, CX, B, CX, A]_target`` up to a
    global phase. The global phase does not change measured probabilities.

    Qiskit 2.x's ``BasisTranslator`` slows down exponentially with the number of qubits on
    circuits that mix parameterised ``u`` and ``cu`` gates (6.8 s for a 7-qubit ring, minutes
    for 13 qubits, Qiskit 2.6), while the rewritten circuit of the 13-qubit, L = 16 QT ansatz
    transpiles to FakeTorino in about 0.3 s.

    Args:
        circuit: Any circuit; gates other than parameterised ``u``, ``u3``, ``cu`` and ``cu3``
            are kept as they are.

    Returns:
        A new circuit with the same registers and parameters.
    """
    out = circuit.copy_empty_like()
    out.global_phase = 0.0
    for instruction in circuit.data:
        op, qubits = instruction.operation, instruction.qubits
        if op.name not in _REWRITTEN or not _parameterised(op):
            out.append(instruction)
            continue
        if op.name in ("u", "u3"):
            theta, phi, lam = op.params
            out.rz(lam, qubits[0])
            out.ry(theta, qubits[0])
            out.rz(phi, qubits[0])
            continue
        theta, phi, lam = op.params[:3]
        gamma = op.params[3] if op.name == "cu" else 0.0
        control, target = qubits
        out.rz((lam - phi) / 2, target)
        out.cx(control, target)
        out.rz(-(phi + lam) / 2, target)
        out.ry(-theta / 2, target)
        out.cx(control, target)
        out.ry(theta / 2, target)
        out.rz(phi, target)
        out.rz(gamma + (phi + lam) / 2, control)
    return out


class RewriteUGates(TransformationPass):  # type: ignore[misc]
    """Transpiler pass applying :func:`rewrite_u_gates` (put it before Qiskit's preset stages)."""

    def run(self, dag: DAGCircuit) -> DAGCircuit:
        """Rewrite the parameterised U/CU gates of ``dag``."""
        if not any(node.op.name in _REWRITTEN for node in dag.op_nodes()):
            return dag
        out: DAGCircuit = circuit_to_dag(rewrite_u_gates(dag_to_circuit(dag)))
        return out


def preset_pass_manager(
    backend: Any,
    *,
    optimization_level: int = 1,
    seed: int | None = None,
    initial_layout: Sequence[int] | None = None,
) -> Any:
    """Qiskit's preset pass manager for ``backend``, parameterised U/CU rewritten first.

    ``generate_preset_pass_manager`` with :class:`RewriteUGates` in front (see
    :func:`rewrite_u_gates` for why).

    Args:
        backend: Target backend (fake device, IBM backend, or an ``AerSimulator``).
        optimization_level: 0 to 3.
        seed: ``seed_transpiler`` (layout and routing are randomised).
        initial_layout: Physical qubit of each logical qubit, or None to let Qiskit choose.

    Returns:
        A ``StagedPassManager``.

    Raises:
        QFedInputError: For an optimization level outside 0..3.
    """
    from qiskit.transpiler import generate_preset_pass_manager

    if optimization_level not in (0, 1, 2, 3):
        raise QFedInputError(f"optimization_level must be 0..3, got {optimization_level!r}")
    manager = generate_preset_pass_manager(
        optimization_level=optimization_level,
        backend=backend,
        seed_transpiler=seed,
        initial_layout=list(initial_layout) if initial_layout is not None else None,
    )
    return with_u_rewrite(manager)


def with_u_rewrite(manager: Any) -> Any:
    """``manager`` (a ``StagedPassManager``) with :class:`RewriteUGates` first in ``pre_init``."""
    stage = PassManager([RewriteUGates()])
    if manager.pre_init is not None:
        stage.append(manager.pre_init.to_flow_controller())
    manager.pre_init = stage
    return manager


class IsaTranspiler:
    """Transpiles each circuit once with one pass manager (cache keyed by circuit identity).

    Build one per run: the pass manager is generated once, and every circuit object is transpiled
    the first time it is seen. Circuits must not be mutated after their first use.

    Args:
        pass_manager: A pass manager; or None to build :func:`preset_pass_manager` for
            ``backend``.
        backend: Target backend (needed when ``pass_manager`` is None).
        optimization_level: Preset optimization level (with ``backend``).
        seed: ``seed_transpiler`` (with ``backend``).
        initial_layout: Physical qubit of each logical qubit (with ``backend``).

    Raises:
        QFedInputError: If neither ``pass_manager`` nor ``backend`` is given, or both are.
    """

    def __init__(
        self,
        *,
        pass_manager: Any | None = None,
        backend: Any | None = None,
        optimization_level: int = 1,
        seed: int | None = None,
        initial_layout: Sequence[int] | None = None,
    ) -> None:
        if (pass_manager is None) == (backend is None):
            raise QFedInputError("IsaTranspiler needs exactly one of pass_manager or backend")
        if pass_manager is None:
            pass_manager = preset_pass_manager(
                backend,
                optimization_level=optimization_level,
                seed=seed,
                initial_layout=initial_layout,
            )
        self.pass_manager = pass_manager
        self.backend = backend
        self._cache: OrderedDict[int, tuple[QuantumCircuit, QuantumCircuit]] = OrderedDict()
        self.transpile_count = 0

    def __call__(self, circuit: QuantumCircuit) -> QuantumCircuit:
        """The ISA version of ``circuit`` (transpiled on first use, then cached)."""
        key = id(circuit)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is circuit:
            self._cache.move_to_end(key)
            return hit[1]
        isa: QuantumCircuit = self.pass_manager.run(circuit)
        self.transpile_count += 1
        logger.debug(
            "transpiled %s: %d qubits, depth %d", circuit.name, circuit.num_qubits, isa.depth()
        )
        self._cache[key] = (circuit, isa)
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return isa


_TRANSPILERS: OrderedDict[tuple[Any, ...], tuple[Any, IsaTranspiler]] = OrderedDict()


def isa_circuit(
    circuit: QuantumCircuit,
    backend: Any,
    *,
    optimization_level: int = 1,
    seed: int | None = None,
    initial_layout: Sequence[int] | None = None,
) -> QuantumCircuit:
    """``circuit`` transpiled to ``backend``'s ISA, cached by circuit and backend identity.

    The pass manager is generated once per (backend, settings) and each circuit object is
    transpiled once. Add measurements *before* calling this (see :func:`logical_clbit_order`).

    Args:
        circuit: A logical circuit.
        backend: Target backend.
        optimization_level: Preset optimization level, 0..3.
        seed: ``seed_transpiler``.
        initial_layout: Physical qubit of each logical qubit, or None.

    Returns:
        The ISA circuit (with its ``layout``).
    """
    layout = tuple(initial_layout) if initial_layout is not None else None
    key = (id(backend), optimization_level, seed, layout)
    entry = _TRANSPILERS.get(key)
    if entry is None or entry[0] is not backend:
        transpiler = IsaTranspiler(
            backend=backend,
            optimization_level=optimization_level,
            seed=seed,
            initial_layout=initial_layout,
        )
        _TRANSPILERS[key] = (backend, transpiler)
        while len(_TRANSPILERS) > _CACHE_SIZE:
            _TRANSPILERS.popitem(last=False)
    else:
        transpiler = entry[1]
    return transpiler(circuit)


def final_physical_qubits(isa: QuantumCircuit) -> list[int]:
    """Physical qubit holding each logical qubit at the end of ``isa`` (identity without layout)."""
    if isa.layout is None:
        return list(range(isa.num_qubits))
    return [int(q) for q in isa.layout.final_index_layout(filter_ancillas=True)]


def logical_clbit_order(isa: QuantumCircuit) -> list[int]:
    """For each classical bit of ``isa``, the logical qubit its final measurement reads.

    With ``measure_all`` added before transpiling, Qiskit routes each measurement to wherever its
    logical qubit ended up, so this is ``[0, 1, …, n-1]`` (tested on permuted layouts). Measuring
    after transpiling needs :func:`measure_logical` instead.

    Raises:
        QFedInputError: If a classical bit is not measured, or measures an ancilla.
    """
    physical_to_logical = {p: i for i, p in enumerate(final_physical_qubits(isa))}
    order: dict[int, int] = {}
    for instruction in isa.data:
        if instruction.operation.name != "measure":
            continue
        physical = isa.find_bit(instruction.qubits[0]).index
        clbit = isa.find_bit(instruction.clbits[0]).index
        if physical not in physical_to_logical:
            raise QFedInputError(f"clbit {clbit} measures ancilla qubit {physical}")
        order[clbit] = physical_to_logical[physical]
    if sorted(order) != list(range(isa.num_clbits)):
        raise QFedInputError("every classical bit must be measured exactly once")
    return [order[c] for c in range(isa.num_clbits)]


def measure_logical(isa: QuantumCircuit, *, name: str = "meas") -> QuantumCircuit:
    """Copy of an unmeasured ISA circuit measuring each logical qubit into clbit of its index.

    Uses ``isa.layout.final_index_layout()``: logical qubit ``i`` is read from the physical qubit
    it ends on, into classical bit ``i``, so outcomes are in logical (Qiskit little-endian) order.
    """
    if isa.num_clbits:
        raise QFedInputError("measure_logical expects a circuit without classical bits")
    physical = final_physical_qubits(isa)
    out = isa.copy()
    creg = ClassicalRegister(len(physical), name)
    out.add_register(creg)
    out.barrier()
    for i, p in enumerate(physical):
        out.measure(p, creg[i])
    return out


def to_logical_order(
    probs: NDArray[np.float64], clbit_logical: Sequence[int]
) -> NDArray[np.float64]:
    """Re-index distributions from classical-bit order to logical-qubit order.

    Args:
        probs: Shape ``(..., 2**k)``; bit ``j`` of the index is classical bit ``j``.
        clbit_logical: Logical qubit of each classical bit (:func:`logical_clbit_order`).

    Returns:
        Same shape; bit ``i`` of the index is logical qubit ``i``.
    """
    k = len(clbit_logical)
    if sorted(clbit_logical) != list(range(k)):
        raise QFedInputError(f"clbit_logical must be a permutation of 0..{k - 1}")
    if list(clbit_logical) == list(range(k)):
        return probs
    index = np.arange(1 << k)
    source = np.zeros_like(index)
    for j, logical in enumerate(clbit_logical):  # outcome index in clbit order for each logical
        source |= ((index >> logical) & 1) << j
    out: NDArray[np.float64] = probs[..., source]
    return out


@dataclass(frozen=True)
class IsaStats:
    """Size of an ISA circuit.

    Attributes:
        depth: Circuit depth (measurements and barriers excluded).
        two_qubit_gates: Number of two-qubit gates.
        two_qubit_depth: Depth counting two-qubit gates only.
        size: Number of gates (measurements and barriers excluded).
        active_qubits: Number of qubits the circuit acts on.
        ops: Count of each operation name.
    """

    depth: int
    two_qubit_gates: int
    two_qubit_depth: int
    size: int
    active_qubits: int
    ops: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        """JSON-able dict."""
        return {
            "depth": self.depth,
            "two_qubit_gates": self.two_qubit_gates,
            "two_qubit_depth": self.two_qubit_depth,
            "size": self.size,
            "active_qubits": self.active_qubits,
            "ops": dict(self.ops),
        }


_NON_GATES = {"measure", "barrier", "delay", "reset"}


def isa_stats(isa: QuantumCircuit) -> IsaStats:
    """Depth, two-qubit gate count and size of an (ISA) circuit."""

    def is_gate(instruction: Any) -> bool:
        return instruction.operation.name not in _NON_GATES

    def is_two_qubit(instruction: Any) -> bool:
        return is_gate(instruction) and len(instruction.qubits) == 2

    active = {isa.find_bit(q).index for inst in isa.data if is_gate(inst) for q in inst.qubits}
    ops = {str(k): int(v) for k, v in isa.count_ops().items()}
    return IsaStats(
        depth=int(isa.depth(filter_function=is_gate)),
        two_qubit_gates=sum(1 for inst in isa.data if is_two_qubit(inst)),
        two_qubit_depth=int(isa.depth(filter_function=is_two_qubit)),
        size=sum(1 for inst in isa.data if is_gate(inst)),
        active_qubits=len(active),
        ops=ops,
    )
