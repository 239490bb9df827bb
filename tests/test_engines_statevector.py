"""The exact statevector engine against Qiskit's Statevector, and its adjoint gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit.circuit import Parameter, ParameterVector, QuantumCircuit
from qiskit.quantum_info import Statevector

from qfed_qiskit.circuits import qt_ansatz
from qfed_qiskit.engines import compile_circuit
from qfed_qiskit.engines.program import fuse_program
from qfed_qiskit.engines.statevector import (
    StatevectorEngine,
    _ProbabilitiesFunction,
    simulate_state,
)
from qfed_qiskit.exceptions import CircuitError, QFedInputError


def _reference(circuit: QuantumCircuit, theta: np.ndarray) -> np.ndarray:
    return Statevector(circuit.assign_parameters(theta)).data


def _mixed_gate_circuit() -> QuantumCircuit:
    """Every supported gate family once, with affine parameter expressions."""
    p = ParameterVector("p", 12)
    qc = QuantumCircuit(4)
    qc.h(0)
    qc.x(1)
    qc.y(2)
    qc.z(3)
    qc.s(0)
    qc.sdg(1)
    qc.t(2)
    qc.tdg(3)
    qc.sx(0)
    qc.rx(p[0], 1)
    qc.ry(2 * p[1] + 0.3, 2)
    qc.rz(p[2], 3)
    qc.p(p[3], 0)
    qc.u(p[4], p[5], -p[6], 1)
    qc.cx(0, 2)
    qc.cz(3, 1)
    qc.cy(1, 0)
    qc.ch(2, 3)
    qc.crx(p[7], 3, 0)
    qc.cry(p[8], 0, 3)
    qc.crz(p[9], 2, 1)
    qc.cp(p[10], 1, 3)
    qc.cu(p[11], 0.2, -0.4, 0.7, 3, 2)
    qc.cu(p[0], p[1], p[2], p[3], 2, 0)
    qc.barrier()
    return qc


@pytest.mark.parametrize("num_qubits", [1, 2, 3, 5, 8])
def test_statevector_matches_qiskit(num_qubits: int, rng: np.random.Generator) -> None:
    """QT ansatz amplitudes equal Qiskit's Statevector to 1e-10 (little-endian order)."""
    qc = qt_ansatz(num_qubits, 3)
    theta = rng.uniform(-np.pi, np.pi, qc.num_parameters)
    engine = StatevectorEngine(circuit=qc, dtype=torch.float64)
    np.testing.assert_allclose(engine.statevector(theta), _reference(qc, theta), atol=1e-10)


def test_all_gate_kinds_match_qiskit(rng: np.random.Generator) -> None:
    """Every supported gate, including global phases and affine angles, matches Qiskit."""
    qc = _mixed_gate_circuit()
    theta = rng.uniform(-np.pi, np.pi, qc.num_parameters)
    engine = StatevectorEngine(circuit=qc, dtype=torch.float64)
    np.testing.assert_allclose(engine.statevector(theta), _reference(qc, theta), atol=1e-10)


def test_probabilities_match_qiskit_float64(rng: np.random.Generator) -> None:
    """forward() returns Statevector.probabilities() in float64 to 1e-10."""
    qc = qt_ansatz(6, 4)
    theta = rng.uniform(-np.pi, np.pi, qc.num_parameters)
    engine = StatevectorEngine(circuit=qc, dtype=torch.float64)
    probs = engine(torch.tensor(theta)).numpy()
    expected = Statevector(qc.assign_parameters(theta)).probabilities()
    np.testing.assert_allclose(probs, expected, atol=1e-10)
    assert probs.dtype == np.float64


def test_float32_is_default_and_close(rng: np.random.Generator) -> None:
    """The default float32 engine agrees with Qiskit to float32 precision."""
    qc = qt_ansatz(7, 4)
    theta = rng.uniform(-np.pi, np.pi, qc.num_parameters)
    engine = StatevectorEngine(circuit=qc)
    probs = engine(torch.tensor(theta, dtype=torch.float32))
    assert probs.dtype == torch.float32
    expected = Statevector(qc.assign_parameters(theta)).probabilities()
    np.testing.assert_allclose(probs.numpy(), expected, atol=1e-6)


