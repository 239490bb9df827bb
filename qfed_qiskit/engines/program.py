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
