"""Pauli-trajectory and shot-aware engines: agreement with Aer's density matrix, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qfed_qiskit.circuits import qt_ansatz
from qfed_qiskit.engines.density_matrix import DensityMatrixEngine, DepolarizingNoise
from qfed_qiskit.engines.program import compile_circuit
from qfed_qiskit.engines.statevector import StatevectorEngine, _ProbabilitiesFunction
from qfed_qiskit.engines.trajectories import (
    PauliTrajectoryEngine,
    ShotNoiseEngine,
    apply_readout_flips,
    sample_errors,
    with_paulis,
)
from qfed_qiskit.exceptions import QFedInputError

NOISE = DepolarizingNoise(p1=0.02, p2=0.05, readout=0.03)


def _theta(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).uniform(-math.pi, math.pi, n))


def _aer_noisy_probabilities(
    circuit: object, theta: torch.Tensor, noise: DepolarizingNoise
) -> np.ndarray:
    """Aer's exact density-matrix probabilities (ExactAerSampler, no shots)."""
    from qfed_qiskit.quantum.exact_aer import ExactAerSampler
    from qfed_qiskit.quantum.results import pub_probabilities

    measured = circuit.copy()  # type: ignore[attr-defined]
    measured.measure_all()
    sampler = ExactAerSampler(noise_model=noise.to_aer_noise_model())
    result = sampler.run([(measured, theta.numpy()[None, :])]).result()
    return pub_probabilities(result[0])[0]


def test_without_gate_noise_it_is_the_exact_engine_with_readout_flips() -> None:
    """p1 = p2 = 0: one exact simulation, then the readout channel, nothing sampled."""
    circuit = qt_ansatz(3, 2)
    theta = _theta(circuit.num_parameters)
    noise = DepolarizingNoise(readout=0.1)
    engine = PauliTrajectoryEngine(circuit=circuit, noise=noise, dtype=torch.float64)
    assert engine.p0 == 1.0
    exact = StatevectorEngine(circuit=circuit, dtype=torch.float64)(theta)
    expected = apply_readout_flips(exact, 0.1, 3)
    torch.testing.assert_close(engine(theta), expected, rtol=0, atol=1e-12)
    reference = DensityMatrixEngine(circuit=circuit, noise=noise, dtype=torch.float64)(theta)
    torch.testing.assert_close(expected, reference, rtol=0, atol=1e-10)


@pytest.mark.aer
@pytest.mark.parametrize(("qubits", "blocks"), [(3, 2), (5, 1), (8, 1)])
def test_trajectory_mean_agrees_with_aer_density_matrix(qubits: int, blocks: int) -> None:
    """Many stratified trajectories reproduce Aer's noisy probabilities (statistical bound)."""
    circuit = qt_ansatz(qubits, blocks)
    theta = _theta(circuit.num_parameters, seed=qubits)
    expected = _aer_noisy_probabilities(circuit, theta, NOISE)
    engine = PauliTrajectoryEngine(
        circuit=circuit, noise=NOISE, trajectories=3000, seed=7, dtype=torch.float64
    )
    got = engine(theta).detach().numpy()
    # Each trajectory probability lies in [0, 1]: the mean of 3000 has sd <= 0.5/sqrt(3000),
    # scaled by (1 - P0); 5 sd is a loose, seed-independent bound.
    bound = 5 * (1 - engine.p0) * 0.5 / math.sqrt(3000)
    assert float(np.max(np.abs(got - expected))) <= bound
    assert got.sum() == pytest.approx(1.0, abs=1e-9)