def test_threads_do_not_change_results(rng: np.random.Generator) -> None:
    """Chunked parallel kernels give bit-identical probabilities and gradients."""
    qc = qt_ansatz(13, 1)
    theta = torch.tensor(rng.uniform(-np.pi, np.pi, qc.num_parameters), requires_grad=True)
    weights = torch.tensor(rng.normal(size=2**13))
    results = []
    for threads in (1, 2, 3):
        engine = StatevectorEngine(circuit=qc, dtype=torch.float64, threads=threads)
        theta.grad = None
        probs = engine(theta)
        (probs * weights).sum().backward()
        assert theta.grad is not None
        results.append((probs.detach().clone(), theta.grad.clone()))
    for probs, grad in results[1:]:
        assert torch.equal(probs, results[0][0])
        assert torch.equal(grad, results[0][1])


@pytest.mark.parametrize(
    "circuit",
    [qt_ansatz(3, 2), qt_ansatz(1, 2), _mixed_gate_circuit()],
    ids=["qt-3q", "qt-1q", "all-gates"],
)
def test_gradcheck(circuit: QuantumCircuit, rng: np.random.Generator) -> None:
    """Adjoint gradients pass torch.autograd.gradcheck (full Jacobian of the probabilities)."""
    engine = StatevectorEngine(circuit=circuit, dtype=torch.float64)
    theta = torch.tensor(rng.uniform(-np.pi, np.pi, circuit.num_parameters), requires_grad=True)
    assert torch.autograd.gradcheck(engine, (theta,), eps=1e-6, atol=1e-7)


def test_gradient_matches_finite_differences_13_qubits(rng: np.random.Generator) -> None:
    """At paper size (13 qubits), a random loss's gradient matches central differences."""
    qc = qt_ansatz(13, 2)
    engine = StatevectorEngine(circuit=qc, dtype=torch.float64)
    theta = torch.tensor(rng.uniform(-np.pi, np.pi, qc.num_parameters), requires_grad=True)
    weights = torch.tensor(rng.normal(size=2**13))
    (engine(theta) * weights).sum().backward()
    assert theta.grad is not None
    eps = 1e-6
    for i in rng.choice(qc.num_parameters, size=6, replace=False):
        shift = torch.zeros_like(theta)
        shift[i] = eps
        with torch.no_grad():
            up = float((engine(theta + shift) * weights).sum())
            down = float((engine(theta - shift) * weights).sum())
        assert abs((up - down) / (2 * eps) - float(theta.grad[i])) < 1e-6


def _fusable_circuit() -> QuantumCircuit:
    """Runs of gates on one target across controls, constants, repeated parameters."""
    p = ParameterVector("p", 9)
    qc = QuantumCircuit(5)
    qc.u(p[0], p[1], p[2], 1)
    qc.h(3)
    qc.cu(p[3], p[4], p[5], 0.3, 0, 1)
    qc.rz(p[6], 1)
    qc.crx(2 * p[7] - 0.5, 0, 1)
    qc.cx(4, 3)
    qc.ry(p[8], 3)
    qc.t(0)
    qc.cu(p[0], p[8], -p[2], 0.0, 2, 0)
    qc.s(0)
    qc.cz(1, 0)
    qc.cry(p[1], 3, 4)
    qc.p(p[6], 4)
    return qc


_FUSED_CASES = [
    pytest.param(_fusable_circuit(), 0, id="fusable"),
    pytest.param(_fusable_circuit(), 2, id="fusable-rotated"),
    pytest.param(_mixed_gate_circuit(), 1, id="all-gates-rotated"),
    pytest.param(qt_ansatz(4, 2), 2, id="qt-4q-rotated"),
    pytest.param(qt_ansatz(1, 3), 0, id="qt-1q"),
]


