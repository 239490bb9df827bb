"""Noise-aware engines on the exact statevector kernels: Pauli trajectories and shot sampling.

:class:`PauliTrajectoryEngine` estimates the probabilities of a circuit under gate-level
depolarizing noise (Aer's ``depolarizing_error`` after every gate, as
:class:`~qfed_qiskit.engines.density_matrix.DepolarizingNoise` defines it) without a density
matrix, so it scales to the paper's 13 qubits. A depolarizing channel on ``n`` qubits with
parameter ``p`` is the Pauli mixture "nothing, or with probability ``p (1 - 4**-n)`` one of the
``4**n - 1`` non-identity Paulis, uniformly". A *trajectory* draws, for every gate, whether and
which Pauli follows it, and runs that pure circuit exactly; the mean of trajectory probabilities is
an unbiased estimate of the noisy probabilities, and because the Pauli draws do not depend on the
angles, the mean of trajectory gradients (one adjoint sweep each) is an unbiased estimate of the
noisy gradient.

The estimator is stratified: the error-free trajectory, whose probability ``P0 = prod(1 - q_g)``
is known, is computed exactly once, and ``M`` trajectories are drawn *conditioned on at least one
error* (the first error position from its exact distribution, the later gates independently):

    p_noisy ≈ P0 · p_ideal + (1 - P0) · mean_m p_m.

At weak noise (P0 near 1) this removes almost all of the variance a plain average of ``M``
trajectories would have. Readout bit flips are applied exactly to the probabilities. Draws are
seeded by ``seed`` and the angles, so the same step draws the same trajectories in a resumed run.

:class:`ShotNoiseEngine` makes any engine *shot-aware*: its forward pass returns the frequencies
of ``S`` samples from the engine's probabilities, its backward pass the gradient of the
probabilities themselves (the straight-through estimator: unbiased in the forward value, and
``∇ E[p̂] = ∇ p``, so the model trains against the shot noise it will be evaluated with, through
the nonlinear post-processing, with the exact engine's gradient).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from qiskit.circuit import QuantumCircuit

from qfed_qiskit.engines.base import QNNEngine
from qfed_qiskit.engines.density_matrix import DepolarizingNoise
from qfed_qiskit.engines.program import GateProgram, compile_circuit
from qfed_qiskit.engines.statevector import _COMPLEX, _default_threads, _ProbabilitiesFunction
from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.quantum.results import as_distribution

_PAULI_ANGLES = {
    "x": (math.pi, 0.0, math.pi, 0.0),
    "y": (math.pi, math.pi / 2, math.pi / 2, 0.0),
    "z": (0.0, 0.0, math.pi, 0.0),
}
_ONE_QUBIT = ("x", "y", "z")
_TWO_QUBIT = tuple(
    (a, b) for a in ("i", *_ONE_QUBIT) for b in ("i", *_ONE_QUBIT) if (a, b) != ("i", "i")
)
"""The 15 non-identity two-qubit Paulis as (control factor, target factor)."""


def content_seed(seed: int, values: NDArray[np.float64]) -> list[int]:
    """Seed words from ``seed`` and the bytes of ``values`` (same input, same draws)."""
    digest = hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).digest()
    return [int(seed), *(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))]


def error_probabilities(program: GateProgram, noise: DepolarizingNoise) -> NDArray[np.float64]:
    """For each gate, the probability that a non-identity Pauli follows it."""
    controlled = program.controls >= 0
    return np.where(controlled, noise.p2 * (1 - 1 / 16), noise.p1 * (1 - 1 / 4)).astype(np.float64)


def with_paulis(
    program: GateProgram, errors: list[tuple[int, list[tuple[int, str]]]]
) -> GateProgram:
    """``program`` with constant Pauli gates inserted after the given gates.

    Args:
        program: The compiled circuit.
        errors: ``(gate index, [(qubit, "x"|"y"|"z"), ...])`` in increasing gate order.
    """
    at: list[int] = []
    targets: list[int] = []
    offsets: list[tuple[float, ...]] = []
    for gate, paulis in errors:
        for qubit, pauli in paulis:
            at.append(gate + 1)
            targets.append(qubit)
            offsets.append(_PAULI_ANGLES[pauli])
    if not at:
        return program
    k = len(at)
    return GateProgram(
        num_qubits=program.num_qubits,
        num_parameters=program.num_parameters,
        targets=np.insert(program.targets, at, np.asarray(targets, dtype=np.int64)),
        controls=np.insert(program.controls, at, np.full(k, -1, dtype=np.int64)),
        param_index=np.insert(program.param_index, at, np.full((k, 4), -1, np.int64), axis=0),
        coeff=np.insert(program.coeff, at, np.zeros((k, 4)), axis=0),
        offset=np.insert(program.offset, at, np.asarray(offsets, dtype=np.float64), axis=0),
    )


def sample_errors(
    program: GateProgram, q: NDArray[np.float64], rng: np.random.Generator
) -> list[tuple[int, list[tuple[int, str]]]]:
    """One trajectory's Pauli errors, conditioned on at least one error (``q.sum() > 0``)."""
    survive = np.concatenate([[1.0], np.cumprod(1.0 - q)[:-1]])
    first_weights = q * survive
    first = int(rng.choice(q.size, p=first_weights / first_weights.sum()))
    later = np.flatnonzero(rng.random(q.size) < q)
    gates = [first, *(int(g) for g in later if g > first)]
    errors: list[tuple[int, list[tuple[int, str]]]] = []
    for g in gates:
        target, control = int(program.targets[g]), int(program.controls[g])
        if control < 0:
            errors.append((g, [(target, _ONE_QUBIT[int(rng.integers(3))])]))
        else:
            on_control, on_target = _TWO_QUBIT[int(rng.integers(15))]
            paulis = [(control, on_control), (target, on_target)]
            errors.append((g, [(qubit, p) for qubit, p in paulis if p != "i"]))
    return errors


