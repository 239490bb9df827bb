"""Differentiable density-matrix engine with depolarizing gate noise and readout bit flips."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from qiskit.circuit import QuantumCircuit
from qiskit.circuit.library import get_standard_gate_name_mapping

from qfed_qiskit.engines.base import QNNEngine
from qfed_qiskit.engines.program import SUPPORTED_GATES, compile_circuit
from qfed_qiskit.exceptions import QFedInputError

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def _probability(name: str, value: object) -> float:
    """Check that ``value`` is a real number in ``[0, 1]`` and return it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise QFedInputError(f"DepolarizingNoise.{name} must be a number in [0, 1], got {value!r}")
    result = float(value)
    if not 0.0 <= result <= 1.0:
        raise QFedInputError(f"DepolarizingNoise.{name} must be in [0, 1], got {value!r}")
    return result


@dataclass(frozen=True)
class DepolarizingNoise:
    """Gate-level depolarizing noise and symmetric readout bit flips, with Aer's semantics.

    Every channel follows Qiskit Aer's ``depolarizing_error(p, n)``:
    ``E(ρ) = (1 - p) ρ + p Tr[ρ] I / 2**n`` on the ``n`` qubits of the gate, applied *after* the
    gate. ``readout`` is the probability that a measured bit is flipped, independently per qubit
    (Aer's ``ReadoutError([[1 - r, r], [r, 1 - r]])``).

    Attributes:
        p1: Depolarizing probability after every single-qubit gate.
        p2: Two-qubit depolarizing probability after every two-qubit (controlled) gate, acting on
            both of its qubits.
        readout: Bit-flip probability of each qubit's measurement.

    Raises:
        QFedInputError: If a probability is not a number in ``[0, 1]``.
    """

    p1: float = 0.0
    p2: float = 0.0
    readout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("p1", "p2", "readout"):
            object.__setattr__(self, name, _probability(name, getattr(self, name)))

    @property
    def is_noiseless(self) -> bool:
        """Whether every probability is zero."""
        return self.p1 == 0.0 and self.p2 == 0.0 and self.readout == 0.0

    def to_aer_noise_model(self, basis_gates: Sequence[str] | None = None) -> Any:
        """The equivalent :class:`qiskit_aer.noise.NoiseModel`.

        Aer attaches gate errors by instruction name (or by the label of a ``unitary``), so the
        circuit must run with exactly the gates it was compiled from: transpiling it to another
        basis changes the number of noisy gates. See :func:`aer_compatible_circuit` for gates
        Aer's density-matrix method lacks.

        Args:
            basis_gates: Gate names that get errors: single-qubit ones get ``p1``, two-qubit ones
                ``p2``. Defaults to every gate the engines support.

        Returns:
            The noise model (zero probabilities add no error).

        Raises:
            QFedInputError: For a name that is not a standard one- or two-qubit gate.
        """
        from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error

        mapping = get_standard_gate_name_mapping()
        one: list[str] = []
        two: list[str] = []
        for name in SUPPORTED_GATES if basis_gates is None else basis_gates:
            gate = mapping.get(name)
            size = getattr(gate, "num_qubits", 0)
            if size not in (1, 2):
                raise QFedInputError(
                    f"cannot attach depolarizing noise to gate {name!r}: not a standard one- or "
                    "two-qubit gate"
                )
            (one if size == 1 else two).append(name)
        model = NoiseModel()
        if self.p1 > 0.0 and one:
            model.add_all_qubit_quantum_error(depolarizing_error(self.p1, 1), one)
        if self.p2 > 0.0 and two:
            model.add_all_qubit_quantum_error(depolarizing_error(self.p2, 2), two)
        if self.readout > 0.0:
            r = self.readout
            model.add_all_qubit_readout_error(ReadoutError([[1.0 - r, r], [r, 1.0 - r]]))
        return model


