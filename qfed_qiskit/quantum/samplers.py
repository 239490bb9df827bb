"""V2 samplers for the Qiskit engines: Aer (ideal, noisy, exact), fake IBM devices, wrappers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qiskit.circuit import ParameterExpression, QuantumCircuit
from qiskit.primitives import BaseSamplerV2, PrimitiveJob, PrimitiveResult, SamplerPubResult
from qiskit.primitives.containers import BitArray, DataBin
from qiskit.primitives.containers.sampler_pub import SamplerPub

from qfed_qiskit.exceptions import BackendError, QFedInputError
from qfed_qiskit.quantum.transpile import IsaTranspiler

logger = logging.getLogger(__name__)

JobRecorder = Callable[[str], object] | list[str]
"""Where job ids go: a list to append to, or a callable taking each id."""

AER_METHODS = ("automatic", "statevector", "density_matrix")
_MAX_DENSE_BITS = 24

_FAKE_SKIP = {"Fake", "FakeBackendV2", "FakeProviderForBackendV2", "FakeFractionalBackend"}


# --------------------------------------------------------------------------------------------
# Exact probability results
# --------------------------------------------------------------------------------------------


class ProbabilityArray:
    """Exact outcome distributions of one classical register, a drop-in for :class:`BitArray`.

    Qiskit's V2 samplers return shot samples (:class:`~qiskit.primitives.containers.BitArray`);
    an exact simulation has none. This container offers the parts of the ``BitArray`` interface
    that qiskit-machine-learning reads (``get_counts``, ``get_int_counts``, ``num_bits``,
    ``shape``), returning probabilities where a ``BitArray`` returns counts, so that
    ``SamplerQNN`` (which normalises counts by their sum) sees exact distributions.

    Args:
        probabilities: Array of shape ``(*shape, 2**num_bits)``; entry ``k`` is the probability of
            the outcome whose bitstring, read as a binary number, is ``k`` (Qiskit order).
        num_bits: Number of bits of the register.
    """

    num_shots = None

    def __init__(self, probabilities: NDArray[np.float64], num_bits: int) -> None:
        probs = np.asarray(probabilities, dtype=np.float64)
        if probs.shape[-1:] != (1 << num_bits,):
            raise QFedInputError(
                f"probabilities must end with an axis of 2**{num_bits}, got shape {probs.shape}"
            )
        self._probs = probs
        self._num_bits = num_bits

    @property
    def probabilities(self) -> NDArray[np.float64]:
        """The dense probabilities, shape ``(*shape, 2**num_bits)``."""
        return self._probs

    @property
    def num_bits(self) -> int:
        """Number of bits of the register."""
        return self._num_bits

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the parameter sweep (the PUB shape)."""
        return tuple(self._probs.shape[:-1])

    @property
    def ndim(self) -> int:
        """Number of dimensions of :attr:`shape`."""
        return len(self.shape)

    def _vector(self, loc: int | tuple[int, ...] | None) -> NDArray[np.float64]:
        if loc is None:
            flat = self._probs.reshape(-1, self._probs.shape[-1])
            out: NDArray[np.float64] = flat.sum(axis=0)
            return out
        vector: NDArray[np.float64] = self._probs[loc]
        if vector.ndim != 1:
            raise QFedInputError(f"loc {loc!r} does not select a single distribution")
        return vector

    def get_int_counts(self, loc: int | tuple[int, ...] | None = None) -> dict[int, float]:
        """Probabilities by integer outcome (summed over the sweep when ``loc`` is None)."""
        vector = self._vector(loc)
        nonzero = np.flatnonzero(vector)
        return {int(k): float(vector[k]) for k in nonzero}

    def get_counts(self, loc: int | tuple[int, ...] | None = None) -> dict[str, float]:
        """Probabilities by bitstring (summed over the sweep when ``loc`` is None)."""
        width = self._num_bits
        return {format(k, f"0{width}b"): v for k, v in self.get_int_counts(loc).items()}

    def __repr__(self) -> str:
        return f"ProbabilityArray(shape={self.shape}, num_bits={self._num_bits})"


