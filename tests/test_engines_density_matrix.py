"""The density-matrix engine against Qiskit's Statevector and Aer's noisy density matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from qiskit.circuit import ParameterVector, QuantumCircuit
from qiskit.quantum_info import Statevector

from qfed_qiskit.circuits import qt_ansatz
from qfed_qiskit.engines.density_matrix import (
    DensityMatrixEngine,
    DepolarizingNoise,
    aer_compatible_circuit,
)
from qfed_qiskit.engines.statevector import StatevectorEngine
from qfed_qiskit.exceptions import QFedInputError

NOISE = DepolarizingNoise(p1=1e-2, p2=5e-2, readout=2e-2)


def _mixed_gate_circuit() -> QuantumCircuit:
    """Most supported gate families once (including ones Aer's density matrix lacks)."""
    p = ParameterVector("p", 8)
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.sx(1)
    qc.rz(p[0], 2)
    qc.rx(2 * p[1] + 0.3, 0)
    qc.ry(p[2], 1)
    qc.t(2)
    qc.id(0)
    qc.u(p[3], p[4], -p[5], 1)
    qc.cx(0, 2)
    qc.cz(2, 1)
    qc.cp(p[6], 1, 0)
    qc.crx(p[7], 2, 0)
    qc.cry(p[0], 0, 1)
    qc.crz(p[1], 1, 2)
    qc.ch(2, 1)
    qc.csx(0, 2)
    qc.cu(p[2], 0.2, -0.4, 0.7, 1, 0)
    qc.barrier()
    return qc


def _aer_run(circuit: QuantumCircuit, noise: DepolarizingNoise) -> tuple[np.ndarray, np.ndarray]:
    """Aer's final density matrix and (readout-free) probabilities of a bound circuit."""
    from qiskit_aer import AerSimulator

    model = noise.to_aer_noise_model()
    aer_circuit = aer_compatible_circuit(circuit)
    # Aer attaches gate errors by instruction name (by label for `unitary`): every gate it executes
    # must be one the noise model knows, or the simulation would silently be less noisy.
    executed = {
        inst.operation.label if inst.operation.name == "unitary" else inst.operation.name
        for inst in aer_circuit.data
        if inst.operation.name != "barrier"
    }
    assert executed <= set(model.noise_instructions), executed - set(model.noise_instructions)
    aer_circuit.save_density_matrix()
    aer_circuit.save_probabilities(label="probs")
    sim = AerSimulator(method="density_matrix", noise_model=model)
    data = sim.run(aer_circuit).result().data()
    return np.asarray(data["density_matrix"]), np.asarray(data["probs"])


def _readout_matrix(noise: DepolarizingNoise, num_qubits: int) -> np.ndarray:
    """The ``2**n`` confusion matrix ``C[measured, true]`` from the Aer model's readout error."""
    model = noise.to_aer_noise_model()
    (entry,) = [e for e in model.to_dict()["errors"] if e["type"] == "roerror"]
    single = np.asarray(entry["probabilities"], dtype=np.float64)  # [true][measured]
    full: np.ndarray = np.ones((1, 1))
    for _ in range(num_qubits):
        full = np.kron(single.T, full)
    return full


@pytest.mark.parametrize("noise", [None, DepolarizingNoise()])
@pytest.mark.parametrize("num_qubits", [2, 3, 4])
def test_noiseless_matches_statevector(
    num_qubits: int, noise: DepolarizingNoise | None, rng: np.random.Generator
) -> None:
    """Without noise the probabilities equal Statevector.probabilities() to 1e-10."""
    qc = qt_ansatz(num_qubits, 2)
    theta = rng.uniform(-np.pi, np.pi, qc.num_parameters)
    engine = DensityMatrixEngine(circuit=qc, noise=noise, dtype=torch.float64)
    probs = engine(torch.tensor(theta)).numpy()
    expected = Statevector(qc.assign_parameters(theta)).probabilities()
    np.testing.assert_allclose(probs, expected, atol=1e-10)
    assert probs.dtype == np.float64


def test_noiseless_density_matrix_is_pure(rng: np.random.Generator) -> None:
    """Every gate kind, global phases of controlled gates included: ρ = |ψ⟩⟨ψ| exactly."""
    qc = _mixed_gate_circuit()
    theta = rng.uniform(-np.pi, np.pi, qc.num_parameters)
    state = Statevector(qc.assign_parameters(theta)).data
    rho = DensityMatrixEngine(circuit=qc, dtype=torch.float64).density_matrix(theta)
    np.testing.assert_allclose(rho, np.outer(state, state.conj()), atol=1e-10)


def test_noiseless_gradients_match_statevector_engine(rng: np.random.Generator) -> None:
    """Autograd through ρ gives the statevector engine's adjoint gradients."""
    qc = qt_ansatz(3, 2)
    theta = torch.tensor(rng.uniform(-np.pi, np.pi, qc.num_parameters), requires_grad=True)
    weights = torch.tensor(rng.normal(size=8))
    grads: list[torch.Tensor] = []
    for engine in (
        DensityMatrixEngine(circuit=qc, dtype=torch.float64),
        StatevectorEngine(circuit=qc, dtype=torch.float64),
    ):
        theta.grad = None
        (engine(theta) * weights).sum().backward()
        assert theta.grad is not None
        grads.append(theta.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-10, rtol=0)


@pytest.mark.aer
@pytest.mark.parametrize("circuit", ["qt3", "qt4", "mixed"])
def test_noisy_matches_aer(circuit: str, rng: np.random.Generator) -> None:
    """Depolarizing gate noise: ρ and its diagonal equal Aer's density-matrix method to 1e-8."""
    qc = {"qt3": qt_ansatz(3, 2), "qt4": qt_ansatz(4, 2), "mixed": _mixed_gate_circuit()}[circuit]
    theta = rng.uniform(-np.pi, np.pi, qc.num_parameters)
    gate_noise = DepolarizingNoise(p1=NOISE.p1, p2=NOISE.p2)
    engine = DensityMatrixEngine(circuit=qc, noise=gate_noise, dtype=torch.float64)
    rho_aer, probs_aer = _aer_run(qc.assign_parameters(theta), gate_noise)
    np.testing.assert_allclose(engine.density_matrix(theta), rho_aer, atol=1e-8)
    np.testing.assert_allclose(engine(torch.tensor(theta)).numpy(), probs_aer, atol=1e-8)
    # The noise is really there: the state is mixed.
    assert np.trace(rho_aer @ rho_aer).real < 0.99


@pytest.mark.aer
def test_readout_matches_aer_confusion_matrix(rng: np.random.Generator) -> None:
    """Readout flips equal Aer's ReadoutError (as a confusion matrix) on Aer's probabilities."""
    qc = qt_ansatz(3, 2)
    theta = rng.uniform(-np.pi, np.pi, qc.num_parameters)
    engine = DensityMatrixEngine(circuit=qc, noise=NOISE, dtype=torch.float64)
    _, probs_aer = _aer_run(qc.assign_parameters(theta), NOISE)
    expected = _readout_matrix(NOISE, qc.num_qubits) @ probs_aer
    probs = engine(torch.tensor(theta)).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-8)
    assert math.isclose(float(probs.sum()), 1.0, abs_tol=1e-12)


