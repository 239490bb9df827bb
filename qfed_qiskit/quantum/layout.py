"""Device pass managers for QT circuits: Qiskit's presets, optionally on a chain of qubits."""

from __future__ import annotations

import itertools
import logging
import warnings
from typing import Any

from qfed_qiskit.exceptions import QFedInputError

logger = logging.getLogger(__name__)

LAYOUTS = ("auto", "line")
"""Qubit placement on a device: Qiskit's own (``auto``) or a chain of neighbours (``line``)."""


def _two_qubit_errors(backend: Any) -> dict[frozenset[int], float]:
    """Smallest two-qubit gate error of each coupled pair (0 where the target has none)."""
    errors: dict[frozenset[int], float] = {}
    target = getattr(backend, "target", None)
    for a, b in backend.coupling_map.get_edges():
        errors.setdefault(frozenset((a, b)), 0.0)
    if target is None:
        return errors
    for name in target.operation_names:
        if target.operation_from_name(name).num_qubits != 2:
            continue
        for qargs, props in target[name].items():
            if qargs is None or props is None or props.error is None:
                continue
            key = frozenset(qargs)
            if key in errors:
                current = errors[key]
                errors[key] = props.error if current == 0.0 else min(current, props.error)
    return errors


def _readout_errors(backend: Any) -> dict[int, float]:
    target = getattr(backend, "target", None)
    if target is None or "measure" not in target.operation_names:
        return {}
    out: dict[int, float] = {}
    for qargs, props in target["measure"].items():
        if qargs is not None and props is not None and props.error is not None:
            out[qargs[0]] = float(props.error)
    return out


def device_line(backend: Any, num_qubits: int) -> list[int] | None:
    """A chain of ``num_qubits`` coupled physical qubits with low two-qubit and readout errors.

    From every starting qubit, a depth-first search extends the chain with the neighbour of the
    lowest two-qubit error first; of the chains found, the one with the smallest summed error
    wins.

    Args:
        backend: A device with a ``coupling_map`` (and a ``target`` with error rates).
        num_qubits: Length of the chain.

    Returns:
        Physical qubits in chain order, or None if the device has no such chain.
    """
    errors = _two_qubit_errors(backend)
    readout = _readout_errors(backend)
    neighbours: dict[int, list[int]] = {}
    for pair in errors:
        a, b = sorted(pair)
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    for q, near in neighbours.items():
        near.sort(key=lambda other: (errors[frozenset((q, other))], other))
    if num_qubits == 1:
        return [min(range(backend.num_qubits), key=lambda q: (readout.get(q, 0.0), q))]

    def extend(path: list[int], used: set[int]) -> list[int] | None:
        if len(path) == num_qubits:
            return path
        for other in neighbours.get(path[-1], []):
            if other not in used:
                used.add(other)
                found = extend([*path, other], used)
                if found is not None:
                    return found
                used.discard(other)
        return None

    best: tuple[float, list[int]] | None = None
    for start in sorted(neighbours):
        chain = extend([start], {start})
        if chain is None:
            continue
        score = sum(errors[frozenset(e)] for e in itertools.pairwise(chain))
        score += sum(readout.get(q, 0.0) for q in chain)
        if best is None or score < best[0]:
            best = (score, chain)
    return None if best is None else best[1]


def device_pass_manager(
    backend: Any,
    *,
    optimization_level: int = 1,
    seed: int | None = None,
    layout: str = "auto",
    num_qubits: int | None = None,
) -> Any:
    """Qiskit's preset pass manager for ``backend`` (U/CU rewritten first), optionally on a line.

    With ``layout="line"`` the circuit is placed on :func:`device_line` and routed on that chain
    only, so it touches exactly ``num_qubits`` physical qubits: a simulator (Aer only simulates
    the qubits a circuit uses) then needs a ``num_qubits``-qubit density matrix, where Qiskit's
    own routing of the QT ring on a heavy-hex device spreads 7 logical qubits over 12 physical
    ones (a 1,024 times larger density-matrix simulation).

    Args:
        backend: Target device (fake device or IBM backend).
        optimization_level: 0..3.
        seed: ``seed_transpiler``.
        layout: ``"auto"`` (Qiskit's layout and routing) or ``"line"``.
        num_qubits: Logical qubits of the circuits (needed for ``"line"``).

    Returns:
        A ``StagedPassManager`` whose ``pre_init`` stage rewrites parameterised U/CU gates.

    Raises:
        QFedInputError: For an unknown layout, or ``"line"`` without ``num_qubits``.
    """
    from qfed_qiskit.quantum.transpile import preset_pass_manager, with_u_rewrite

    if layout not in LAYOUTS:
        raise QFedInputError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    chain = None
    if layout == "line":
        if num_qubits is None:
            raise QFedInputError("layout 'line' needs num_qubits")
        chain = device_line(backend, num_qubits)
        if chain is None:
            logger.warning(
                "%s has no chain of %d coupled qubits; using Qiskit's layout",
                getattr(backend, "name", "backend"),
                num_qubits,
            )
    if chain is None:
        return preset_pass_manager(backend, optimization_level=optimization_level, seed=seed)
    return with_u_rewrite(_line_pass_manager(backend, chain, optimization_level, seed))


def _line_pass_manager(
    backend: Any, chain: list[int], optimization_level: int, seed: int | None
) -> Any:
    """Preset pass manager placing logical qubit ``i`` on ``chain[i]``, routed on the chain."""
    from qiskit.transpiler import CouplingMap, generate_preset_pass_manager

    if optimization_level not in (0, 1, 2, 3):
        raise QFedInputError(f"optimization_level must be 0..3, got {optimization_level!r}")
    members = set(chain)
    edges = [(a, b) for a, b in backend.coupling_map.get_edges() if a in members and b in members]
    with warnings.catch_warnings():
        # Qiskit warns that a coupling map next to a backend drops gate durations and errors;
        # the layout is fixed here, and the ISA keeps the device's qubits and basis gates.
        warnings.filterwarnings("ignore", message=".*coupling_map.*", category=UserWarning)
        return generate_preset_pass_manager(
            optimization_level=optimization_level,
            backend=backend,
            coupling_map=CouplingMap(edges),
            initial_layout=list(chain),
            seed_transpiler=seed,
        )