def aer_compatible_circuit(
    circuit: QuantumCircuit, *, supported: Collection[str] | None = None
) -> QuantumCircuit:
    """Swap gates Aer's density-matrix method lacks for ``unitary`` gates labelled with their name.

    Aer's ``density_matrix`` method has no ``cu``, ``cu3``, ``crx``, ``cry``, ``crz``, ``csx`` or
    ``ch``. Transpiling them away would change which (and how many) gates carry noise; a
    ``UnitaryGate`` labelled ``"cu"`` instead still receives the errors a noise model registers
    for ``"cu"``, so the noisy simulation matches :class:`DensityMatrixEngine` gate for gate.

    Args:
        circuit: A circuit with all parameters bound.
        supported: Instruction names to keep; defaults to those of
            ``AerSimulator(method="density_matrix")``.

    Returns:
        A new circuit with the same registers and the replaced gates.

    Raises:
        QFedInputError: If a gate to replace still has unbound parameters.
    """
    from qiskit.circuit.library import UnitaryGate
    from qiskit.quantum_info import Operator

    if supported is None:
        from qiskit_aer import AerSimulator

        supported = set(AerSimulator(method="density_matrix").configuration().basis_gates)
    out = circuit.copy_empty_like()
    for instruction in circuit.data:
        op = instruction.operation
        if op.name in supported or op.name in ("barrier", "measure"):
            out.append(instruction)
            continue
        if getattr(op, "is_parameterized", lambda: False)():
            raise QFedInputError(f"gate {op.name!r} has unbound parameters; bind them first")
        out.append(UnitaryGate(Operator(op), label=op.name), instruction.qubits)
    return out


def _depolarizing_superop(p: float, qubits: int, dtype: torch.dtype) -> torch.Tensor:
    """Superoperator (row-major vectorisation) of ``ρ -> (1-p) ρ + p Tr[ρ] I / 2**qubits``."""
    dim = 1 << qubits
    vec_eye = torch.eye(dim, dtype=dtype).reshape(dim * dim)
    return (1.0 - p) * torch.eye(dim * dim, dtype=dtype) + (p / dim) * torch.outer(vec_eye, vec_eye)


