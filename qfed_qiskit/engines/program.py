"""Compile a parameterised Qiskit circuit into a flat gate program for the compiled kernels."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qiskit.circuit import Parameter, ParameterExpression, QuantumCircuit

from qfed_qiskit.exceptions import CircuitError

Angle = Any  # float | ParameterExpression (qiskit is untyped for mypy)
_PI = math.pi

# Each supported gate maps its Qiskit params to the four angles (θ, φ, λ, γ) of
# U(θ, φ, λ, γ) = e^{iγ} U3(θ, φ, λ), plus whether it is controlled (first qubit is the control).
_ONE: dict[str, Callable[[Sequence[Angle]], tuple[Angle, Angle, Angle, Angle]]] = {
    "u": lambda p: (p[0], p[1], p[2], 0.0),
    "u3": lambda p: (p[0], p[1], p[2], 0.0),
    "u2": lambda p: (_PI / 2, p[0], p[1], 0.0),
    "u1": lambda p: (0.0, 0.0, p[0], 0.0),
    "p": lambda p: (0.0, 0.0, p[0], 0.0),
    "rx": lambda p: (p[0], -_PI / 2, _PI / 2, 0.0),
    "ry": lambda p: (p[0], 0.0, 0.0, 0.0),
    "rz": lambda p: (0.0, 0.0, p[0], -0.5 * p[0]),
    "h": lambda p: (_PI / 2, 0.0, _PI, 0.0),
    "x": lambda p: (_PI, 0.0, _PI, 0.0),
    "y": lambda p: (_PI, _PI / 2, _PI / 2, 0.0),
    "z": lambda p: (0.0, 0.0, _PI, 0.0),
    "s": lambda p: (0.0, 0.0, _PI / 2, 0.0),
    "sdg": lambda p: (0.0, 0.0, -_PI / 2, 0.0),
    "t": lambda p: (0.0, 0.0, _PI / 4, 0.0),
    "tdg": lambda p: (0.0, 0.0, -_PI / 4, 0.0),
    "sx": lambda p: (_PI / 2, -_PI / 2, _PI / 2, _PI / 4),
    "sxdg": lambda p: (_PI / 2, _PI / 2, -_PI / 2, -_PI / 4),
    "id": lambda p: (0.0, 0.0, 0.0, 0.0),
}
_CONTROLLED: dict[str, Callable[[Sequence[Angle]], tuple[Angle, Angle, Angle, Angle]]] = {
    "cu": lambda p: (p[0], p[1], p[2], p[3]),
    "cu3": lambda p: (p[0], p[1], p[2], 0.0),
    "cu1": _ONE["p"],
    "cp": _ONE["p"],
    "crx": _ONE["rx"],
    "cry": _ONE["ry"],
    "crz": lambda p: (0.0, 0.0, p[0], -0.5 * p[0]),
    "cx": _ONE["x"],
    "cy": _ONE["y"],
    "cz": _ONE["z"],
    "ch": _ONE["h"],
    "csx": _ONE["sx"],
}
_IGNORED = {"barrier", "measure"}

SUPPORTED_GATES = tuple(sorted({*_ONE, *_CONTROLLED}))


@dataclass(frozen=True)
class GateProgram:
    """A circuit flattened into arrays: one row per (possibly controlled) single-qubit gate.

    Attributes:
        num_qubits: Number of qubits.
        num_parameters: Number of circuit parameters (length of the angle vector).
        targets: Target qubit of each gate, ``int64[G]``.
        controls: Control qubit of each gate, or -1, ``int64[G]``.
        param_index: For each gate and each of its 4 angles, the parameter index or -1,
            ``int64[G, 4]``.
        coeff: Multiplier of that parameter, ``float64[G, 4]``.
        offset: Constant added, ``float64[G, 4]``.
    """

    num_qubits: int
    num_parameters: int
    targets: NDArray[np.int64]
    controls: NDArray[np.int64]
    param_index: NDArray[np.int64]
    coeff: NDArray[np.float64]
    offset: NDArray[np.float64]

    @property
    def num_gates(self) -> int:
        """Number of gates in the program."""
        return int(self.targets.shape[0])


def _affine(value: Angle, index_of: dict[Parameter, int], gate: str) -> tuple[int, float, float]:
    """Split an angle into ``(parameter index or -1, coefficient, offset)``."""
    if not isinstance(value, ParameterExpression):
        return -1, 0.0, float(value)
    params = value.parameters
    if not params:
        return -1, 0.0, float(value.numeric())
    if len(params) != 1:
        raise CircuitError(
            f"gate {gate!r}: angle {value} depends on {len(params)} parameters; the statevector "
            "engine supports one parameter per angle (a * theta + b)"
        )
    (param,) = params
    grad = value.gradient(param)
    if isinstance(grad, ParameterExpression) and grad.parameters:
        raise CircuitError(
            f"gate {gate!r}: angle {value} is not affine in {param}; the statevector engine "
            "supports a * theta + b"
        )
    coeff = float(grad if not isinstance(grad, ParameterExpression) else grad.numeric())
    offset_expr = value.assign(param, 0.0)
    offset = float(
        offset_expr.numeric() if isinstance(offset_expr, ParameterExpression) else offset_expr
    )
    if param not in index_of:
        raise CircuitError(f"gate {gate!r}: parameter {param} is not a parameter of the circuit")
    return index_of[param], coeff, offset


def compile_circuit(circuit: QuantumCircuit) -> GateProgram:
    """Compile a circuit into a :class:`GateProgram`.

    Parameters are indexed in ``circuit.parameters`` order (Qiskit's sorted order, which is the
    ``ParameterVector`` order for the QT ansatz). Barriers and measurements are skipped.

    Args:
        circuit: A circuit of the supported gates (see ``SUPPORTED_GATES``).

    Returns:
        The program.

    Raises:
        CircuitError: For an unsupported gate, a multi-parameter or non-affine angle, or
            classical control flow.
    """
    index_of = {p: i for i, p in enumerate(circuit.parameters)}
    targets: list[int] = []
    controls: list[int] = []
    rows: list[list[tuple[int, float, float]]] = []
    for instruction in circuit.data:
        op = instruction.operation
        name = op.name
        if name in _IGNORED:
            continue
        qubits = [circuit.find_bit(q).index for q in instruction.qubits]
        if name in _ONE and len(qubits) == 1:
            angles = _ONE[name](op.params)
            control, target = -1, qubits[0]
        elif name in _CONTROLLED and len(qubits) == 2:
            angles = _CONTROLLED[name](op.params)
            control, target = qubits
        else:
            raise CircuitError(
                f"gate {name!r} on {len(qubits)} qubit(s) is not supported by the statevector "
                f"engine; supported: {', '.join(SUPPORTED_GATES)} (transpile to these first)"
            )
        if getattr(op, "condition", None) is not None:
            raise CircuitError(f"gate {name!r} is classically conditioned; not supported")
        rows.append([_affine(a, index_of, name) for a in angles])
        targets.append(target)
        controls.append(control)
    n = len(rows)
    return GateProgram(
        num_qubits=circuit.num_qubits,
        num_parameters=circuit.num_parameters,
        targets=np.asarray(targets, dtype=np.int64).reshape(n),
        controls=np.asarray(controls, dtype=np.int64).reshape(n),
        param_index=np.asarray([[r[0] for r in row] for row in rows], dtype=np.int64).reshape(n, 4),
        coeff=np.asarray([[r[1] for r in row] for row in rows], dtype=np.float64).reshape(n, 4),
        offset=np.asarray([[r[2] for r in row] for row in rows], dtype=np.float64).reshape(n, 4),
    )


# Relative cost of one pass over the state for a gate whose lowest touched (physical) bit is
# ``lo``: short contiguous runs do not vectorise (measured on the 13-qubit float32 kernels; bit 6
# and above cost about the same). Switching layout (one gather of the state) costs ``_SWITCH``.
_RUN_COST = (10.0, 6.5, 5.5, 2.5, 1.6, 1.4)
_SWITCH = 3.0
ROTATE_MIN_QUBITS = 10
"""From this many qubits :func:`fuse_program` moves the low qubits to the top when it pays."""


@dataclass(frozen=True)
class FusedProgram:
    """A :class:`GateProgram` regrouped into fused, multiplexed single-qubit operations.

    Each operation acts on one target qubit, optionally with a control qubit, as the
    block-diagonal gate ``|0⟩⟨0|_c ⊗ A_0 + |1⟩⟨1|_c ⊗ A_1``, where ``A_1`` is the product of all its
    factor gates (in circuit order) and ``A_0`` the product of those factors that are not
    controlled (``A_0 = A_1`` without a control). A run of gates on one target that commute past
    the gates in between, such as ``U3`` on qubit ``t`` followed by ``CU3`` from ``c`` onto ``t``,
    thus costs one pass over the state instead of one per gate. The factors keep their own angles,
    so every angle still gets its own exact derivative.

    Operations of kind 1 move the state to another qubit layout (a bit permutation of the basis
    index): with few qubits above a gate's lowest bit the pair runs are short and do not vectorise,
    so for long stretches of such gates the qubits are relabelled by a rotation. Targets and
    controls are physical bit positions in the layout current at that operation; the program
    starts and ends in the identity layout.

    Attributes:
        num_qubits: Number of qubits.
        num_parameters: Number of circuit parameters.
        kind: 0 for a gate operation, 1 for a layout change, ``int64[O]``.
        target: Physical target bit (kind 0) or index into ``perms`` (kind 1), ``int64[O]``.
        control: Physical control bit or -1 (kind 0) or the inverse permutation's index (kind 1).
        start: First factor of the operation in the factor arrays, ``int64[O]``.
        stop: One past its last factor, ``int64[O]``.
        param_index: Per factor, as :attr:`GateProgram.param_index`, ``int64[F, 4]``.
        coeff: Per factor, ``float64[F, 4]``.
        offset: Per factor, ``float64[F, 4]``.
        controlled: 1 where the factor acts only when the control is 1, ``int64[F]``.
        perms: Layout changes: ``new[j] = old[perms[p, j]]``, ``int32[P, 2**n]``.
    """

    num_qubits: int
    num_parameters: int
    kind: NDArray[np.int64]
    target: NDArray[np.int64]
    control: NDArray[np.int64]
    start: NDArray[np.int64]
    stop: NDArray[np.int64]
    param_index: NDArray[np.int64]
    coeff: NDArray[np.float64]
    offset: NDArray[np.float64]
    controlled: NDArray[np.int64]
    perms: NDArray[np.int32]

    @property
    def num_operations(self) -> int:
        """Number of gate operations (passes over the state), layout changes excluded."""
        return int(np.count_nonzero(self.kind == 0))


@dataclass
class _Op:
    target: int
    control: int
    factors: list[tuple[int, int]]  # (gate index, controlled)


def _fuse_ops(program: GateProgram) -> list[_Op]:
    """Greedy fusion: each gate joins the latest operation on its target that it commutes back to.

    A gate moves back past operations that share no qubit with it; it joins an operation with the
    same target whose control is compatible (equal, or one of the two uncontrolled).
    """
    ops: list[_Op] = []
    for g in range(program.num_gates):
        t = int(program.targets[g])
        c = int(program.controls[g])
        qubits = {t} if c < 0 else {t, c}
        joined = False
        for op in reversed(ops):
            if op.target == t and (op.control == c or op.control < 0 or c < 0):
                if c >= 0:
                    op.control = c
                op.factors.append((g, int(c >= 0)))
                joined = True
                break
            if op.target in qubits or op.control in qubits:
                break
        if not joined:
            ops.append(_Op(target=t, control=c, factors=[(g, int(c >= 0))]))
    return ops


def _positions(num_qubits: int, shift: int) -> list[int]:
    """Physical bit of each qubit in the layout rotated by ``shift``."""
    return [(q + shift) % num_qubits for q in range(num_qubits)]


def _permutation(num_qubits: int, src: list[int], dst: list[int]) -> NDArray[np.int32]:
    """``p`` with ``new[j] = old[p[j]]`` from layout ``src`` to layout ``dst``."""
    j = np.arange(1 << num_qubits, dtype=np.int64)
    p = np.zeros_like(j)
    for q in range(num_qubits):
        p |= ((j >> dst[q]) & 1) << src[q]
    return p.astype(np.int32)


def _run_cost(op: _Op, pos: list[int]) -> float:
    lo = pos[op.target] if op.control < 0 else min(pos[op.target], pos[op.control])
    return _RUN_COST[lo] if lo < len(_RUN_COST) else 1.0


def _choose_layouts(ops: list[_Op], layouts: list[list[int]]) -> list[int]:
    """Layout per operation minimising run costs plus switches (dynamic programming).

    Starts and ends in layout 0.
    """
    inf = float("inf")
    cost = [0.0 if k == 0 else inf for k in range(len(layouts))]
    back: list[list[int]] = []
    for op in ops:
        new, arg = [], []
        for k, pos in enumerate(layouts):
            best = min(range(len(layouts)), key=lambda j: cost[j] + (0.0 if j == k else _SWITCH))
            new.append(cost[best] + (0.0 if best == k else _SWITCH) + _run_cost(op, pos))
            arg.append(best)
        cost = new
        back.append(arg)
    k = min(range(len(layouts)), key=lambda j: cost[j] + (0.0 if j == 0 else _SWITCH))
    chosen = [0] * len(ops)
    for i in range(len(ops) - 1, -1, -1):
        chosen[i] = k
        k = back[i][k]
    return chosen


def fuse_program(program: GateProgram, *, rotation: int | None = None) -> FusedProgram:
    """Fuse a :class:`GateProgram` into multiplexed operations (see :class:`FusedProgram`).

    Args:
        program: The compiled circuit.
        rotation: Shift of the alternative qubit layout (qubit ``q`` at bit ``(q + rotation) % n``);
            default ``n // 2`` from :data:`ROTATE_MIN_QUBITS` qubits, else none. 0 disables it.

    Returns:
        The fused program; it computes the same state as ``program``.
    """
    n = program.num_qubits
    if rotation is None:
        rotation = n // 2 if n >= ROTATE_MIN_QUBITS else 0
    ops = _fuse_ops(program)
    layouts = [_positions(n, 0)]
    if rotation % n:
        layouts.append(_positions(n, rotation % n))
    chosen = _choose_layouts(ops, layouts) if len(layouts) > 1 else [0] * len(ops)
    perms = [
        _permutation(n, layouts[a], layouts[b])
        for a in range(len(layouts))
        for b in range(len(layouts))
    ]
    kind: list[int] = []
    target: list[int] = []
    control: list[int] = []
    start: list[int] = []
    stop: list[int] = []
    factors: list[tuple[int, int]] = []
    current = 0
    for op, k in [*zip(ops, chosen, strict=True), (None, 0)]:
        if k != current:
            kind.append(1)
            target.append(current * len(layouts) + k)
            control.append(k * len(layouts) + current)
            start.append(len(factors))
            stop.append(len(factors))
            current = k
        if op is None:
            break
        pos = layouts[k]
        kind.append(0)
        target.append(pos[op.target])
        control.append(-1 if op.control < 0 else pos[op.control])
        start.append(len(factors))
        factors.extend(op.factors)
        stop.append(len(factors))
    gates = np.asarray([f[0] for f in factors], dtype=np.int64)
    f = len(factors)
    return FusedProgram(
        num_qubits=n,
        num_parameters=program.num_parameters,
        kind=np.asarray(kind, dtype=np.int64),
        target=np.asarray(target, dtype=np.int64),
        control=np.asarray(control, dtype=np.int64),
        start=np.asarray(start, dtype=np.int64),
        stop=np.asarray(stop, dtype=np.int64),
        param_index=np.ascontiguousarray(program.param_index[gates].reshape(f, 4)),
        coeff=np.ascontiguousarray(program.coeff[gates].reshape(f, 4)),
        offset=np.ascontiguousarray(program.offset[gates].reshape(f, 4)),
        controlled=np.asarray([x[1] for x in factors], dtype=np.int64).reshape(f),
        perms=np.stack(perms).astype(np.int32),
    )