class ExactSamplerPubResult(SamplerPubResult):  # type: ignore[misc]
    """A :class:`SamplerPubResult` whose data are :class:`ProbabilityArray` values."""

    def join_data(self, names: Iterable[str] | None = None) -> Any:
        """The single register's :class:`ProbabilityArray` (joining several is not supported)."""
        keys = list(self.data) if names is None else list(names)
        if len(keys) != 1:
            raise QFedInputError(f"exact results hold one classical register, asked for {keys}")
        return self.data[keys[0]]


class SampledBitArray(BitArray):  # type: ignore[misc]
    """A :class:`BitArray` that also keeps the outcome counts it was drawn from.

    Behaves exactly like a ``BitArray`` (``SamplerQNN`` and the stock gradients read it as
    such); :func:`pub_probabilities` uses :attr:`frequencies` and skips re-counting the shots.
    """

    def __init__(self, array: NDArray[np.uint8], num_bits: int, counts: NDArray[np.int64]) -> None:
        super().__init__(array, num_bits)
        self._frequencies = counts.reshape(-1, counts.shape[-1]) / float(array.shape[-2])

    @property
    def frequencies(self) -> NDArray[np.float64]:
        """Outcome frequencies, shape ``(N, 2**num_bits)`` over the flattened PUB shape."""
        out: NDArray[np.float64] = self._frequencies
        return out


def pub_probabilities(result: Any) -> NDArray[np.float64]:
    """Dense outcome probabilities of one sampler PUB result, one row per parameter set.

    Works for exact results (:class:`ProbabilityArray`) and for shot results
    (:class:`~qiskit.primitives.containers.BitArray`, counted without Python loops). Registers
    are joined as :meth:`SamplerPubResult.join_data` joins them.

    Args:
        result: A ``SamplerPubResult``.

    Returns:
        Array of shape ``(N, 2**num_bits)``, ``N`` the number of parameter sets in the PUB.
    """
    fields = list(result.data)
    bits = result.data[fields[0]] if len(fields) == 1 else result.join_data()
    if isinstance(bits, ProbabilityArray):
        return bits.probabilities.reshape(-1, bits.probabilities.shape[-1])
    if isinstance(bits, SampledBitArray):
        return bits.frequencies
    if not isinstance(bits, BitArray):
        raise BackendError(f"sampler returned {type(bits).__name__} data, expected a BitArray")
    return bitarray_probabilities(bits)


def bitarray_probabilities(bits: BitArray) -> NDArray[np.float64]:
    """Empirical outcome frequencies of a :class:`BitArray`, shape ``(N, 2**num_bits)``."""
    if bits.num_bits > _MAX_DENSE_BITS:
        raise QFedInputError(
            f"dense probabilities need at most {_MAX_DENSE_BITS} bits, got {bits.num_bits}"
        )
    raw = np.asarray(bits.array)
    shots = raw.shape[-2]
    raw = raw.reshape(-1, shots, raw.shape[-1])
    values = np.zeros(raw.shape[:2], dtype=np.int64)
    for byte in range(raw.shape[-1]):  # big-endian bytes: the last holds the lowest bits
        values = (values << 8) | raw[..., byte].astype(np.int64)
    dim = 1 << bits.num_bits
    rows = raw.shape[0]
    flat = values + (np.arange(rows, dtype=np.int64) * dim)[:, None]
    counts = np.bincount(flat.ravel(), minlength=rows * dim).reshape(rows, dim)
    out: NDArray[np.float64] = counts / float(max(shots, 1))
    return out


# --------------------------------------------------------------------------------------------
# Exact sampler
# --------------------------------------------------------------------------------------------


def _has_unbound(op: Any) -> bool:
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
        if _has_unbound(inst.operation) and not inst.operation.is_parameterized()
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


@dataclass(frozen=True)
class _ExactPlan:
    """A circuit prepared for exact simulation (measurements replaced by save_probabilities)."""

    circuit: QuantumCircuit
    register: str
    num_bits: int
    measured_qubits: tuple[int, ...]  # clbit j is measured from qubit measured_qubits[j]
    simulator: Any  # the AerSimulator to run it on
    noise_model: Any  # its noise model (None when ideal), for readout errors


