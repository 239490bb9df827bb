"""Models: the target CNN, the mapping MLP and the Quantum-Train model."""

from qfed_qiskit.models.cnn import TargetCNN, count_parameters
from qfed_qiskit.models.mapping import MappingMLP, basis_bits
from qfed_qiskit.models.quantum_train import QuantumTrainModel, beta_scaling

__all__ = [
    "MappingMLP",
    "QuantumTrainModel",
    "TargetCNN",
    "basis_bits",
    "beta_scaling",
    "count_parameters",
]
