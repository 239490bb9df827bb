"""Conformance of the Qiskit sampler engine and its gradients against the exact engine."""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.quantum_info import Statevector

from qfed_qiskit.circuits import qt_ansatz
from qfed_qiskit.engines.gradients import (
    FOUR_TERM,
    TWO_TERM,
    BatchedParamShiftSamplerGradient,
    build_shift_plan,
    make_sampler_gradient,
)
from qfed_qiskit.engines.qiskit_sampler import QiskitSamplerEngine
from qfed_qiskit.engines.statevector import StatevectorEngine
from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.models.cnn import TargetCNN
from qfed_qiskit.models.quantum_train import QuantumTrainModel
from qfed_qiskit.quantum.aer_noise import apply_readout
from qfed_qiskit.quantum.devices import aer_sampler, fake_backend, fake_device_sampler
from qfed_qiskit.quantum.exact_aer import ExactAerSampler
from qfed_qiskit.quantum.managed import ManagedSampler
from qfed_qiskit.quantum.results import ProbabilityArray, binomial_bound, pub_probabilities
from qfed_qiskit.quantum.transpile import preset_pass_manager


def _exact_reference(
    circuit: QuantumCircuit, theta: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and d(probs·weights)/dθ from the exact engine (float64)."""
    engine = StatevectorEngine(circuit=circuit, dtype=torch.float64, threads=1)
    t = theta.detach().clone().to(torch.float64).requires_grad_(True)
    probs = engine(t)
    (probs @ weights).backward()
    assert t.grad is not None
    return probs.detach(), t.grad


def _engine_grad(
    engine: QiskitSamplerEngine, theta: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    t = theta.detach().clone().to(engine.dtype).requires_grad_(True)
    probs = engine(t)
    (probs @ weights.to(probs.dtype)).backward()
    assert t.grad is not None
    return probs.detach().to(torch.float64), t.grad.to(torch.float64)


@pytest.fixture
def theta3() -> torch.Tensor:
    """Random angles for a 3-qubit, 2-block ansatz."""
    return torch.empty(qt_ansatz(3, 2).num_parameters, dtype=torch.float64).uniform_(-math.pi, 3)


@pytest.mark.aer
def test_exact_sampler_matches_statevector(rng: np.random.Generator) -> None:
    """ExactAerSampler returns Statevector probabilities for every parameter set of a PUB."""
    circuit = qt_ansatz(3, 2)
    measured = circuit.copy()
    measured.measure_all()
    values = rng.uniform(-3, 3, size=(4, circuit.num_parameters))
    result = aer_sampler(shots=None).run([(measured, values)]).result()[0]
    probs = pub_probabilities(result)
    for row, v in zip(probs, values, strict=True):
        expected = Statevector(circuit.assign_parameters(v)).probabilities()
        np.testing.assert_allclose(row, expected, atol=1e-12)
    assert isinstance(result.data.meas, ProbabilityArray)
    counts = result.data.meas.get_counts(0)
    assert math.isclose(sum(counts.values()), 1.0, abs_tol=1e-12)


@pytest.mark.aer
def test_noisy_exact_sampler_matches_density_matrix_engine() -> None:
    """Exact noisy Aer (density matrix, labelled CU unitaries, readout) = our DM engine, 1e-8."""
    from qfed_qiskit.engines.density_matrix import DensityMatrixEngine, DepolarizingNoise

    noise = DepolarizingNoise(p1=2e-3, p2=2e-2, readout=3e-2)
    circuit = qt_ansatz(4, 2)
    theta = torch.empty(circuit.num_parameters, dtype=torch.float64).uniform_(-3, 3)
    expected = DensityMatrixEngine(circuit=circuit, noise=noise, dtype=torch.float64)(theta)
    engine = QiskitSamplerEngine(
        circuit=circuit,
        sampler=aer_sampler(noise_model=noise.to_aer_noise_model(), shots=None),
        shots=None,
        dtype=torch.float64,
    )
    torch.testing.assert_close(engine(theta), expected.detach(), atol=1e-8, rtol=0)


@pytest.mark.aer
def test_sampled_noisy_shots_within_binomial_bound(rng: np.random.Generator) -> None:
    """Shots drawn from the exact noisy distribution stay within the binomial bound."""
    from qfed_qiskit.engines.density_matrix import DepolarizingNoise

    model = DepolarizingNoise(p1=1e-2, p2=1e-2, readout=1e-2).to_aer_noise_model()
    circuit = qt_ansatz(3, 1)
    circuit.measure_all()
    values = rng.uniform(-3, 3, size=(3, circuit.num_parameters))
    exact = pub_probabilities(
        aer_sampler(noise_model=model, shots=None).run([(circuit, values)]).result()[0]
    )
    shots = 4000
    sampled = aer_sampler(noise_model=model, shots=shots, seed=4).run([(circuit, values)]).result()
    freq = pub_probabilities(sampled[0])
    assert sampled[0].data.meas.num_shots == shots
    assert np.abs(freq - exact).max() <= binomial_bound(exact, shots)


@pytest.mark.aer
def test_aer_sampler_binds_controlled_rotations() -> None:
    """Aer leaves crz/cp angles unbound (is_parameterized() is False); ManagedSampler fixes it."""
    from qfed_qiskit.quantum.aer_circuits import aer_unsafe_gates

    a = Parameter("a")
    qc = QuantumCircuit(2)
    qc.h([0, 1])
    qc.crz(a, 0, 1)
    qc.cp(a, 0, 1)
    qc.h([0, 1])
    assert aer_unsafe_gates(qc) == {"crz", "cp"}
    expected = Statevector(qc.assign_parameters([2.0])).probabilities()
    qc.measure_all()
    shots = 20000
    sampler = ManagedSampler(aer_sampler(shots=shots, seed=3, native=True))
    freq = pub_probabilities(sampler.run([(qc, [2.0])]).result()[0])[0]
    assert np.abs(freq - expected).max() <= binomial_bound(expected, shots)
    exact = pub_probabilities(aer_sampler(shots=None).run([(qc, [2.0])]).result()[0])[0]
    np.testing.assert_allclose(exact, expected, atol=1e-12)


@pytest.mark.aer
@pytest.mark.ibm
def test_device_noise_restricted_toactive_qubits_is_exact(rng: np.random.Generator) -> None:
    """Simulating only the qubits an ISA circuit uses gives the full-device distribution."""
    from qiskit_aer import AerSimulator

    from qfed_qiskit.quantum.aer_circuits import final_measurements
    from qfed_qiskit.quantum.aer_noise import readout_matrices

    backend = fake_backend("fake_lagos")  # 7 qubits; the circuit uses 3
    circuit = qt_ansatz(3, 1)
    circuit.measure_all()
    isa = preset_pass_manager(backend, initial_layout=[6, 5, 3], seed=1).run(circuit)
    values = rng.uniform(-3, 3, size=(2, circuit.num_parameters))
    sampler = fake_device_sampler(backend, shots=None)
    got = pub_probabilities(sampler.run([(isa, values)]).result()[0])
    assert sampler._plan(isa).circuit.num_qubits < backend.num_qubits
    full = AerSimulator.from_backend(backend, method="density_matrix")
    body, _, order = final_measurements(isa)
    rows = []
    for row in values:
        bound = body.assign_parameters(row)
        bound.save_probabilities(list(order))
        rows.append(full.run(bound, shots=1).result().data(0)["probabilities"])
    expected = apply_readout(np.array(rows), readout_matrices(full.options.noise_model, order))
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_apply_readout_flips_bits_independently() -> None:
    """A perfect bit-flip on clbit 0 swaps outcomes k and k^1."""
    probs = np.array([[0.1, 0.2, 0.3, 0.4]])
    flip = np.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(apply_readout(probs, [flip, None]), [[0.2, 0.1, 0.4, 0.3]])
    np.testing.assert_allclose(apply_readout(probs, [None, flip]), [[0.3, 0.4, 0.1, 0.2]])


@pytest.mark.aer
@pytest.mark.parametrize(("qubits", "blocks"), [(1, 2), (2, 1), (3, 2)])
def test_engine_exact_matches_statevector_engine(qubits: int, blocks: int) -> None:
    """Exact Aer probabilities through SamplerQNN agree with the exact engine to 1e-8 (float64)."""
    circuit = qt_ansatz(qubits, blocks)
    theta = torch.empty(circuit.num_parameters, dtype=torch.float64).uniform_(-3, 3)
    weights = torch.randn(2**qubits, dtype=torch.float64)
    expected, _ = _exact_reference(circuit, theta, weights)
    engine = QiskitSamplerEngine(
        circuit=circuit, sampler=aer_sampler(shots=None), shots=None, dtype=torch.float64
    )
    got = engine(theta)
    assert got.dtype == torch.float64
    assert got.shape == (2**qubits,)
    torch.testing.assert_close(got, expected, atol=1e-8, rtol=0)


@pytest.mark.aer
@pytest.mark.parametrize("blocks", [1, 2])
def test_batched_param_shift_matches_autograd(blocks: int) -> None:
    """Our one-PUB parameter-shift gradient equals the exact engine's gradient to 1e-6."""
    circuit = qt_ansatz(3, blocks)
    theta = torch.empty(circuit.num_parameters, dtype=torch.float64).uniform_(-3, 3)
    weights = torch.randn(8, dtype=torch.float64)
    _, expected = _exact_reference(circuit, theta, weights)
    engine = QiskitSamplerEngine(
        circuit=circuit, sampler=aer_sampler(shots=None), shots=None, dtype=torch.float64
    )
    _, got = _engine_grad(engine, theta, weights)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


@pytest.mark.aer
def test_torch_connector_float32_path(theta3: torch.Tensor) -> None:
    """The default float32 TorchConnector path agrees with the exact engine to 1e-6."""
    circuit = qt_ansatz(3, 2)
    weights = torch.randn(8, dtype=torch.float64)
    probs_ref, grad_ref = _exact_reference(circuit, theta3.float().double(), weights)
    engine = QiskitSamplerEngine(circuit=circuit, sampler=aer_sampler(shots=None), shots=None)
    probs, grad = _engine_grad(engine, theta3.float(), weights)
    torch.testing.assert_close(probs, probs_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(grad, grad_ref, atol=1e-5, rtol=0)


@pytest.mark.aer
def test_stock_param_shift_agrees_with_batched(theta3: torch.Tensor) -> None:
    """Stock ParamShiftSamplerGradient and ours give the same exact gradient."""
    circuit = qt_ansatz(3, 2)
    weights = torch.randn(8, dtype=torch.float64)
    grads = []
    for name in ("batched-param-shift", "param-shift"):
        engine = QiskitSamplerEngine(
            circuit=circuit,
            sampler=aer_sampler(shots=None),
            shots=None,
            gradient=name,
            dtype=torch.float64,
        )
        grads.append(_engine_grad(engine, theta3, weights)[1])
    torch.testing.assert_close(grads[0], grads[1], atol=1e-10, rtol=0)


@pytest.mark.aer
@pytest.mark.parametrize("native", [False, True])
def test_engine_shots_within_binomial_bound(theta3: torch.Tensor, native: bool) -> None:
    """With 4096 shots, max |Δp| ≤ 5·sqrt(p(1-p)/shots) + 1e-3 (fixed seed), both samplers."""
    circuit = qt_ansatz(3, 2)
    shots = 4096
    expected, _ = _exact_reference(circuit, theta3, torch.zeros(8, dtype=torch.float64))
    sampler = aer_sampler(shots=shots, seed=11, native=native)
    engine = QiskitSamplerEngine(circuit=circuit, sampler=sampler, shots=shots, dtype=torch.float64)
    got = engine(theta3)
    bound = binomial_bound(expected.numpy(), shots)
    assert float((got - expected).abs().max()) <= bound
    assert math.isclose(float(got.sum()), 1.0, abs_tol=1e-9)
    # Shots are seeded by content: the same PUB draws the same samples (a resumed run repeats
    # what the uninterrupted one drew), any other PUB draws independent ones.
    assert torch.equal(engine(theta3), got)
    assert not torch.equal(engine(theta3 + 1e-6), got)


@pytest.mark.aer
def test_shot_gradient_close_to_exact(theta3: torch.Tensor) -> None:
    """A shot-based batched gradient is within a loose statistical bound of the exact one."""
    circuit = qt_ansatz(3, 2)
    weights = torch.randn(8, dtype=torch.float64)
    _, expected = _exact_reference(circuit, theta3, weights)
    engine = QiskitSamplerEngine(circuit=circuit, shots=8192, seed=5, dtype=torch.float64)
    _, got = _engine_grad(engine, theta3, weights)
    # each entry combines <= 4 frequencies with |coef| <= 0.6; |w| <= ~3; sigma <= 0.5/sqrt(shots)
    bound = 6 * 4 * 0.6 * float(weights.abs().sum()) * 0.5 / math.sqrt(8192)
    assert float((got - expected).abs().max()) <= bound


@pytest.mark.aer
def test_batched_gradient_submits_one_job_with_one_pub() -> None:
    """Forward is one job; the backward is one job holding one PUB of all shifted sets."""

    class Counting(ExactAerSampler):
        calls: ClassVar[list[list[Any]]] = []

        def run(self, pubs: Any, *, shots: int | None = None) -> Any:
            pubs = list(pubs)
            Counting.calls.append(pubs)
            return super().run(pubs, shots=shots)

    circuit = qt_ansatz(3, 1)
    engine = QiskitSamplerEngine(circuit=circuit, sampler=Counting(), shots=None)
    theta = torch.zeros(circuit.num_parameters, requires_grad=True)
    engine(theta).sum().backward()
    assert len(Counting.calls) == 2
    assert len(Counting.calls[1]) == 1
    values = np.asarray(Counting.calls[1][0][1])
    # 9 U gates x 3 angles x 2 rows + 3 CU gates x (4 + 2 + 2) rows
    assert values.shape == (9 * 2 + 3 * 8, circuit.num_parameters)
    assert engine.evaluations_per_step() == 1 + values.shape[0]
    assert len(engine.job_ids) == 2


def test_shift_plan_rules_for_qt_ansatz() -> None:
    """U angles and CU's φ, λ use the two-term rule; CU's θ the four-term rule."""
    circuit = qt_ansatz(2, 1)
    plan = build_shift_plan(circuit)
    assert plan.trivial
    assert plan.circuit is circuit
    rules = list(plan.slot_rule)
    assert rules[:6] == [TWO_TERM] * 6
    assert rules[6:9] == [FOUR_TERM, TWO_TERM, TWO_TERM]


@pytest.mark.aer
def test_two_term_rule_is_wrong_for_cu_theta() -> None:
    """The naive two-term rule on CU's θ misses the gradient (why the four-term rule is used)."""
    theta = Parameter("t")
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.ry(0.7, 1)
    qc.cu(theta, 0.3, -0.4, 0.0, 0, 1)
    qc.h(0)  # interference between the control branches brings in frequency 1/2

    def p(x: float) -> np.ndarray:
        return Statevector(qc.assign_parameters([x])).probabilities()

    x, h = 0.9, 1e-6
    exact = (p(x + h) - p(x - h)) / (2 * h)
    two = sum(c * p(x + s) for s, c in TWO_TERM)
    four = sum(c * p(x + s) for s, c in FOUR_TERM)
    np.testing.assert_allclose(four, exact, atol=1e-8)
    assert np.abs(two - exact).max() > 1e-2


@pytest.mark.aer
def test_batched_gradient_shared_parameters_and_expressions(rng: np.random.Generator) -> None:
    """Shared parameters, affine expressions and gates without a rule: finite differences agree."""
    a, b = Parameter("a"), Parameter("b")
    qc = QuantumCircuit(2)
    qc.rx(2 * a, 0)
    qc.ry(a + b, 1)
    qc.crz(b, 0, 1)
    qc.cu(a, b, 0.5 * a, 0.0, 1, 0)
    qc.rzz(a - b, 0, 1)
    qc.sx(0)
    qc.r(b, 0.3, 1)  # not in the rule table: translated first
    plan = build_shift_plan(qc)
    assert not plan.trivial
    measured = qc.copy()
    measured.measure_all()
    values = rng.uniform(-2, 2, size=2)
    gradient = BatchedParamShiftSamplerGradient(aer_sampler(shots=None))
    result = gradient.run([measured], [values]).result()

    def probs(v: np.ndarray) -> np.ndarray:
        return Statevector(qc.assign_parameters(v)).probabilities()

    h = 1e-6
    for j in range(2):
        step = np.zeros(2)
        step[j] = h
        fd = (probs(values + step) - probs(values - step)) / (2 * h)
        got = np.zeros(4)
        for k, v in result.gradients[0][j].items():
            got[k] = v
        np.testing.assert_allclose(got, fd, atol=1e-7)


@pytest.mark.aer
def test_spsa_gradient_runs(theta3: torch.Tensor) -> None:
    """SPSA is selectable and yields a finite gradient of the right shape."""
    circuit = qt_ansatz(3, 2)
    engine = QiskitSamplerEngine(circuit=circuit, shots=1024, gradient="spsa", spsa_batch=2, seed=3)
    _, grad = _engine_grad(engine, theta3.float(), torch.randn(8))
    assert grad.shape == (circuit.num_parameters,)
    assert torch.isfinite(grad).all()
    assert engine.evaluations_per_step() == 5


def test_make_sampler_gradient_rejects_unknown() -> None:
    """Unknown gradient names and bad SPSA settings raise QFedInputError."""
    sampler = ManagedSampler(aer_sampler(shots=None))
    with pytest.raises(QFedInputError, match="gradient must be one of"):
        make_sampler_gradient("finite-diff", sampler=sampler)
    with pytest.raises(QFedInputError, match="spsa_batch"):
        make_sampler_gradient("spsa", sampler=sampler, spsa_batch=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shots": None, "sampler": "shots"}, "needs an exact sampler"),
        ({"shots": None, "sampler": "native"}, "needs an exact sampler"),
        ({"shots": -1}, "shots must be"),
        ({"gradient": "adjoint"}, "gradient must be one of"),
        ({"dtype": torch.float16}, "dtype"),
    ],
)
def test_engine_rejects_bad_settings(kwargs: dict[str, Any], match: str) -> None:
    """Contradictory or invalid settings raise a QFedInputError naming the problem."""
    args = dict(kwargs)
    if args.get("sampler") == "shots":
        args["sampler"] = aer_sampler(shots=100)
    elif args.get("sampler") == "native":
        args["sampler"] = aer_sampler(shots=100, native=True)
    elif args.get("sampler") == "exact":
        args["sampler"] = aer_sampler(shots=None)
    with pytest.raises(QFedInputError, match=match):
        QiskitSamplerEngine(circuit=qt_ansatz(2, 1), **args)


def test_engine_rejects_measured_circuit() -> None:
    """The engine adds measurements itself."""
    circuit = qt_ansatz(2, 1)
    circuit.measure_all()
    with pytest.raises(QFedInputError, match="no measurements"):
        QiskitSamplerEngine(circuit=circuit, shots=None, sampler=aer_sampler(shots=None))


@pytest.mark.aer
def test_job_ids_recorded_to_list_and_callable() -> None:
    """Every job id is exposed on the engine and sent to record_jobs."""
    seen: list[str] = []
    called: list[str] = []
    circuit = qt_ansatz(2, 1)
    for recorder in (seen, called.append):
        engine = QiskitSamplerEngine(
            circuit=circuit, sampler=aer_sampler(shots=None), shots=None, record_jobs=recorder
        )
        theta = torch.zeros(circuit.num_parameters, requires_grad=True)
        engine(theta).sum().backward()
        assert len(engine.job_ids) == 2
    assert len(seen) == 2 and len(called) == 2
    assert all(isinstance(j, str) and j for j in seen + called)


@pytest.mark.aer
def test_model_state_dict_does_not_depend_on_engine() -> None:
    """A QT model with the Qiskit engine has the same parameters and state dict keys."""
    exact = QuantumTrainModel(blocks=1, chunk_size=256)
    qiskit = QuantumTrainModel(
        blocks=1,
        chunk_size=256,
        engine_factory=lambda c: QiskitSamplerEngine(
            circuit=c, sampler=aer_sampler(shots=None), shots=None
        ),
    )
    assert list(exact.state_dict()) == list(qiskit.state_dict())
    assert [n for n, _ in exact.named_parameters()] == [n for n, _ in qiskit.named_parameters()]
    qiskit.load_state_dict(exact.state_dict())
    description = qiskit.engine.describe()
    assert json.loads(json.dumps(description))["engine"] == "qiskit-sampler"


def _train_steps(model: QuantumTrainModel, steps: int) -> list[float]:
    torch.manual_seed(0)
    images = torch.randn(8, 1, 28, 28)
    labels = torch.randint(0, 10, (8,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.aer
def test_qt_training_steps_on_noisy_aer() -> None:
    """Three QT steps on a depolarizing Aer sampler: finite loss, angles move."""
    from qfed_qiskit.engines.density_matrix import DepolarizingNoise

    noise = DepolarizingNoise(p1=1e-3, p2=1e-2, readout=1e-2).to_aer_noise_model()
    model = QuantumTrainModel(
        target=TargetCNN(),
        blocks=1,
        chunk_size=256,
        engine_factory=lambda c: QiskitSamplerEngine(
            circuit=c, sampler=aer_sampler(noise_model=noise, shots=2048, seed=1), shots=2048
        ),
    )
    before = model.qnn_weights.detach().clone()
    losses = _train_steps(model, 3)
    assert all(math.isfinite(x) for x in losses)
    assert not torch.equal(before, model.qnn_weights.detach())
    assert len(model.engine.job_ids) == 6  # type: ignore[attr-defined]


@pytest.mark.aer
@pytest.mark.ibm
def test_qt_training_steps_on_fake_device() -> None:
    """Two QT steps on FakeManilaV2 (noise, coupling map, ISA transpiled once)."""
    backend = fake_backend("fake_manila")
    pass_manager = preset_pass_manager(backend, seed=7)
    model = QuantumTrainModel(
        target=TargetCNN(),
        blocks=1,
        chunk_size=256,
        engine_factory=lambda c: QiskitSamplerEngine(
            circuit=c,
            sampler=fake_device_sampler(backend, shots=1024, seed=2),
            shots=1024,
            pass_manager=pass_manager,
        ),
    )
    before = model.qnn_weights.detach().clone()
    losses = _train_steps(model, 2)
    assert all(math.isfinite(x) for x in losses)
    assert not torch.equal(before, model.qnn_weights.detach())
    engine: Any = model.engine
    assert engine.sampler.transpiler.transpile_count == 1  # forward and gradient share one ISA


@pytest.mark.aer
@pytest.mark.ibm
def test_exact_on_isa_circuit_with_permuted_layout_matches_exact_engine(
    theta3: torch.Tensor,
) -> None:
    """Transpiled to FakeManilaV2 with a permuted layout, results stay in logical order."""
    circuit = qt_ansatz(3, 2)
    weights = torch.randn(8, dtype=torch.float64)
    probs_ref, grad_ref = _exact_reference(circuit, theta3, weights)
    backend = fake_backend("fake_manila")
    engine = QiskitSamplerEngine(
        circuit=circuit,
        sampler=aer_sampler(shots=None),
        shots=None,
        pass_manager=preset_pass_manager(backend, initial_layout=[4, 2, 0], seed=1),
        dtype=torch.float64,
    )
    probs, grad = _engine_grad(engine, theta3, weights)
    torch.testing.assert_close(probs, probs_ref, atol=1e-8, rtol=0)
    torch.testing.assert_close(grad, grad_ref, atol=1e-6, rtol=0)