def _final_measurements(circuit: QuantumCircuit) -> tuple[QuantumCircuit, str, tuple[int, ...]]:
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


def _readout_matrices(noise_model: Any, qubits: Sequence[int]) -> list[NDArray[np.float64] | None]:
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


def sample_bitarray(
    probs: NDArray[np.float64],
    shots: int,
    num_bits: int,
    rng: np.random.Generator,
    shape: tuple[int, ...] | None = None,
) -> BitArray:
    """Draw ``shots`` outcomes from each of the ``N`` distributions ``probs`` (``(N, 2**k)``).

    Returns a :class:`BitArray` of leading shape ``shape`` (default ``(N,)``).

    For circuits whose measurements are all at the end, this is distributed exactly as running
    the circuit ``shots`` times (Aer does the same "measurement sampling" from its final state).
    """
    p = np.clip(probs, 0.0, None)
    p = p / p.sum(axis=1, keepdims=True)
    counts = rng.multinomial(shots, p)
    dim = p.shape[1]
    outcomes = np.stack([np.repeat(np.arange(dim), row) for row in counts])
    outcomes = rng.permuted(outcomes, axis=1)
    nbytes = max(1, (num_bits + 7) // 8)
    packed = np.empty((*outcomes.shape, nbytes), dtype=np.uint8)
    for byte in range(nbytes):
        packed[..., byte] = (outcomes >> (8 * (nbytes - 1 - byte))) & 0xFF
    lead = (p.shape[0],) if shape is None else tuple(shape)
    return SampledBitArray(packed.reshape((*lead, shots, nbytes)), num_bits, counts)


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


def _active_qubits(circuit: QuantumCircuit, measured: Sequence[int]) -> list[int]:
    used = set(measured)
    for inst in circuit.data:
        if inst.operation.name != "barrier":
            used.update(circuit.find_bit(q).index for q in inst.qubits)
    return sorted(used)


def _compact_circuit(circuit: QuantumCircuit, active: Sequence[int]) -> QuantumCircuit:
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
    unsafe = _has_unbound(op) and not op.is_parameterized()
    return unsafe or (op.name not in supported and _has_unbound(op))


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


_PLAN_CACHE_SIZE = 64

AER_SPEED_OPTIONS: dict[str, int] = {"fusion_threshold": 1, "max_parallel_experiments": 0}
"""Aer options of :class:`ExactAerSampler`'s simulators.

Aer fuses gates only from 14 qubits on by default and runs the experiments of one call (the
parameter sets of a PUB) one after another. For the few-qubit density matrices QT needs (7
qubits, L = 16, depolarizing noise: 118 ms per parameter set, Aer 0.18, 2 cores) fusing gates
between noise operations is 3x faster and running parameter sets in parallel another 1.7x. Both
leave the simulated channel unchanged (the agreement tests run with them).
"""


class ExactAerSampler(BaseSamplerV2):  # type: ignore[misc]
    """A V2 sampler that computes exact outcome distributions with Aer.

    Stock V2 samplers (Aer's ``SamplerV2``, ``StatevectorSampler``) always draw shots. This one
    replaces a circuit's final measurements by Aer's ``save_probabilities`` on the measured qubits
    (in classical-bit order), runs every parameter set of a PUB in one Aer call, applies the noise
    model's readout errors (if any), and returns either the exact distributions
    (:class:`ProbabilityArray` data, when no shots are asked for) or ``shots`` samples drawn from
    them (:class:`BitArray` data), under the register's name. Noiseless circuits run with the
    ``statevector`` method, noisy ones with ``density_matrix``: sampling shots from the exact
    noisy distribution is what Aer's density-matrix method does itself, and is much faster than
    its per-shot noisy trajectories.

    All parameter sets of a PUB are bound by Aer in one call (``parameter_binds``). Gates Aer would
    not bind (:func:`aer_unsafe_gates`) or, under noise, gates Aer's density-matrix method lacks
    (``cu``, ``crx``, ...) are first rewritten by :func:`noise_preserving_decomposition`, so a
    noise model keyed on ``"cu"`` still applies exactly once per ``cu``.

    Args:
        simulator: An ``AerSimulator`` (e.g. ``AerSimulator.from_backend(...)``), whose method
            option is set here; default a new one with ``noise_model`` and ``method``.
        noise_model: An Aer ``NoiseModel`` (ignored when ``simulator`` is given: that simulator's
            own noise model is used).
        method: ``"automatic"`` (statevector without noise, density_matrix with noise),
            ``"statevector"`` or ``"density_matrix"``.
        shots: Default shots per parameter set; None (default) for exact distributions.
        seed: Seed of the shot sampling.

    Raises:
        QFedInputError: For an unknown method, or ``"statevector"`` with a noise model.
    """

    def __init__(
        self,
        *,
        simulator: Any | None = None,
        noise_model: Any | None = None,
        method: str = "automatic",
        shots: int | None = None,
        seed: int | None = None,
    ) -> None:
        from qiskit_aer import AerSimulator

        if method not in AER_METHODS:
            raise QFedInputError(f"method must be one of {AER_METHODS}, got {method!r}")
        if simulator is not None:
            noise_model = getattr(simulator.options, "noise_model", None)
        noisy = noise_model is not None and not noise_model.is_ideal()
        if method == "statevector" and noisy:
            raise QFedInputError(
                "exact probabilities with a noise model need method 'density_matrix', "
                "got 'statevector'"
            )
        chosen = method if method != "automatic" else ("density_matrix" if noisy else "statevector")
        if simulator is None:
            simulator = AerSimulator(method=chosen, noise_model=noise_model if noisy else None)
        simulator.set_options(method=chosen, **AER_SPEED_OPTIONS)
        self._simulator = simulator
        self._noise_model = noise_model if noisy else None
        self._method = chosen
        self._shots = _check_shots(shots)
        self._rng = np.random.default_rng(seed)
        self._supported = set(AerSimulator(method=chosen).configuration().basis_gates)
        self._plans: dict[int, tuple[QuantumCircuit, _ExactPlan]] = {}
        self._compact: dict[tuple[int, ...], tuple[Any, Any]] = {}

    @property
    def is_exact(self) -> bool:
        """Whether ``run`` without ``shots`` returns exact distributions."""
        return self._shots is None

    @property
    def default_shots(self) -> int | None:
        """Shots per parameter set when neither the PUB nor ``run`` sets them (None: exact)."""
        return self._shots

    @property
    def method(self) -> str:
        """The Aer simulation method used."""
        return self._method

    @property
    def options(self) -> Any:
        """The simulator's options."""
        return self._simulator.options

    def _plan(self, circuit: QuantumCircuit) -> _ExactPlan:
        cached = self._plans.get(id(circuit))
        if cached is not None and cached[0] is circuit:
            return cached[1]
        body, register, order = _final_measurements(circuit)
        simulator, noise_model = self._simulator, self._noise_model
        if noise_model is not None and "delay" not in body.count_ops():
            active = _active_qubits(body, order)
            if len(active) < body.num_qubits:
                key = tuple(active)
                if key not in self._compact:
                    from qiskit_aer import AerSimulator

                    model = restrict_noise_model(noise_model, active)
                    self._compact[key] = (
                        AerSimulator(method=self._method, noise_model=model, **AER_SPEED_OPTIONS),
                        model,
                    )
                simulator, noise_model = self._compact[key]
                position = {q: i for i, q in enumerate(active)}
                body = _compact_circuit(body, active)
                order = tuple(position[q] for q in order)
        body = noise_preserving_decomposition(body, self._supported)
        unsafe = aer_unsafe_gates(body)
        if unsafe:
            raise QFedInputError(f"Aer cannot bind the parameters of gates {sorted(unsafe)}")
        body.save_probabilities(list(order))
        plan = _ExactPlan(body, register, len(order), order, simulator, noise_model)
        self._plans[id(circuit)] = (circuit, plan)
        while len(self._plans) > _PLAN_CACHE_SIZE:  # callers that make new circuits per call
            self._plans.pop(next(iter(self._plans)))
        return plan

    def run(
        self, pubs: Iterable[Any], *, shots: int | None = None
    ) -> PrimitiveJob[PrimitiveResult[SamplerPubResult]]:
        """Exact distributions, or samples of them, for each PUB.

        Args:
            pubs: Sampler PUBs.
            shots: Shots per parameter set for PUBs that set none; None: :attr:`default_shots`
                (None: exact distributions).

        Returns:
            A job whose result holds one :class:`SamplerPubResult` per PUB.
        """
        default = _check_shots(shots) if shots is not None else self._shots
        coerced = [SamplerPub.coerce(pub, default) for pub in pubs]
        job = PrimitiveJob(self._run, coerced)
        job._submit()
        return job

    def _run(self, pubs: list[SamplerPub]) -> PrimitiveResult[SamplerPubResult]:
        return PrimitiveResult([self._run_pub(pub) for pub in pubs], metadata={"version": 2})

    def _run_pub(self, pub: SamplerPub) -> SamplerPubResult:
        plan = self._plan(pub.circuit)
        params = list(pub.circuit.parameters)
        shape = tuple(pub.parameter_values.shape)
        if params:
            values = pub.parameter_values.as_array(params).reshape(-1, len(params))
        else:
            values = np.zeros((1, 0))
        rows = values.shape[0]
        binds = [{p: values[:, i] for i, p in enumerate(params)}] if params else None
        result = plan.simulator.run([plan.circuit], parameter_binds=binds, shots=1).result()
        if not result.success:
            raise BackendError(f"Aer simulation failed: {result.status}")
        probs = np.array(
            [np.asarray(result.data(j)["probabilities"], dtype=np.float64) for j in range(rows)]
        )
        if plan.noise_model is not None:
            probs = apply_readout(probs, _readout_matrices(plan.noise_model, plan.measured_qubits))
        circuit_metadata = pub.circuit.metadata
        if pub.shots is None:
            data = ProbabilityArray(probs.reshape((*shape, 1 << plan.num_bits)), plan.num_bits)
            return ExactSamplerPubResult(
                DataBin(**{plan.register: data}, shape=shape),
                metadata={"shots": None, "exact": True, "circuit_metadata": circuit_metadata},
            )
        bits = sample_bitarray(probs, int(pub.shots), plan.num_bits, self._rng, shape)
        return SamplerPubResult(
            DataBin(**{plan.register: bits}, shape=shape),
            metadata={"shots": int(pub.shots), "circuit_metadata": circuit_metadata},
        )


# --------------------------------------------------------------------------------------------
# Shot-based Aer sampler with fresh per-call seeds
# --------------------------------------------------------------------------------------------


def _seeded_aer_sampler_class() -> Any:
    from qiskit_aer.primitives import SamplerV2 as AerSamplerV2

    class SeededAerSampler(AerSamplerV2):  # type: ignore[misc,valid-type]
        """Aer ``SamplerV2`` drawing one simulator seed per ``run`` from a seeded generator.

        Aer's ``SamplerV2(seed=s)`` reuses seed ``s`` for every call, so repeated evaluations
        (the forward pass, then the gradient PUB) would reuse the same random stream. Here ``seed``
        seeds a generator that yields a new simulator seed per call: runs are reproducible and
        calls are independent.
        """

        def __init__(self, *, seed: int | None = None, **kwargs: Any) -> None:
            super().__init__(seed=None, **kwargs)
            self._seed_rng = np.random.default_rng(seed) if seed is not None else None

        def _run(self, pubs: list[SamplerPub]) -> Any:
            if self._seed_rng is not None:
                self._seed = int(self._seed_rng.integers(0, 2**31 - 1))
            return super()._run(pubs)

    return SeededAerSampler


def _check_shots(shots: int | None) -> int | None:
    if shots is None:
        return None
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 0:
        raise QFedInputError(f"shots must be None or an integer >= 0, got {shots!r}")
    return int(shots) or None


def aer_sampler(
    *,
    noise_model: Any | None = None,
    shots: int | None,
    seed: int | None = None,
    method: str = "automatic",
    native: bool = False,
) -> BaseSamplerV2:
    """An Aer V2 sampler, ideal or noisy, with shots or exact.

    By default this is an :class:`ExactAerSampler`: each parameter set is simulated once
    (statevector, or density matrix with noise) and ``shots`` outcomes are drawn from the exact
    distribution, which is how Aer itself samples circuits whose measurements are all at the end,
    so the counts have the same distribution. It is much faster than Aer's ``SamplerV2``, which
    returns every shot as a hex string (7 qubits, 197 parameter sets, 4096 shots: 0.12 s against
    several seconds) and, for noise on gates its density-matrix method lacks (``cu``), simulates
    one noisy trajectory per shot. ``native=True`` gives Aer's ``SamplerV2`` (with a fresh
    simulator seed per call drawn from ``seed``).

    Args:
        noise_model: An Aer ``NoiseModel``, or None for an ideal simulator.
        shots: Shots per parameter set; ``None`` or ``0`` for exact probabilities.
        seed: Seed of the shot sampling.
        method: Aer simulation method: ``"automatic"``, ``"statevector"``, ``"density_matrix"``.
            ``"statevector"`` with a noise model and shots means Aer's ``SamplerV2`` (noisy
            trajectories, one per shot).
        native: Use Aer's ``SamplerV2`` (needs ``shots``).

    Returns:
        A ``BaseSamplerV2``.

    Raises:
        QFedInputError: For bad shots or method, or ``native`` without shots.
    """
    if method not in AER_METHODS:
        raise QFedInputError(f"method must be one of {AER_METHODS}, got {method!r}")
    checked = _check_shots(shots)
    noisy = noise_model is not None and not noise_model.is_ideal()
    if noisy and method == "statevector" and checked is not None:
        native = True  # noisy statevector = Aer's per-shot trajectories
    if not native:
        return ExactAerSampler(noise_model=noise_model, method=method, shots=checked, seed=seed)
    if checked is None:
        raise QFedInputError("native=True (Aer's SamplerV2) needs shots >= 1")
    backend_options: dict[str, Any] = {"method": method}
    if noise_model is not None:
        backend_options["noise_model"] = noise_model
    sampler: BaseSamplerV2 = _seeded_aer_sampler_class()(
        default_shots=checked, seed=seed, options={"backend_options": backend_options}
    )
    return sampler


def fake_backend_names() -> list[str]:
    """Names accepted by :func:`fake_backend` (``fake_<device>``), sorted."""
    from qiskit_ibm_runtime import fake_provider

    names = {
        _fake_key(name)
        for name in dir(fake_provider)
        if name.startswith("Fake") and name not in _FAKE_SKIP
    }
    return sorted(names)


def _fake_key(class_name: str) -> str:
    return "fake_" + class_name.removeprefix("Fake").removesuffix("V2").lower()


def fake_backend(name: str) -> Any:
    """A fake IBM device from ``qiskit_ibm_runtime.fake_provider`` by name.

    Args:
        name: ``"fake_torino"``, ``"fake_brisbane"``, ``"fake_manila"`` ... (case-insensitive; the
            ``fake_`` prefix and a ``V2`` suffix are optional, ``"FakeManilaV2"`` also works).

    Returns:
        A new ``FakeBackendV2`` instance.

    Raises:
        QFedInputError: For an unknown name (the message lists a few valid ones).
    """
    from qiskit_ibm_runtime import fake_provider

    wanted = name.strip().lower().replace("-", "_")
    wanted = "fake_" + wanted.removeprefix("fake").lstrip("_")
    wanted = wanted.removesuffix("v2").rstrip("_")
    for attr in dir(fake_provider):
        if attr.startswith("Fake") and attr not in _FAKE_SKIP and _fake_key(attr) == wanted:
            return getattr(fake_provider, attr)()
    examples = ", ".join(["fake_manila", "fake_lagos", "fake_brisbane", "fake_torino"])
    raise QFedInputError(
        f"unknown fake backend {name!r} (valid names look like: {examples}; "
        f"{len(fake_backend_names())} available)"
    )


def noise_model_from_backend(backend: Any) -> Any:
    """Aer ``NoiseModel.from_backend(backend)``: gate errors, thermal relaxation and readout."""
    from qiskit_aer.noise import NoiseModel

    return NoiseModel.from_backend(backend)


def fake_device_sampler(
    backend: Any,
    *,
    shots: int | None,
    seed: int | None = None,
    method: str = "automatic",
    native: bool = False,
) -> Any:
    """An Aer sampler that simulates ``backend`` (noise model, coupling map, basis gates).

    Circuits must be ISA circuits for ``backend`` (see
    :class:`~qfed_qiskit.quantum.transpile.IsaTranspiler`). By default the noisy state of the
    qubits a circuit uses is simulated exactly (density matrix, the device noise model restricted
    to those qubits, readout errors applied) and shots are drawn from it (:class:`ExactAerSampler`);
    ``native=True`` (or ``method="statevector"``: noisy trajectories) uses Aer's
    ``SamplerV2.from_backend`` instead, which reloads the whole device noise model on every call
    (about 2 s for FakeTorino).

    Args:
        backend: A backend (e.g. from :func:`fake_backend`).
        shots: Shots per parameter set; ``None`` or ``0`` for exact noisy probabilities.
        seed: Seed of the shot sampling.
        method: ``"automatic"`` or ``"density_matrix"`` (exact state, shots drawn from it), or
            ``"statevector"`` (Aer's ``SamplerV2``, one noisy trajectory per shot).
        native: Use Aer's ``SamplerV2`` (needs ``shots``).

    Returns:
        A ``BaseSamplerV2``.
    """
    from qiskit_aer import AerSimulator

    if method not in AER_METHODS:
        raise QFedInputError(f"method must be one of {AER_METHODS}, got {method!r}")
    checked = _check_shots(shots)
    if not native and (method != "statevector" or checked is None):
        return ExactAerSampler(
            simulator=AerSimulator.from_backend(backend),
            method="density_matrix" if method == "statevector" else method,
            shots=checked,
            seed=seed,
        )
    if checked is None:
        raise QFedInputError("native=True (Aer's SamplerV2) needs shots >= 1")
    sampler = _seeded_aer_sampler_class().from_backend(backend, default_shots=checked, seed=seed)
    if method != "automatic":
        sampler._backend.set_options(method=method)
    return sampler


# --------------------------------------------------------------------------------------------
# Managed sampler: transpile once, record job ids, default shots
# --------------------------------------------------------------------------------------------


class ManagedSampler(BaseSamplerV2):  # type: ignore[misc]
    """Wraps a V2 sampler: ISA-transpiles each circuit once, records job ids, sets shots.

    Everything qiskit-machine-learning submits (the ``SamplerQNN`` forward PUB and the gradient
    PUBs) goes through :meth:`run`, so:

    * each distinct circuit is transpiled once per run by ``transpiler`` (cached by circuit
      identity) and the PUB's parameter values are re-ordered for the transpiled circuit. As the
      measurements are added before transpiling, their classical bits keep the logical qubit
      order, so results need no re-mapping;
    * for Aer's ``SamplerV2``, gates Aer would leave unbound (:func:`aer_unsafe_gates`) are
      decomposed first;
    * every job's id is appended to :attr:`job_ids` (and to ``record_jobs``);
    * ``shots`` is passed to every call (``None``: the wrapped sampler's default, or exact for an
      exact sampler).

    Args:
        sampler: The V2 sampler to wrap.
        shots: Shots per parameter set, or None.
        transpiler: An :class:`IsaTranspiler` (or None: circuits run as given).
        record_jobs: A list to append job ids to, or a callable called with each id.
    """

    def __init__(
        self,
        sampler: BaseSamplerV2,
        *,
        shots: int | None = None,
        transpiler: IsaTranspiler | None = None,
        record_jobs: JobRecorder | None = None,
    ) -> None:
        self._sampler = sampler
        self._shots = _check_shots(shots)
        self._transpiler = transpiler
        self._record = record_jobs
        self._aer = any(c.__module__.startswith("qiskit_aer") for c in type(sampler).__mro__)
        self._safe: dict[int, tuple[QuantumCircuit, QuantumCircuit]] = {}
        self.job_ids: list[str] = []

    @property
    def sampler(self) -> BaseSamplerV2:
        """The wrapped sampler."""
        return self._sampler

    @property
    def shots(self) -> int | None:
        """Shots per parameter set passed to each call (None: the sampler's default)."""
        return self._shots

    @property
    def is_exact(self) -> bool:
        """Whether the wrapped sampler returns exact probabilities."""
        return bool(getattr(self._sampler, "is_exact", False))

    @property
    def options(self) -> Any:
        """The wrapped sampler's options."""
        return getattr(self._sampler, "options", None)

    @property
    def transpiler(self) -> IsaTranspiler | None:
        """The ISA transpiler, if any."""
        return self._transpiler

    def _prepare(self, pub: SamplerPub) -> tuple[Any, ...]:
        circuit = pub.circuit
        target = circuit if self._transpiler is None else self._transpiler(circuit)
        if self._aer:
            cached = self._safe.get(id(target))
            if cached is None or cached[0] is not target:
                cached = (target, aer_safe_circuit(target))
                self._safe[id(target)] = cached
            target = cached[1]
        params = list(circuit.parameters)
        if not params:
            return (target, None, pub.shots)
        values = pub.parameter_values.as_array(params)
        if target is not circuit:
            index = {p: i for i, p in enumerate(params)}
            missing = [p.name for p in target.parameters if p not in index]
            if missing:
                raise BackendError(f"transpiled circuit has unknown parameters {missing[:3]}")
            columns = [index[p] for p in target.parameters]
            values = values[..., columns]
        return (target, values, pub.shots)

    def run(self, pubs: Iterable[Any], *, shots: int | None = None) -> Any:
        """Run PUBs on the wrapped sampler (transpiled once, job id recorded).

        Args:
            pubs: Sampler PUBs (circuit, optional parameter values, optional shots).
            shots: Overrides :attr:`shots` for this call.

        Returns:
            The wrapped sampler's job.
        """
        prepared = [self._prepare(SamplerPub.coerce(pub)) for pub in pubs]
        chosen = shots if shots is not None else self._shots
        try:
            if chosen is None:
                job = self._sampler.run(prepared)
            else:
                job = self._sampler.run(prepared, shots=chosen)
        except QFedInputError:
            raise
        except Exception as exc:
            raise BackendError(f"sampler run failed: {type(exc).__name__}: {exc}") from exc
        job_id = str(job.job_id())
        self.job_ids.append(job_id)
        if isinstance(self._record, list):
            self._record.append(job_id)
        elif self._record is not None:
            self._record(job_id)
        logger.debug("submitted sampler job %s (%d PUBs)", job_id, len(prepared))
        return job


def sampler_description(sampler: Any) -> str:
    """Short name of a sampler (class name, wrapped class for :class:`ManagedSampler`)."""
    if isinstance(sampler, ManagedSampler):
        return sampler_description(sampler.sampler)
    return type(sampler).__name__


def expected_shot_error(probs: NDArray[np.float64], shots: int) -> NDArray[np.float64]:
    """Standard deviation of empirical frequencies ``sqrt(p (1 - p) / shots)``."""
    out: NDArray[np.float64] = np.sqrt(np.clip(probs * (1.0 - probs), 0.0, None) / shots)
    return out


def binomial_bound(probs: NDArray[np.float64], shots: int, *, sigmas: float = 5.0) -> float:
    """A bound on ``max |Δp|`` for frequencies from ``shots`` samples: ``sigmas·σ + 1e-3``."""
    return float(np.max(sigmas * expected_shot_error(probs, shots)) + 1e-3) if shots else 0.0


__all__ = [
    "AER_METHODS",
    "ExactAerSampler",
    "ExactSamplerPubResult",
    "JobRecorder",
    "ManagedSampler",
    "ProbabilityArray",
    "SampledBitArray",
    "aer_safe_circuit",
    "aer_sampler",
    "aer_unsafe_gates",
    "apply_readout",
    "binomial_bound",
    "bitarray_probabilities",
    "fake_backend",
    "fake_backend_names",
    "fake_device_sampler",
    "noise_model_from_backend",
    "noise_preserving_decomposition",
    "pub_probabilities",
    "restrict_noise_model",
    "sample_bitarray",
    "sampler_description",
]