def test_trajectory_gradient_agrees_with_the_density_matrix_gradient() -> None:
    """The mean of trajectory gradients estimates the noisy gradient (autograd through the DM)."""
    circuit = qt_ansatz(3, 1)
    theta = _theta(circuit.num_parameters, seed=3)
    weights = torch.from_numpy(np.random.default_rng(4).normal(size=8))

    def grad(engine: torch.nn.Module) -> torch.Tensor:
        t = theta.clone().requires_grad_(True)
        (engine(t) * weights).sum().backward()
        assert t.grad is not None
        return t.grad

    reference = grad(DensityMatrixEngine(circuit=circuit, noise=NOISE, dtype=torch.float64))
    engine = PauliTrajectoryEngine(
        circuit=circuit, noise=NOISE, trajectories=4000, seed=1, dtype=torch.float64
    )
    got = grad(engine)
    # |d p_k / d theta| <= 1 per probability, |w| <= ~3: sd of the mean <= ~24 / sqrt(4000).
    bound = 5 * (1 - engine.p0) * float(weights.abs().sum()) / math.sqrt(4000)
    assert float((got - reference).abs().max()) <= bound


def test_a_trajectory_is_differentiated_exactly() -> None:
    """gradcheck of one fixed trajectory (the inserted Paulis are constant gates)."""
    circuit = qt_ansatz(3, 2)
    program = compile_circuit(circuit)
    engine = PauliTrajectoryEngine(circuit=circuit, noise=NOISE)
    errors = sample_errors(program, engine.error_probs, np.random.default_rng(5))
    noisy = with_paulis(program, errors)
    assert noisy.num_gates == program.num_gates + sum(len(p) for _, p in errors) > program.num_gates
    theta = _theta(circuit.num_parameters).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t: _ProbabilitiesFunction.apply(t, noisy, 1), (theta,), eps=1e-6, atol=1e-6
    )


def test_draws_depend_on_seed_and_angles_only() -> None:
    """Same seed and angles: the same estimate (a resumed run repeats it); other angles: others."""
    circuit = qt_ansatz(4, 2)
    theta = _theta(circuit.num_parameters)
    a = PauliTrajectoryEngine(circuit=circuit, noise=NOISE, trajectories=3, seed=9)
    b = PauliTrajectoryEngine(circuit=circuit, noise=NOISE, trajectories=3, seed=9)
    assert torch.equal(a(theta), b(theta))
    assert not torch.equal(a(theta), a(theta + 1e-3))
    c = PauliTrajectoryEngine(circuit=circuit, noise=NOISE, trajectories=3, seed=10)
    assert not torch.equal(a(theta), c(theta))


def test_error_probabilities_follow_depolarizing_error() -> None:
    """A depolarizing channel of parameter p applies a non-identity Pauli w.p. p (1 - 4**-n)."""
    circuit = qt_ansatz(3, 1)  # 3 u gates, then 3 cu gates
    engine = PauliTrajectoryEngine(circuit=circuit, noise=DepolarizingNoise(p1=0.4, p2=0.8))
    assert engine.error_probs.tolist() == pytest.approx([0.3] * 3 + [0.75] * 3)
    assert engine.p0 == pytest.approx(0.7**3 * 0.25**3)


def test_bad_trajectory_count_is_refused() -> None:
    """trajectories must be a positive integer."""
    with pytest.raises(QFedInputError, match="trajectories=0"):
        PauliTrajectoryEngine(circuit=qt_ansatz(2, 1), noise=NOISE, trajectories=0)


def test_shot_noise_engine_is_straight_through() -> None:
    """Forward: S-shot frequencies; backward: the gradient of the exact probabilities."""
    circuit = qt_ansatz(3, 2)
    theta = _theta(circuit.num_parameters)
    exact = StatevectorEngine(circuit=circuit, dtype=torch.float64)
    engine = ShotNoiseEngine(engine=exact, shots=1000, seed=3)
    t = theta.clone().requires_grad_(True)
    out = engine(t)
    counts = out.detach().numpy() * 1000
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert out.sum().item() == pytest.approx(1.0)
    weights = torch.arange(8, dtype=torch.float64)
    (out * weights).sum().backward()
    t2 = theta.clone().requires_grad_(True)
    (exact(t2) * weights).sum().backward()
    assert t.grad is not None and t2.grad is not None
    torch.testing.assert_close(t.grad, t2.grad)
    mean = torch.stack(
        [ShotNoiseEngine(engine=exact, shots=1000, seed=s)(theta) for s in range(200)]
    ).mean(0)
    assert float((mean - exact(theta)).abs().max()) <= 5 * 0.5 / math.sqrt(200 * 1000)
