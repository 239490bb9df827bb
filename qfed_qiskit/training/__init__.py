"""Training: local training loop, evaluation, model builders, run outputs, centralized runs."""

from qfed_qiskit.files import atomic_write_bytes
from qfed_qiskit.training.builders import build_model, build_optimizer, build_scheduler, seed_all
from qfed_qiskit.training.callbacks import NullCallback, TrainingCallback
from qfed_qiskit.training.loop import EpochResult, EvalResult, evaluate, train_epoch
from qfed_qiskit.training.outputs import RunDirectory

__all__ = [
    "EpochResult",
    "EvalResult",
    "NullCallback",
    "RunDirectory",
    "TrainingCallback",
    "atomic_write_bytes",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "seed_all",
    "train_epoch",
]
