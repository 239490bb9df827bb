"""ISA transpilation: cached once per circuit, logical bit order through permuted layouts."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit.circuit import ClassicalRegister, QuantumCircuit
from qiskit.quantum_info import Statevector

from qfed_qiskit.circuits import qt_ansatz
from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.quantum.devices import aer_sampler, fake_backend
from qfed_qiskit.quantum.results import pub_probabilities
from qfed_qiskit.quantum.transpile import (
    IsaTranspiler,
    final_physical_qubits,
    isa_circuit,
    isa_stats,
    logical_clbit_order,
    measure_logical,
    preset_pass_manager,
    to_logical_order,
)

pytestmark = [pytest.mark.aer, pytest.mark.ibm]


@pytest.fixture(scope="module")
def manila() -> object:
    """FakeManilaV2: 5 qubits on a line-like coupling map, so rings need routing."""
    return fake_backend("fake_manila")


def _bound_ansatz(seed: int = 3) -> QuantumCircuit:
    circuit = qt_ansatz(3, 1)
    values = np.random.default_rng(seed).uniform(-3, 3, circuit.num_parameters)
    return circuit.assign_parameters(values)


def _ideal_probs(isa: QuantumCircuit) -> np.ndarray:
    result = aer_sampler(shots=None).run([isa]).result()[0]
    out: np.ndarray = pub_probabilities(result)[0]
    return out


def test_measure_all_before_transpile_keeps_logical_order(manila: object) -> None:
    """With a permuting layout (and routing), clbit i still reads logical qubit i."""
    logical = _bound_ansatz()
    expected = Statevector(logical).probabilities()
    measured = logical.copy()
    measured.measure_all()
    isa = isa_circuit(measured, manila, initial_layout=[4, 2, 0], seed=1)
    assert isa.layout.initial_index_layout()[:3] == [4, 2, 0]
    assert final_physical_qubits(isa) != [0, 1, 2]
    assert logical_clbit_order(isa) == [0, 1, 2]
    np.testing.assert_allclose(_ideal_probs(isa), expected, atol=1e-10)


def test_measure_after_transpile_through_final_layout(manila: object) -> None:
    """Measuring after transpiling via final_index_layout gives logical order too."""
    logical = _bound_ansatz(5)
    expected = Statevector(logical).probabilities()
    pm = preset_pass_manager(manila, initial_layout=[3, 1, 4], seed=2)
    isa = pm.run(logical)
    measured = measure_logical(isa)
    assert logical_clbit_order(measured) == [0, 1, 2]
    np.testing.assert_allclose(_ideal_probs(measured), expected, atol=1e-10)


def test_naive_physical_measurement_needs_remapping(manila: object) -> None:
    """Measuring physical qubits in index order permutes outcomes; to_logical_order undoes it."""
    logical = _bound_ansatz(7)
    expected = Statevector(logical).probabilities()
    isa = preset_pass_manager(manila, initial_layout=[4, 2, 0], seed=1).run(logical)
    physical = sorted(final_physical_qubits(isa))
    creg_circuit = isa.copy()
    creg = ClassicalRegister(3, "meas")
    creg_circuit.add_register(creg)
    for j, p in enumerate(physical):
        creg_circuit.measure(p, creg[j])
    order = logical_clbit_order(creg_circuit)
    assert order != [0, 1, 2]
    raw = _ideal_probs(creg_circuit)
    assert np.abs(raw - expected).max() > 1e-3
    np.testing.assert_allclose(to_logical_order(raw, order), expected, atol=1e-10)


def test_to_logical_order_permutation() -> None:
    """A clbit→logical swap exchanges outcomes 01 and 10."""
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(to_logical_order(probs, [1, 0]), [0.1, 0.3, 0.2, 0.4])
    assert to_logical_order(probs, [0, 1]) is probs
    with pytest.raises(QFedInputError):
        to_logical_order(probs, [0, 0])


def test_isa_transpiler_transpiles_each_circuit_once(manila: object) -> None:
    """The same circuit object is transpiled once; a new object is transpiled again."""
    transpiler = IsaTranspiler(backend=manila, seed=1)
    circuit = qt_ansatz(3, 1)
    circuit.measure_all()
    first = transpiler(circuit)
    assert transpiler(circuit) is first
    assert transpiler.transpile_count == 1
    transpiler(circuit.copy())
    assert transpiler.transpile_count == 2
    assert isa_circuit(circuit, manila, seed=1) is isa_circuit(circuit, manila, seed=1)


def test_isa_transpiler_needs_one_source() -> None:
    """Exactly one of pass_manager and backend."""
    with pytest.raises(QFedInputError, match="exactly one"):
        IsaTranspiler()


def test_isa_stats_counts_two_qubit_gates(manila: object) -> None:
    """Stats count CX gates, depth and active qubits of an ISA circuit."""
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    qc.cx(0, 1)
    qc.measure_all()
    stats = isa_stats(qc)
    assert stats.two_qubit_gates == 2
    assert stats.two_qubit_depth == 2
    assert stats.depth == 3
    assert stats.active_qubits == 2
    isa = isa_circuit(qt_ansatz(3, 1), manila, seed=3)
    isa_s = isa_stats(isa)
    assert isa_s.two_qubit_gates >= 6  # 3 CU gates need at least 2 CX each
    assert isa_s.to_dict()["ops"]["cx"] == isa_s.two_qubit_gates


def test_logical_clbit_order_requires_measurements() -> None:
    """Unmeasured clbits are an error."""
    qc = QuantumCircuit(2, 2)
    qc.measure(0, 0)
    with pytest.raises(QFedInputError, match="measured"):
        logical_clbit_order(qc)


def test_preset_pass_manager_rewrites_parameterised_u_gates(manila: object) -> None:
    """Parameterised U/CU are rewritten before translation; bound ISA circuits keep the physics."""
    circuit = qt_ansatz(5, 2)
    circuit.measure_all()
    isa = preset_pass_manager(manila, seed=2).run(circuit)
    assert "cu" not in isa.count_ops() and "u" not in isa.count_ops()
    values = np.random.default_rng(4).uniform(-3, 3, circuit.num_parameters)
    got = _ideal_probs(isa.assign_parameters(values))
    expected = Statevector(qt_ansatz(5, 2).assign_parameters(values)).probabilities()
    np.testing.assert_allclose(got, expected, atol=1e-10)


def test_isa_circuit_of_paper_width_ansatz() -> None:
    """The 13-qubit ring transpiles to a heavy-hex device (Qiskit 2.6 stalled on raw u/cu)."""
    torino = fake_backend("fake_torino")
    circuit = qt_ansatz(13, 2)
    circuit.measure_all()
    isa = isa_circuit(circuit, torino, seed=0)
    stats = isa_stats(isa)
    assert stats.two_qubit_gates >= 2 * 13 * 2  # each CU needs >= 2 two-qubit gates
    assert isa.num_parameters == circuit.num_parameters
