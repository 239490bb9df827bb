"""Models: the target CNN, the mapping MLP and the Quantum-Train model."""

from qfed_qiskit.models.cnn import SmallCNN, TargetCNN, count_parameters
from qfed_qiskit.models.mapping import MappingMLP, basis_bits
from qfed_qiskit.models.quantum_train import ProjectionGenerator, QuantumTrainModel, beta_scaling

__all__ = [
    "MappingMLP",
    "ProjectionGenerator",
    "QuantumTrainModel",
    "SmallCNN",
    "TargetCNN",
    "basis_bits",
    "beta_scaling",
    "count_parameters",
]
