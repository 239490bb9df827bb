"""Quantum backends: Aer and fake-device samplers, ISA transpilation, IBM Runtime access."""

from qfed_qiskit.quantum.ibm import (
    RuntimeSampler,
    connect_service,
    credentials_source,
    redact,
    runtime_sampler,
)
from qfed_qiskit.quantum.samplers import (
    ExactAerSampler,
    ManagedSampler,
    ProbabilityArray,
    aer_sampler,
    fake_backend,
    fake_backend_names,
    fake_device_sampler,
    noise_model_from_backend,
    pub_probabilities,
)
from qfed_qiskit.quantum.transpile import (
    IsaStats,
    IsaTranspiler,
    isa_circuit,
    isa_stats,
    logical_clbit_order,
    measure_logical,
    preset_pass_manager,
    rewrite_u_gates,
    to_logical_order,
)

__all__ = [
    "ExactAerSampler",
    "IsaStats",
    "IsaTranspiler",
    "ManagedSampler",
    "ProbabilityArray",
    "RuntimeSampler",
    "aer_sampler",
    "connect_service",
    "credentials_source",
    "fake_backend",
    "fake_backend_names",
    "fake_device_sampler",
    "isa_circuit",
    "isa_stats",
    "logical_clbit_order",
    "measure_logical",
    "noise_model_from_backend",
    "preset_pass_manager",
    "pub_probabilities",
    "redact",
    "rewrite_u_gates",
    "runtime_sampler",
    "to_logical_order",
]
