"""Backend and noise-model profiles (TOML): schema, loader, noise models, engine factories and
what a run costs on each backend."""

from qfed_qiskit.profiles.cost import (
    check_budget,
    circuits_per_step,
    describe_backend,
    estimate_cost,
    evaluation_cost,
    format_cost,
    gradient_evaluations,
    guard_cost,
    training_cost,
    training_steps,
)
from qfed_qiskit.profiles.factory import (
    DENSITY_MATRIX_MAX_QUBITS,
    ProfileEngineFactory,
    engine_factory_for,
)
from qfed_qiskit.profiles.loader import (
    ProfileWarning,
    fake_device_names,
    find_profile,
    is_profile_path,
    list_backend_profiles,
    list_noise_profiles,
    load_backend_profile,
    load_noise_profile,
    profile_dirs,
    profile_names,
)
from qfed_qiskit.profiles.noise import aer_noise_model, depolarizing_noise, noise_backend
from qfed_qiskit.profiles.schema import (
    BACKEND_KINDS,
    NOISE_KINDS,
    BackendProfile,
    NoiseProfile,
    ProfileNotFoundError,
    parse_backend_profile,
    parse_noise_profile,
)

__all__ = [
    "BACKEND_KINDS",
    "DENSITY_MATRIX_MAX_QUBITS",
    "NOISE_KINDS",
    "BackendProfile",
    "NoiseProfile",
    "ProfileEngineFactory",
    "ProfileNotFoundError",
    "ProfileWarning",
    "aer_noise_model",
    "check_budget",
    "circuits_per_step",
    "depolarizing_noise",
    "describe_backend",
    "engine_factory_for",
    "estimate_cost",
    "evaluation_cost",
    "fake_device_names",
    "find_profile",
    "format_cost",
    "gradient_evaluations",
    "guard_cost",
    "is_profile_path",
    "list_backend_profiles",
    "list_noise_profiles",
    "load_backend_profile",
    "load_noise_profile",
    "noise_backend",
    "parse_backend_profile",
    "parse_noise_profile",
    "profile_dirs",
    "profile_names",
    "training_cost",
    "training_steps",
]