def apply_readout_flips(probs: torch.Tensor, readout: float, num_qubits: int) -> torch.Tensor:
    """Probabilities after each measured bit flips independently with probability ``readout``."""
    if readout == 0.0:
        return probs
    flip = torch.tensor(
        [[1.0 - readout, readout], [readout, 1.0 - readout]], dtype=probs.dtype, device=probs.device
    )
    tensor = probs.reshape((2,) * num_qubits)
    for axis in range(num_qubits):  # symmetric matrix: the axis order does not matter
        tensor = torch.movedim(torch.tensordot(tensor, flip, dims=([axis], [0])), -1, axis)
    return tensor.reshape(-1)


class PauliTrajectoryEngine(QNNEngine):
    """Probabilities under depolarizing gate noise, estimated by stratified Pauli trajectories.

    Args:
        circuit: Parameterised circuit of the statevector engine's gates.
        noise: Depolarizing probabilities ``p1``, ``p2`` and readout flips.
        trajectories: ``M``, error trajectories per call (besides the exact error-free one).
        seed: Seed of the draws (with the angles); None: fresh entropy each call.
        dtype: ``torch.float32`` or ``torch.float64``.
        threads: Kernel threads (see :class:`~qfed_qiskit.engines.statevector.StatevectorEngine`).
    """

    def __init__(
        self,
        *,
        circuit: QuantumCircuit,
        noise: DepolarizingNoise,
        trajectories: int = 4,
        seed: int | None = 0,
        dtype: torch.dtype = torch.float32,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        if dtype not in _COMPLEX:
            raise QFedInputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if isinstance(trajectories, bool) or not isinstance(trajectories, int) or trajectories < 1:
            raise QFedInputError(f"trajectories={trajectories!r} (expected an integer >= 1)")
        self.circuit = circuit
        self.program = compile_circuit(circuit)
        self.num_qubits = circuit.num_qubits
        self.num_parameters = circuit.num_parameters
        self.noise = noise
        self.trajectories = trajectories
        self.seed = seed
        self.dtype = dtype
        self.threads = _default_threads() if threads is None else max(1, int(threads))
        self.error_probs = error_probabilities(self.program, noise)
        self.p0 = float(np.prod(1.0 - self.error_probs))
        """Probability that no gate is followed by an error (the exact part's weight)."""

    def _rng(self, theta: torch.Tensor) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        values = theta.detach().cpu().numpy().astype(np.float64)
        return np.random.default_rng(content_seed(self.seed, values))

    def _forward(self, theta: torch.Tensor) -> torch.Tensor:
        theta = theta.to(self.dtype)
        probs: torch.Tensor = _ProbabilitiesFunction.apply(theta, self.program, self.threads)
        if self.p0 < 1.0:
            rng = self._rng(theta)
            noisy = torch.zeros_like(probs)
            for _ in range(self.trajectories):
                program = with_paulis(
                    self.program, sample_errors(self.program, self.error_probs, rng)
                )
                noisy = noisy + _ProbabilitiesFunction.apply(theta, program, self.threads)
            probs = self.p0 * probs + (1.0 - self.p0) / self.trajectories * noisy
        return apply_readout_flips(probs, self.noise.readout, self.num_qubits)

    def describe(self) -> dict[str, object]:
        return {
            "engine": "pauli-trajectories",
            "qubits": self.num_qubits,
            "dtype": str(self.dtype).removeprefix("torch."),
            "trajectories": self.trajectories,
            "p_error_free": self.p0,
            "noise": {"p1": self.noise.p1, "p2": self.noise.p2, "readout": self.noise.readout},
        }


class ShotNoiseEngine(QNNEngine):
    """Any engine, shot-aware: ``S``-shot frequencies forward, the exact gradient backward.

    Args:
        engine: The engine whose probabilities are sampled.
        shots: ``S``, shots per call (>= 1).
        seed: Seed of the draws (with the angles); None: fresh entropy each call.
    """

    def __init__(self, *, engine: QNNEngine, shots: int, seed: int | None = 0) -> None:
        super().__init__()
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
            raise QFedInputError(f"shots={shots!r} (expected an integer >= 1)")
        self.inner = engine
        self.shots = shots
        self.seed = seed
        self.num_qubits = engine.num_qubits
        self.num_parameters = engine.num_parameters

    def _forward(self, theta: torch.Tensor) -> torch.Tensor:
        probs: torch.Tensor = self.inner(theta)
        p = as_distribution(probs.detach().cpu().numpy())
        if self.seed is None:
            rng = np.random.default_rng()
        else:
            rng = np.random.default_rng(
                content_seed(self.seed + 1, theta.detach().cpu().numpy().astype(np.float64))
            )
        freq = torch.from_numpy(rng.multinomial(self.shots, p) / self.shots).to(probs)
        return probs + (freq - probs).detach()

    def describe(self) -> dict[str, Any]:
        inner = dict(self.inner.describe())
        return {**inner, "shots": self.shots, "shot_estimator": "straight-through"}
