"""Run a training job described by a :class:`~qfed_qiskit.config.TrainConfig`.

This is the one place that wires data, backend profile and training mode together; the CLI only
parses options and calls :func:`run_training`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.models.quantum_train import EngineFactory
from qfed_qiskit.training.callbacks import NullCallback, TrainingCallback
from qfed_qiskit.training.outputs import RunDirectory

logger = logging.getLogger(__name__)


def default_out_dir(config: TrainConfig) -> Path:
    """``runs/<model>-<backend>-<timestamp>`` under the current folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.model}-{config.backend}-{stamp}"


def resolve_engine_factory(config: TrainConfig) -> EngineFactory | None:
    """Engine factory of the configured backend profile (None: exact statevector default)."""
    if config.model != "qt":
        return None
    from qfed_qiskit.profiles import engine_factory_for

    return engine_factory_for(config.backend, config=config)


def run_training(
    config: TrainConfig, *, callback: TrainingCallback | None = None
) -> tuple[dict[str, Any], RunDirectory]:
    """Load the data, build the engine and train (centralized or federated).

    Backend problems (unknown profile, missing credentials) are raised before any data is loaded.

    Returns:
        The summary and the run directory.
    """
    from qfed_qiskit.data import load_fashion_mnist, to_tensor_dataset

    cb = callback or NullCallback()
    engine_factory = resolve_engine_factory(config)
    data = load_fashion_mnist(config.data_dir)
    cb.on_message(f"data: {data.source}")
    train = to_tensor_dataset(data.train_images, data.train_labels)
    test = to_tensor_dataset(data.test_images, data.test_labels)
    run_dir = RunDirectory(config.out or default_out_dir(config))
    if config.federated:
        from qfed_qiskit.federated.embedded import run_federated

        summary = run_federated(
            config,
            train=train,
            test=test,
            run_dir=run_dir,
            engine_factory=engine_factory,
            callback=cb,
        )
    else:
        from qfed_qiskit.training.centralized import run_centralized

        summary = run_centralized(
            config,
            train=train,
            test=test,
            run_dir=run_dir,
            engine_factory=engine_factory,
            callback=cb,
        )
    return summary, run_dir