def test_fusion_halves_the_qt_ansatz() -> None:
    """U3 on qubit q+1 and the CU3 onto it are one operation: 13 per block at 13 qubits."""
    fused = fuse_program(compile_circuit(qt_ansatz(13, 4)))
    assert fused.num_operations == 13 * 4 + 1
    lo = np.minimum(fused.target, np.where(fused.control < 0, 99, fused.control))
    assert np.all(lo[fused.kind == 0] >= 5)  # the layout changes keep runs long
    assert np.count_nonzero(fused.kind == 1) > 0


@pytest.mark.parametrize(("circuit", "rotation"), _FUSED_CASES)
def test_fused_program_matches_qiskit(
    circuit: QuantumCircuit, rotation: int, rng: np.random.Generator
) -> None:
    """Fused operations and layout changes give Qiskit's Statevector to 1e-10."""
    fused = fuse_program(compile_circuit(circuit), rotation=rotation)
    assert fused.num_operations < compile_circuit(circuit).num_gates
    assert (np.count_nonzero(fused.kind == 1) > 0) == (rotation > 0)
    theta = rng.uniform(-np.pi, np.pi, circuit.num_parameters)
    state = simulate_state(fused, theta)
    np.testing.assert_allclose(state, _reference(circuit, theta), atol=1e-10)
    state32 = simulate_state(fused, theta, dtype=np.complex64)
    assert state32.dtype == np.complex64
    np.testing.assert_allclose(state32, _reference(circuit, theta), atol=1e-5)


@pytest.mark.parametrize(("circuit", "rotation"), _FUSED_CASES)
def test_fused_program_gradcheck(
    circuit: QuantumCircuit, rotation: int, rng: np.random.Generator
) -> None:
    """Per-angle adjoint gradients through fused factors and layout changes pass gradcheck."""
    fused = fuse_program(compile_circuit(circuit), rotation=rotation)
    theta = torch.tensor(rng.uniform(-np.pi, np.pi, circuit.num_parameters), requires_grad=True)

    def probs(t: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = _ProbabilitiesFunction.apply(t, fused, 1)
        return out

    assert torch.autograd.gradcheck(probs, (theta,), eps=1e-6, atol=1e-7)


def test_fused_and_unfused_programs_agree(rng: np.random.Generator) -> None:
    """Fused and gate-by-gate kernels give the same probabilities and gradients (13 qubits)."""
    qc = qt_ansatz(13, 2)
    program = compile_circuit(qc)
    fused = fuse_program(program)
    theta = torch.tensor(rng.uniform(-np.pi, np.pi, qc.num_parameters), requires_grad=True)
    weights = torch.tensor(rng.normal(size=2**13))
    results = []
    for prog in (program, fused):
        theta.grad = None
        probs = _ProbabilitiesFunction.apply(theta, prog, 1)
        (probs * weights).sum().backward()
        assert theta.grad is not None
        results.append((probs.detach().clone(), theta.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-12, rtol=0)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-10, rtol=0)


def test_unsupported_gate_is_rejected() -> None:
    """A gate the engine cannot run gives a CircuitError naming it."""
    qc = QuantumCircuit(3)
    qc.ccx(0, 1, 2)
    with pytest.raises(CircuitError, match="'ccx'"):
        compile_circuit(qc)


def test_non_affine_angle_is_rejected() -> None:
    """Angles must be a * theta + b of one parameter."""
    a, b = Parameter("a"), Parameter("b")
    qc = QuantumCircuit(1)
    qc.rx(a * b, 0)
    with pytest.raises(CircuitError, match="depends on 2 parameters"):
        compile_circuit(qc)
    qc2 = QuantumCircuit(1)
    qc2.rx(a * a, 0)
    with pytest.raises(CircuitError, match="not affine"):
        compile_circuit(qc2)


def test_wrong_theta_shape_is_rejected() -> None:
    """A theta of the wrong length raises a QFedInputError with the expected shape."""
    engine = StatevectorEngine(circuit=qt_ansatz(2, 1))
    with pytest.raises(QFedInputError, match=r"shape \(12,\)"):
        engine(torch.zeros(5))


def test_bad_dtype_is_rejected() -> None:
    """Only float32 and float64 are accepted."""
    with pytest.raises(QFedInputError, match="dtype"):
        StatevectorEngine(circuit=qt_ansatz(2, 1), dtype=torch.float16)
