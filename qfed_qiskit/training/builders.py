"""Build models, optimizers, schedulers and engine factories from a TrainConfig.

This is the one place that turns ``config.backend`` into an engine factory (``None`` for the
default exact statevector engine) and ``config.dtype`` into a torch dtype; the federated and
centralized loops only pass the factory on.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qfed_qiskit.circuits.sizing import QTSizing
from qfed_qiskit.config import DEFAULT_BACKEND, TrainConfig, parse_mapping
from qfed_qiskit.engines.base import torch_dtype
from qfed_qiskit.models.cnn import SmallCNN, TargetCNN
from qfed_qiskit.models.quantum_train import EngineFactory, QuantumTrainModel


def qt_sizing(config: TrainConfig) -> QTSizing:
    """Qubits, chunks and angles of the QT model ``config`` builds (the paper's target CNN)."""
    from qfed_qiskit.models.quantum_train import target_sizing

    return target_sizing(
        chunk_size=config.chunk_size, blocks=config.blocks, activation=config.activation
    )


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_engine_factory(config: TrainConfig) -> EngineFactory | None:
    """The engine factory of the configured backend profile (None: the default exact engine).

    Backend problems (unknown profile, missing credentials, a circuit too large for the engine)
    are raised here, before any data is loaded.
    """
    if config.model != "qt" or config.backend == DEFAULT_BACKEND:
        return None
    from qfed_qiskit.profiles import engine_factory_for

    return engine_factory_for(config.backend, config=config)


def engine_job_ids(factory: EngineFactory | None) -> Callable[[], Sequence[str]] | None:
    """Reads the ids of every job ``factory``'s engines submitted (None: they submit none)."""
    if getattr(factory, "job_ids", None) is None:
        return None

    def ids() -> Sequence[str]:
        return list(getattr(factory, "job_ids", []) or [])

    return ids


def use_job_journal(factory: EngineFactory | None, folder: str | Path) -> None:
    """Let ``factory``'s engines keep their sampler results in ``folder`` (if it has engines
    that submit jobs and its profile keeps a journal); call it before building models."""
    use = getattr(factory, "use_journal", None)
    if callable(use):
        use(folder)


def journaled_engine_factory(config: TrainConfig) -> EngineFactory | None:
    """The backend's engine factory for a process that trains clients of the run in
    ``config.out``: its engines keep their sampler results in that run folder's job journal
    (``jobs/``; the server loop empties it with every checkpoint). None: statevector."""
    from qfed_qiskit.training.outputs import RunDirectory

    factory = resolve_engine_factory(config)
    if config.out:  # on another machine, a folder of that name there
        use_job_journal(factory, Path(config.out) / RunDirectory.JOBS)
    return factory


def close_engine_factory(factory: EngineFactory | None) -> None:
    """Close what the factory opened (an IBM Runtime batch or session); safe to call twice."""
    close = getattr(factory, "close", None)
    if callable(close):
        close()


def build_model(config: TrainConfig, *, engine_factory: EngineFactory | None = None) -> nn.Module:
    """The model to train: a :class:`QuantumTrainModel` or the plain :class:`TargetCNN`.

    Initial weights are drawn from torch's global RNG; seed it first (:func:`seed_all`).

    Args:
        config: Run settings (``model``, ``blocks``, ``chunk_size``, ``activation``, ``dtype``,
            ``generator``, ``mapping``, ``mapping_activation``).
        engine_factory: Builds the QNN engine from the circuit (default:
            exact statevector engine in ``config.dtype``). Ignored for the classical model.
    """
    if config.model == "small-cnn":
        return SmallCNN(activation=config.activation)
    target = TargetCNN(activation=config.activation)
    if config.model == "classical":
        return target
    if engine_factory is None:
        from qfed_qiskit.engines.statevector import statevector_factory

        engine_factory = statevector_factory(torch_dtype(config.dtype))
    return QuantumTrainModel(
        target=target,
        blocks=config.blocks,
        chunk_size=config.chunk_size,
        engine_factory=engine_factory,
        mapping_hidden=parse_mapping(config.mapping),
        mapping_activation=config.mapping_activation,
        generator=config.generator,
    )


def build_client_model(
    config: TrainConfig, *, engine_factory: EngineFactory | None = None
) -> nn.Module:
    """A client's scratch model, initialised like the server's first model (torch seeded with
    ``config.seed``) without moving the caller's torch RNG; every runtime builds clients so."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return build_model(config, engine_factory=engine_factory)


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
