"""Federated Quantum-Train: client step, FedAvg, update validation, the server loop, checkpoints,
the embedded runtime."""

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
    FedAdam,
    check_reply,
    client_fit,
    dp_fedavg,
    fedavg,
    get_parameters,
    sample_clients,
    serialized_size,
    set_parameters,
    validate_update,
)
from qfed_qiskit.federated.embedded import EmbeddedTransport, run_federated
from qfed_qiskit.federated.server import run_server_loop
from qfed_qiskit.federated.transport import FitReply, FitTask, Transport

__all__ = [
    "Arrays",
    "Checkpoint",
    "ClientCancelledError",
    "ClientFn",
    "ClientState",
    "ClientUpdate",
    "DPResult",
    "EmbeddedTransport",
    "FedAdam",
    "FitReply",
    "FitTask",
    "Transport",
    "check_reply",
    "client_fit",
    "dp_fedavg",
    "fedavg",
    "get_parameters",
    "load_checkpoint",
    "resume_config",
    "resume_fingerprint",
    "run_federated",
    "run_server_loop",
    "sample_clients",
    "save_checkpoint",
    "serialized_size",
    "set_parameters",
    "validate_update",
]
