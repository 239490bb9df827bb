"""Build models, optimizers and schedulers from a :class:`~qfed_qiskit.config.TrainConfig`."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.models.cnn import TargetCNN
from qfed_qiskit.models.quantum_train import EngineFactory, QuantumTrainModel

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(config: TrainConfig, *, engine_factory: EngineFactory | None = None) -> nn.Module:
    """The model to train: a :class:`QuantumTrainModel` or the plain :class:`TargetCNN`.

    Initial weights are drawn from torch's global RNG; seed it first (:func:`seed_all`).

    Args:
        config: Run settings (``model``, ``blocks``, ``chunk_size``, ``activation``).
        engine_factory: Builds the QNN engine from the circuit (default: exact statevector
            engine in ``config.dtype``). Ignored for the classical model.
    """
    target = TargetCNN(activation=config.activation)
    if config.model == "classical":
        return target
    if engine_factory is None:
        from qfed_qiskit.engines.statevector import StatevectorEngine

        dtype = TORCH_DTYPES[config.dtype]

        def engine_factory(circuit):  # type: ignore[no-untyped-def]
            return StatevectorEngine(circuit=circuit, dtype=dtype)

    return QuantumTrainModel(
        target=target,
        blocks=config.blocks,
        chunk_size=config.chunk_size,
        engine_factory=engine_factory,
    )


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam with the paper's settings (lr, weight decay 1e-5, eps 1e-6) over trainable params."""
    return torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        eps=config.adam_eps,
    )


def build_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """ReduceLROnPlateau on the epoch's training loss (patience 5, factor 0.5 by default)."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="min",
        patience=config.plateau_patience,
        factor=config.plateau_factor,
    )