@pytest.mark.aer
def test_noisy_measurement_counts_match_aer(rng: np.random.Generator) -> None:
    """End to end: Aer's sampled counts (gate noise and readout) agree with the engine."""
    from qiskit_aer import AerSimulator

    qc = qt_ansatz(3, 2)
    theta = rng.uniform(-np.pi, np.pi, qc.num_parameters)
    bound = aer_compatible_circuit(qc.assign_parameters(theta))
    bound.measure_all()
    shots = 200_000
    sim = AerSimulator(method="density_matrix", noise_model=NOISE.to_aer_noise_model())
    counts = sim.run(bound, shots=shots, seed_simulator=7).result().get_counts()
    freq = np.zeros(8)
    for key, count in counts.items():
        freq[int(key, 2)] = count / shots
    probs = DensityMatrixEngine(circuit=qc, noise=NOISE, dtype=torch.float64)(torch.tensor(theta))
    sigma = np.sqrt(probs.numpy() * (1 - probs.numpy()) / shots)
    assert np.all(np.abs(freq - probs.numpy()) <= 5 * sigma + 1e-9)


def test_readout_is_per_qubit_bit_flip() -> None:
    """With only readout noise, |000⟩ reads k with probability r^|k| (1-r)^(n-|k|)."""
    qc = qt_ansatz(3, 1)
    r = 0.1
    engine = DensityMatrixEngine(
        circuit=qc, noise=DepolarizingNoise(readout=r), dtype=torch.float64
    )
    probs = engine(torch.zeros(qc.num_parameters, dtype=torch.float64)).numpy()
    flips = np.array([bin(k).count("1") for k in range(8)])
    np.testing.assert_allclose(probs, r**flips * (1 - r) ** (3 - flips), atol=1e-12)


