"""qfed-qiskit: parameter-compact quantum-classical federated learning on Qiskit.

Implements Quantum-Train (QT) and its federated form QFed (arXiv 2601.09809): a parameterised
quantum circuit plus a small mapping network generate the weights of a classical CNN, and only the
circuit angles and mapping weights are trained and averaged.

The Python API (:mod:`qfed_qiskit.api`): ``qfed_qiskit.train``, ``evaluate``, ``noise_sweep``,
``load_run``, ``estimate_cost`` and ``fashion_mnist_dir`` do what the command line does.

Heavy submodules (Qiskit primitives, IBM Runtime, Flower) are imported lazily by the code that needs
them, so ``import qfed_qiskit`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# The API module imports only the standard library at the top: cheap to import here.
from qfed_qiskit.api import (
    Evaluation,
    Run,
    SweepResult,
    estimate_cost,
    evaluate,
    fashion_mnist_dir,
    load_run,
    noise_sweep,
    train,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from qfed_qiskit.engines.statevector import StatevectorEngine
    from qfed_qiskit.models.cnn import TargetCNN
    from qfed_qiskit.models.quantum_train import QuantumTrainModel

_LAZY = {
    "QuantumTrainModel": "qfed_qiskit.models.quantum_train",
    "TargetCNN": "qfed_qiskit.models.cnn",
    "StatevectorEngine": "qfed_qiskit.engines.statevector",
}

__all__ = [
    "Evaluation",
    "QuantumTrainModel",
    "Run",
    "StatevectorEngine",
    "SweepResult",
    "TargetCNN",
    "__version__",
    "estimate_cost",
    "evaluate",
    "fashion_mnist_dir",
    "load_run",
    "noise_sweep",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qfed_qiskit' has no attribute {name!r}")
