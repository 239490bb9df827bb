"""Sampler gradients: parameter shift as one PUB per circuit, plus the stock ones by name."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qiskit.circuit import Parameter, ParameterExpression, ParameterVector, QuantumCircuit
from qiskit_machine_learning.gradients import (
    BaseSamplerGradient,
    ParamShiftSamplerGradient,
    SamplerGradientResult,
    SPSASamplerGradient,
)

from qfed_qiskit.exceptions import BackendError, QFedInputError
from qfed_qiskit.quantum.results import pub_probabilities

GRADIENT_METHODS = ("batched-param-shift", "param-shift", "spsa")
"""Names accepted by :func:`make_sampler_gradient`."""

_HALF_PI = math.pi / 2
_C1 = (math.sqrt(2) + 1) / (4 * math.sqrt(2))
_C2 = (math.sqrt(2) - 1) / (4 * math.sqrt(2))

TWO_TERM: tuple[tuple[float, float], ...] = ((_HALF_PI, 0.5), (-_HALF_PI, -0.5))
"""``f' = [f(x + π/2) - f(x - π/2)] / 2``: exact when ``x`` enters as ``exp(-i x G)`` with ``G``
having two eigenvalues one apart (Pauli rotations ``exp(-i x P/2)``, phase gates)."""

FOUR_TERM: tuple[tuple[float, float], ...] = (
    (_HALF_PI, _C1),
    (-_HALF_PI, -_C1),
    (3 * _HALF_PI, -_C2),
    (-3 * _HALF_PI, _C2),
)
"""``f' = c1 [f(x + π/2) - f(x - π/2)] - c2 [f(x + 3π/2) - f(x - 3π/2)]``,
``c1,2 = (√2 ± 1) / (4√2)``: exact for generators with eigenvalues ``{0, ±1/2}`` (controlled Pauli
rotations; Anselmetti et al., New J. Phys. 23, 113010 (2021))."""

# Shift rule of each angle of each gate, from the gate's exact decomposition:
#   U3(θ, φ, λ) = P(φ) RY(θ) P(λ)  and
#   CU(θ, φ, λ, γ) = P(γ)_control · CP(φ) · CRY(θ) · CP(λ),
# so U's angles and CU's φ, λ, γ each enter one phase gate or Pauli rotation (two-term rule),
# while CU's θ enters a controlled rotation (four-term rule). Noise applied after a whole gate
# (Aer noise models on the logical circuit) keeps these rules exact.
_RULES: dict[str, tuple[tuple[tuple[float, float], ...], ...]] = {
    "u": (TWO_TERM, TWO_TERM, TWO_TERM),
    "u3": (TWO_TERM, TWO_TERM, TWO_TERM),
    "u2": (TWO_TERM, TWO_TERM),
    "u1": (TWO_TERM,),
    "p": (TWO_TERM,),
    "rx": (TWO_TERM,),
    "ry": (TWO_TERM,),
    "rz": (TWO_TERM,),
    "rxx": (TWO_TERM,),
    "ryy": (TWO_TERM,),
    "rzz": (TWO_TERM,),
    "rzx": (TWO_TERM,),
    "cp": (TWO_TERM,),
    "cu1": (TWO_TERM,),
    "crx": (FOUR_TERM,),
    "cry": (FOUR_TERM,),
    "crz": (FOUR_TERM,),
    "cu": (FOUR_TERM, TWO_TERM, TWO_TERM, TWO_TERM),
    "cu3": (FOUR_TERM, TWO_TERM, TWO_TERM),
}
SUPPORTED_GATES = tuple(sorted(_RULES))
"""Gates whose angles are shifted directly; others are first translated into these."""


@dataclass(frozen=True)
class ShiftPlan:
    """How to differentiate one circuit by parameter shifts.

    Each *slot* is one gate angle that depends on the circuit parameters. If every slot is a
    distinct bare parameter (the QT ansatz), the gradient circuit is the circuit itself (same
    transpilation, same noise) and slot ``k`` is column ``columns[k]``; otherwise each slot gets its
    own parameter in a rewritten gradient circuit and the chain rule maps slots back.

    Attributes:
        circuit: The gradient circuit (the input circuit when no rewrite was needed).
        num_columns: Number of parameters of the gradient circuit.
        slot_column: Column of the gradient circuit's parameter array shifted for each slot.
        slot_expr: The angle of each slot as an expression of the original parameters.
        slot_rule: ``((shift, coefficient), ...)`` of each slot.
        trivial: Whether the gradient circuit is the input circuit.
    """

    circuit: QuantumCircuit
    num_columns: int
    slot_column: tuple[int, ...]
    slot_expr: tuple[Any, ...]
    slot_rule: tuple[tuple[tuple[float, float], ...], ...]
    trivial: bool

    def rows_for(self, slots: Sequence[int]) -> int:
        """Number of shifted parameter sets for the given slots."""
        return sum(len(self.slot_rule[k]) for k in slots)


def _angle_slots(
    circuit: QuantumCircuit,
) -> tuple[list[tuple[int, int, Any, tuple[tuple[float, float], ...]]], bool]:
    """Parameterised gate angles with their shift rule; and whether every one has a rule."""
    slots: list[tuple[int, int, Any, tuple[tuple[float, float], ...]]] = []
    complete = True
    for i, instruction in enumerate(circuit.data):
        op = instruction.operation
        rules = _RULES.get(op.name)
        for j, angle in enumerate(op.params):
            if not isinstance(angle, ParameterExpression) or not angle.parameters:
                continue
            if rules is None or j >= len(rules):
                complete = False
                continue
            slots.append((i, j, angle, rules[j]))
    return slots, complete


def build_shift_plan(circuit: QuantumCircuit) -> ShiftPlan:
    """Analyse ``circuit`` for parameter-shift differentiation (see :class:`ShiftPlan`).

    Gates outside :data:`SUPPORTED_GATES` that carry parameters are first translated into
    supported gates with Qiskit's ``TranslateParameterizedGates``.

    Raises:
        QFedInputError: If a parameterised gate cannot be translated into supported gates.
    """
    slots, complete = _angle_slots(circuit)
    source = circuit
    if not complete:
        from qiskit.transpiler.passes import TranslateParameterizedGates

        try:
            source = TranslateParameterizedGates(list(SUPPORTED_GATES))(circuit)
        except Exception as exc:
            raise QFedInputError(
                f"cannot express the parameterised gates of {circuit.name!r} in {SUPPORTED_GATES}"
            ) from exc
        slots, complete = _angle_slots(source)
        if not complete:
            raise QFedInputError(f"circuit {circuit.name!r} has gates without a shift rule")

    params = list(circuit.parameters)
    index = {p: k for k, p in enumerate(params)}
    bare = [s[2] for s in slots if isinstance(s[2], Parameter)]
    phase = source.global_phase
    phase_free = not (isinstance(phase, ParameterExpression) and phase.parameters)
    if source is circuit and len(bare) == len(slots) and len(set(bare)) == len(bare) and phase_free:
        return ShiftPlan(
            circuit=circuit,
            num_columns=len(params),
            slot_column=tuple(index[s[2]] for s in slots),
            slot_expr=tuple(s[2] for s in slots),
            slot_rule=tuple(s[3] for s in slots),
            trivial=True,
        )

    unique = ParameterVector("_qfed_shift", len(slots))
    replace = {(i, j): unique[k] for k, (i, j, _, _) in enumerate(slots)}
    rewritten = source.copy_empty_like()
    if not phase_free:
        rewritten.global_phase = 0.0  # a global phase does not change probabilities
    for i, instruction in enumerate(source.data):
        op = instruction.operation
        if any((i, j) in replace for j in range(len(op.params))):
            op = op.copy()
            op.params = [replace.get((i, j), a) for j, a in enumerate(op.params)]
        rewritten.append(op, instruction.qubits, instruction.clbits)
    return ShiftPlan(
        circuit=rewritten,
        num_columns=len(slots),
        slot_column=tuple(range(len(slots))),
        slot_expr=tuple(s[2] for s in slots),
        slot_rule=tuple(s[3] for s in slots),
        trivial=False,
    )


def _sparse_row(row: NDArray[np.float64]) -> dict[int, float]:
    """``{outcome: value}`` for the nonzero entries of a dense gradient row."""
    nonzero = np.flatnonzero(row)
    return dict(zip(nonzero.tolist(), row[nonzero].tolist(), strict=True))


def _bind(expr: Any, values: dict[Parameter, float]) -> float:
    if isinstance(expr, Parameter):
        return float(values[expr])
    bound = expr.bind({p: values[p] for p in expr.parameters})
    return float(bound)


class BatchedParamShiftSamplerGradient(BaseSamplerGradient):
    """Parameter-shift sampler gradient that sends all shifted parameter sets as ONE PUB.

    The stock :class:`~qiskit_machine_learning.gradients.ParamShiftSamplerGradient` submits one
    PUB per shifted parameter set (``2 P`` circuits, each bound and run separately) and translates
    the circuit into Pauli rotations with one parameter per occurrence. This gradient keeps the
    circuit's own gates and applies each gate angle's exact shift rule (:data:`TWO_TERM` for
    ``U``'s angles and ``CU``'s φ, λ, γ; :data:`FOUR_TERM` for ``CU``'s θ and controlled
    rotations), then submits a single PUB per circuit: the circuit plus a ``(rows, P)`` array of
    all shifted parameter sets (for several samples of one circuit, their rows are stacked into the
    same PUB). One training step is therefore one sampler job, with the forward circuit's
    transpilation and noise model reused unchanged.

    Exactness: exact for noiseless samplers and for noise applied after whole gates (Aer noise
    models on the logical circuit). On an ISA-transpiled noisy device, a parameter that the
    transpiler splits over several noisy gates (CU's φ and λ) has a gradient biased by an amount
    of the order of the gate error.

    Args:
        sampler: The V2 sampler used to run the shifted circuits.
        options: Primitive options (the ``shots`` option, if set, is passed to ``run``).
        pass_manager: Optional pass manager, applied once per gradient circuit (cached).
    """

    def __init__(
        self,
        sampler: Any,
        options: Any | None = None,
        pass_manager: Any | None = None,
    ) -> None:
        super().__init__(sampler, options=options, pass_manager=pass_manager)
        self._plans: dict[int, tuple[QuantumCircuit, ShiftPlan, QuantumCircuit, list[int]]] = {}

    def plan(self, circuit: QuantumCircuit) -> ShiftPlan:
        """The (cached) :class:`ShiftPlan` of ``circuit``."""
        return self._entry(circuit)[1]

    def num_evaluations(
        self, circuit: QuantumCircuit, parameters: Sequence[Parameter] | None = None
    ) -> int:
        """Number of shifted parameter sets one gradient of ``circuit`` submits."""
        plan = self.plan(circuit)
        return plan.rows_for(self._slots(plan, circuit, parameters))

    def _entry(
        self, circuit: QuantumCircuit
    ) -> tuple[QuantumCircuit, ShiftPlan, QuantumCircuit, list[int]]:
        cached = self._plans.get(id(circuit))
        if cached is not None and cached[0] is circuit:
            return cached
        plan = build_shift_plan(circuit)
        run_circuit = plan.circuit
        columns = list(range(plan.num_columns))
        if self._pass_manager is not None:
            run_circuit = self._pass_manager.run(plan.circuit)
            names = {p.name: k for k, p in enumerate(plan.circuit.parameters)}
            columns = [names[p.name] for p in run_circuit.parameters]
        entry = (circuit, plan, run_circuit, columns)
        self._plans[id(circuit)] = entry
        return entry

    @staticmethod
    def _slots(
        plan: ShiftPlan, circuit: QuantumCircuit, parameters: Sequence[Parameter] | None
    ) -> list[int]:
        if parameters is None:
            return list(range(len(plan.slot_expr)))
        wanted = set(parameters)
        return [k for k, e in enumerate(plan.slot_expr) if wanted.intersection(e.parameters)]

    def _run(
        self,
        circuits: Sequence[QuantumCircuit],
        parameter_values: Sequence[Sequence[float]],
        parameters: Sequence[Sequence[Parameter]],
        **options: Any,
    ) -> SamplerGradientResult:
        """Build every shifted parameter set, run one PUB per distinct circuit, combine."""
        groups: dict[int, list[int]] = {}
        prepared: list[tuple[ShiftPlan, list[int], NDArray[np.float64]]] = []
        for idx, (circuit, values, params) in enumerate(
            zip(circuits, parameter_values, parameters, strict=True)
        ):
            _, plan, _, _ = self._entry(circuit)
            slots = self._slots(plan, circuit, params)
            rows = self._shift_rows(plan, circuit, np.asarray(values, dtype=np.float64), slots)
            prepared.append((plan, slots, rows))
            groups.setdefault(id(circuit), []).append(idx)

        pubs: list[tuple[Any, ...]] = []
        spans: dict[int, tuple[int, int, int]] = {}  # sample -> (pub index, row start, row end)
        for members in groups.values():
            _, _, run_circuit, columns = self._entry(circuits[members[0]])
            stacked = np.concatenate([prepared[m][2] for m in members], axis=0)
            start = 0
            for m in members:
                n = prepared[m][2].shape[0]
                spans[m] = (len(pubs), start, start + n)
                start += n
            if stacked.shape[0] == 0:
                continue
            pubs.append((run_circuit, stacked[:, columns]))

        results: Any = []
        if pubs:
            shots = options.get("shots")
            job = self._sampler.run(pubs) if shots is None else self._sampler.run(pubs, shots=shots)
            try:
                results = job.result()
            except BackendError:
                raise
            except Exception as exc:
                raise BackendError(f"gradient sampler job failed: {exc}") from exc
        probabilities = [pub_probabilities(results[i]) for i in range(len(pubs))]

        gradients: list[list[dict[int, float]]] = []
        metadata: list[dict[str, Any]] = []
        for idx, (circuit, values, params) in enumerate(
            zip(circuits, parameter_values, parameters, strict=True)
        ):
            plan, slots, rows = prepared[idx]
            dim = 1 << plan.circuit.num_clbits
            if rows.shape[0] == 0:
                slot_grads = np.zeros((0, dim))
            else:
                pub_index, start, end = spans[idx]
                slot_grads = self._combine(plan, slots, probabilities[pub_index][start:end])
            if plan.trivial:  # slot k is parameter slot_expr[k]: gather instead of a matmul
                where = {plan.slot_expr[k]: s for s, k in enumerate(slots)}
                grad = np.zeros((len(params), dim))
                for j, p in enumerate(params):
                    if p in where:
                        grad[j] = slot_grads[where[p]]
            else:
                values_ = np.asarray(values, dtype=np.float64)
                grad = self._chain(plan, circuit, values_, slots, params).T @ slot_grads
            gradients.append([_sparse_row(row) for row in grad])
            metadata.append({"parameters": params, "evaluations": int(rows.shape[0])})
        return SamplerGradientResult(gradients=gradients, metadata=metadata, options=options)

    @staticmethod
    def _base_columns(
        plan: ShiftPlan, circuit: QuantumCircuit, values: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        if plan.trivial:
            return values
        bound = dict(zip(circuit.parameters, values, strict=True))
        return np.array([_bind(e, bound) for e in plan.slot_expr], dtype=np.float64)

    def _shift_rows(
        self,
        plan: ShiftPlan,
        circuit: QuantumCircuit,
        values: NDArray[np.float64],
        slots: Sequence[int],
    ) -> NDArray[np.float64]:
        base = self._base_columns(plan, circuit, values)
        counts = [len(plan.slot_rule[k]) for k in slots]
        total = sum(counts)
        rows = np.repeat(base[None, :], total, axis=0)
        if total:
            column = np.repeat([plan.slot_column[k] for k in slots], counts)
            shift = np.array([s for k in slots for s, _ in plan.slot_rule[k]], dtype=np.float64)
            rows[np.arange(total), column] += shift
        return rows

    @staticmethod
    def _combine(
        plan: ShiftPlan, slots: Sequence[int], probs: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        coef = np.array([c for k in slots for _, c in plan.slot_rule[k]], dtype=np.float64)
        starts = np.cumsum([0] + [len(plan.slot_rule[k]) for k in slots[:-1]])
        out: NDArray[np.float64] = np.add.reduceat(coef[:, None] * probs, starts, axis=0)
        return out

    @staticmethod
    def _chain(
        plan: ShiftPlan,
        circuit: QuantumCircuit,
        values: NDArray[np.float64],
        slots: Sequence[int],
        params: Sequence[Parameter],
    ) -> NDArray[np.float64]:
        """``J[s, j] = d slot_s / d params[j]``."""
        jac = np.zeros((len(slots), len(params)))
        position = {p: j for j, p in enumerate(params)}
        bound: dict[Parameter, float] | None = None
        for s, k in enumerate(slots):
            expr = plan.slot_expr[k]
            if isinstance(expr, Parameter):
                if expr in position:
                    jac[s, position[expr]] = 1.0
                continue
            for p in expr.parameters:
                if p not in position:
                    continue
                derivative = expr.gradient(p)
                if isinstance(derivative, ParameterExpression) and derivative.parameters:
                    if bound is None:
                        bound = dict(zip(circuit.parameters, values, strict=True))
                    derivative = _bind(derivative, bound)
                jac[s, position[p]] = float(derivative)
        return jac


def make_sampler_gradient(
    name: str,
    *,
    sampler: Any,
    seed: int | None = None,
    spsa_batch: int = 1,
    spsa_epsilon: float = 0.01,
    pass_manager: Any | None = None,
) -> BaseSamplerGradient:
    """A sampler gradient by name.

    Args:
        name: ``"batched-param-shift"`` (ours, one PUB per step), ``"param-shift"`` (stock
            qiskit-machine-learning, one PUB per shifted circuit) or ``"spsa"`` (stock SPSA).
        sampler: The V2 sampler to run the circuits.
        seed: Seed of SPSA's random directions.
        spsa_batch: Number of SPSA directions averaged per gradient.
        spsa_epsilon: SPSA perturbation size.
        pass_manager: Optional pass manager for the gradient circuits.

    Returns:
        A :class:`~qiskit_machine_learning.gradients.BaseSamplerGradient`.

    Raises:
        QFedInputError: For an unknown name or bad SPSA settings.
    """
    if name == "batched-param-shift":
        return BatchedParamShiftSamplerGradient(sampler, pass_manager=pass_manager)
    if name == "param-shift":
        return ParamShiftSamplerGradient(sampler=sampler, pass_manager=pass_manager)
    if name == "spsa":
        if isinstance(spsa_batch, bool) or not isinstance(spsa_batch, int) or spsa_batch < 1:
            raise QFedInputError(f"spsa_batch must be an integer >= 1, got {spsa_batch!r}")
        if not spsa_epsilon > 0:
            raise QFedInputError(f"spsa_epsilon must be > 0, got {spsa_epsilon!r}")
        return SPSASamplerGradient(
            sampler,
            epsilon=spsa_epsilon,
            batch_size=spsa_batch,
            seed=seed,
            pass_manager=pass_manager,
        )
    raise QFedInputError(f"gradient must be one of {GRADIENT_METHODS}, got {name!r}")