def test_gradcheck_noisy() -> None:
    """Reverse-mode gradients of a noisy 3-qubit circuit pass torch.autograd.gradcheck."""
    qc = qt_ansatz(3, 1)
    engine = DensityMatrixEngine(circuit=qc, noise=NOISE, dtype=torch.float64)
    theta = torch.empty(qc.num_parameters, dtype=torch.float64).uniform_(-math.pi, math.pi)
    theta.requires_grad_(True)
    assert torch.autograd.gradcheck(engine, (theta,), eps=1e-6, atol=1e-7)


def test_float32_output() -> None:
    """The float32 engine returns float32 probabilities close to float64 ones, summing to 1."""
    qc = qt_ansatz(4, 2)
    theta = torch.empty(qc.num_parameters, dtype=torch.float64).uniform_(-math.pi, math.pi)
    p32 = DensityMatrixEngine(circuit=qc, noise=NOISE)(theta.float())
    p64 = DensityMatrixEngine(circuit=qc, noise=NOISE, dtype=torch.float64)(theta)
    assert p32.dtype == torch.float32
    torch.testing.assert_close(p32.double(), p64, atol=1e-5, rtol=0)
    assert math.isclose(float(p32.sum()), 1.0, abs_tol=1e-5)


@pytest.mark.parametrize("field", ["p1", "p2", "readout"])
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), float("inf"), "0.1", None, True])
def test_bad_probabilities_raise(field: str, value: object) -> None:
    """Probabilities outside [0, 1] or of the wrong type raise a one-line QFedInputError."""
    with pytest.raises(QFedInputError, match=field) as info:
        DepolarizingNoise(**{field: value})  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", [0, 1, 0.25, np.float32(0.5)])
def test_valid_probabilities(value: object) -> None:
    """Bounds are inclusive and values are stored as floats."""
    noise = DepolarizingNoise(p1=value, p2=value, readout=value)  # type: ignore[arg-type]
    assert type(noise.p1) is float and noise.p1 == float(value)  # type: ignore[arg-type]


def test_engine_input_validation() -> None:
    """Bad dtype, noise objects, positional arguments and theta shapes are rejected."""
    qc = qt_ansatz(2, 1)
    with pytest.raises(QFedInputError):
        DensityMatrixEngine(circuit=qc, dtype=torch.int64)
    with pytest.raises(QFedInputError):
        DensityMatrixEngine(circuit=qc, noise=0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        DensityMatrixEngine(qc)  # type: ignore[call-arg, misc]
    engine = DensityMatrixEngine(circuit=qc, noise=NOISE)
    with pytest.raises(QFedInputError):
        engine(torch.zeros(qc.num_parameters + 1))
    assert engine.describe()["noise"] == {"p1": 0.01, "p2": 0.05, "readout": 0.02}


@pytest.mark.aer
def test_aer_noise_model_gates() -> None:
    """Errors land on the requested names by size; unknown names and zero noise add nothing."""
    model = NOISE.to_aer_noise_model(["u", "cu", "cx"])
    assert set(model.noise_instructions) == {"u", "cu", "cx", "measure"}
    # Aer's depolarizing_error(p, n) is a Pauli channel: identity with 1 - p (4^n - 1) / 4^n.
    terms = {
        op: (len(e["instructions"]), e["probabilities"][0])
        for e in model.to_dict()["errors"]
        if e["type"] == "qerror"
        for op in e["operations"]
    }
    assert terms["u"][0] == 4 and math.isclose(terms["u"][1], 1 - NOISE.p1 * 3 / 4)
    for op in ("cu", "cx"):
        assert terms[op][0] == 16 and math.isclose(terms[op][1], 1 - NOISE.p2 * 15 / 16)
    assert set(DepolarizingNoise().to_aer_noise_model().noise_instructions) == set()
    with pytest.raises(QFedInputError, match="ccx"):
        NOISE.to_aer_noise_model(["ccx"])
