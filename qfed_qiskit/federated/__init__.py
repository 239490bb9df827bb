"""Federated Quantum-Train: client step, FedAvg, update validation, checkpoints, embedded engine."""

from qfed_qiskit.federated.checkpoint import (
    Checkpoint,
    load_checkpoint,
    resume_config,
    resume_fingerprint,
    save_checkpoint,
)
from qfed_qiskit.federated.core import (
    Arrays,
    ClientCancelledError,
    ClientFn,
    ClientState,
    ClientUpdate,
    DPResult,
    client_fit,
    dp_fedavg,
    fedavg,
    get_parameters,
    sample_clients,
    serialized_size,
    set_parameters,
    validate_update,
)
from qfed_qiskit.federated.embedded import run_federated
from qfed_qiskit.federated.faults import FaultPlan

__all__ = [
    "Arrays",
    "Checkpoint",
    "ClientCancelledError",
    "ClientFn",
    "ClientState",
    "ClientUpdate",
    "DPResult",
    "FaultPlan",
    "client_fit",
    "dp_fedavg",
    "fedavg",
    "get_parameters",
    "load_checkpoint",
    "resume_config",
    "resume_fingerprint",
    "run_federated",
    "sample_clients",
    "save_checkpoint",
    "serialized_size",
    "set_parameters",
    "validate_update",
]
