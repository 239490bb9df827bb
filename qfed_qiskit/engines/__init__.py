"""QNN engines: differentiable maps from circuit angles to basis-state probabilities."""

from qfed_qiskit.engines.base import QNNEngine
from qfed_qiskit.engines.program import GateProgram, compile_circuit

__all__ = ["GateProgram", "QNNEngine", "compile_circuit"]