class DensityMatrixEngine(QNNEngine):
    """Noisy, differentiable density-matrix simulation with torch autograd.

    The circuit is compiled into (controlled) single-qubit gates. For each gate the engine builds,
    from the angles (vectorised over all gates), the superoperator ``U ⊗ conj(U)`` followed by its
    depolarizing channel, and applies it to the axes of the gate's qubits of ``ρ`` seen as a
    ``(2,) * 2n`` tensor: one permuting copy and one small matrix product per gate. Readout bit
    flips are applied to the diagonal. Gradients come from torch autograd (memory about one
    density matrix per gate: 8 MiB per gate at 10 qubits in float32).

    Probabilities are in Qiskit's little-endian order and match Aer's ``density_matrix`` method
    with :meth:`DepolarizingNoise.to_aer_noise_model`; without noise they equal the statevector
    probabilities.

    Args:
        circuit: Parameterised circuit; parameters are taken in ``circuit.parameters`` order.
        noise: Noise settings; ``None`` means noiseless.
        dtype: ``torch.float32`` (default; complex64 ``ρ``) or ``torch.float64``.

    Example:
        >>> from qfed_qiskit.circuits import qt_ansatz
        >>> engine = DensityMatrixEngine(circuit=qt_ansatz(3, 1), noise=DepolarizingNoise(p1=0.01))
        >>> engine(torch.zeros(engine.num_parameters)).shape
        torch.Size([8])
    """

    def __init__(
        self,
        *,
        circuit: QuantumCircuit,
        noise: DepolarizingNoise | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if dtype not in _COMPLEX:
            raise QFedInputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if noise is not None and not isinstance(noise, DepolarizingNoise):
            raise QFedInputError(f"noise must be a DepolarizingNoise or None, got {noise!r}")
        self.circuit = circuit
        self.program = compile_circuit(circuit)
        self.noise = noise if noise is not None else DepolarizingNoise()
        self.num_qubits = circuit.num_qubits
        self.num_parameters = circuit.num_parameters
        self.dtype = dtype
        n = self.num_qubits
        prog = self.program
        controlled = prog.controls >= 0
        self._one = torch.from_numpy(np.flatnonzero(~controlled))
        self._two = torch.from_numpy(np.flatnonzero(controlled))
        # Gate g uses superoperator self._slot[g] of its kind; axes: row axes then column axes.
        self._slot: list[tuple[bool, int]] = []
        self._axes: list[tuple[int, ...]] = []
        counts = [0, 0]
        for g in range(prog.num_gates):
            t, c = int(prog.targets[g]), int(prog.controls[g])
            qubits = (t,) if c < 0 else (c, t)
            self._slot.append((c >= 0, counts[c >= 0]))
            counts[c >= 0] += 1
            self._axes.append(
                tuple(n - 1 - q for q in qubits) + tuple(2 * n - 1 - q for q in qubits)
            )
        self._index = torch.from_numpy(np.maximum(prog.param_index, 0))
        self._mask = torch.from_numpy(prog.param_index >= 0)
        self._coeff = torch.from_numpy(prog.coeff)
        self._offset = torch.from_numpy(prog.offset)

    def _gate_matrices(self, theta: torch.Tensor) -> torch.Tensor:
        """The ``(G, 2, 2)`` complex matrices ``e^{iγ} U3(θ, φ, λ)`` of all gates."""
        device = theta.device
        values = theta[self._index.to(device)] * self._mask.to(device)
        angles = self._offset.to(device, theta.dtype) + self._coeff.to(device, theta.dtype) * values
        half, phi, lam, gamma = angles.unbind(1)
        cos, sin = torch.cos(0.5 * half), torch.sin(0.5 * half)
        magnitude = torch.stack((cos, -sin, sin, cos), 1)
        phase = torch.stack((gamma, gamma + lam, gamma + phi, gamma + phi + lam), 1)
        matrices = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        return matrices.reshape(-1, 2, 2)

    def _superoperators(
        self, theta: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Per-gate channel superoperators: ``4×4`` for single-qubit, ``16×16`` for controlled."""
        u = self._gate_matrices(theta)
        cdtype = u.dtype
        device = theta.device
        u1 = u[self._one.to(device)]
        u2 = u[self._two.to(device)]
        g1, g2 = u1.shape[0], u2.shape[0]
        s1 = torch.einsum("gij,gkl->gikjl", u1, u1.conj()).reshape(g1, 4, 4)
        if self.noise.p1 > 0.0 and g1:
            s1 = _depolarizing_superop(self.noise.p1, 1, cdtype).to(device) @ s1
        eye = torch.eye(2, dtype=cdtype, device=device).expand(g2, 2, 2)
        zero = torch.zeros((g2, 2, 2), dtype=cdtype, device=device)
        cu = torch.cat((torch.cat((eye, zero), 2), torch.cat((zero, u2), 2)), 1)
        s2 = torch.einsum("gij,gkl->gikjl", cu, cu.conj()).reshape(g2, 16, 16)
        if self.noise.p2 > 0.0 and g2:
            s2 = _depolarizing_superop(self.noise.p2, 2, cdtype).to(device) @ s2
        return s1.unbind(0), s2.unbind(0)

    def _evolve(self, theta: torch.Tensor) -> torch.Tensor:
        """Final density matrix, shape ``(2**n, 2**n)``, before readout errors."""
        n = self.num_qubits
        dim = 1 << n
        rho = torch.zeros(dim * dim, dtype=_COMPLEX[theta.dtype], device=theta.device)
        rho[0] = 1.0
        rho = rho.reshape((2,) * (2 * n))
        ones, twos = self._superoperators(theta)
        for (controlled, slot), axes in zip(self._slot, self._axes, strict=True):
            superop = twos[slot] if controlled else ones[slot]
            front = tuple(range(len(axes)))
            moved = rho.movedim(axes, front)
            shape = moved.shape
            moved = (superop @ moved.reshape(superop.shape[0], -1)).reshape(shape)
            rho = moved.movedim(front, axes)
        return rho.reshape(dim, dim)

    def _forward(self, theta: torch.Tensor) -> torch.Tensor:
        theta = theta.to(self.dtype)
        n = self.num_qubits
        probs = torch.diagonal(self._evolve(theta)).real
        r = self.noise.readout
        if r > 0.0:
            probs = probs.reshape((2,) * n)
            for axis in range(n):
                probs = (1.0 - r) * probs + r * probs.flip(axis)
            probs = probs.reshape(1 << n)
        return probs.contiguous()

    def density_matrix(self, theta: torch.Tensor | NDArray[np.float64]) -> NDArray[np.complex128]:
        """Final density matrix at ``theta`` in float64 (no gradient, no readout errors).

        Args:
            theta: Angles, one per circuit parameter.

        Returns:
            ``(2**n, 2**n)`` complex array; basis index ``k`` has qubit ``q`` in bit ``q``.
        """
        values = torch.as_tensor(
            theta.detach().cpu().numpy() if isinstance(theta, torch.Tensor) else theta,
            dtype=torch.float64,
        )
        if values.ndim != 1 or values.shape[0] != self.num_parameters:
            raise QFedInputError(
                f"theta must have shape ({self.num_parameters},), got {tuple(values.shape)}"
            )
        with torch.no_grad():
            rho: NDArray[np.complex128] = self._evolve(values).numpy()
        return rho

    def describe(self) -> dict[str, object]:
        return {
            "engine": "density_matrix",
            "qubits": self.num_qubits,
            "dtype": str(self.dtype).removeprefix("torch."),
            "gates": self.program.num_gates,
            "noise": {"p1": self.noise.p1, "p2": self.noise.p2, "readout": self.noise.readout},
        }


__all__ = ["DensityMatrixEngine", "DepolarizingNoise", "aer_compatible_circuit"]
