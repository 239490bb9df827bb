"""Run a training job described by a :class:`~qfed_qiskit.config.TrainConfig`.

This is the one place that wires data, backend profile and training mode together; the CLI only
parses options and calls :func:`run_training`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from qfed_qiskit.config import TrainConfig, load_config, read_toml
from qfed_qiskit.exceptions import QFedInputError
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


def load_run_config(
    config_path: str | Path | None,
    overrides: Mapping[str, Any] | None = None,
    *,
    resume: str | Path | None = None,
) -> TrainConfig:
    """The run's config: the TOML file plus flags, or, with ``resume``, the checkpoint's config.

    When resuming, given values may not change the result (see
    :func:`qfed_qiskit.federated.checkpoint.resume_config`); ``rounds`` may grow.
    """
    if resume is None:
        return load_config(config_path, overrides)
    from qfed_qiskit.federated.checkpoint import resume_config

    file_values = read_toml(config_path) if config_path is not None else None
    return resume_config(resume, overrides, file_values=file_values)


def run_training(
    config: TrainConfig, *, callback: TrainingCallback | None = None, resume: bool = False
) -> tuple[dict[str, Any], RunDirectory]:
    """Load the data, build the engine and train (centralized or federated).

    Backend problems (unknown profile, missing credentials) are raised before any data is loaded.
    ``resume`` continues the federated run in ``config.out`` from its checkpoint.

    Returns:
        The summary and the run directory.
    """
    if resume and not (config.federated and config.out):
        raise QFedInputError("--resume needs a federated run directory (clients > 1)")
    from qfed_qiskit.data import load_fashion_mnist, to_tensor_dataset

    cb = callback or NullCallback()
    if config.runtime == "flower":  # Flower's Simulation Runtime: its apps build engines, load data
        from qfed_qiskit.runtimes.flower.simulation import run_flower_simulation

        return run_flower_simulation(config, callback=cb, resume=resume)
    engine_factory = resolve_engine_factory(config)
    data = load_fashion_mnist(config.data_dir)
    cb.on_message(f"data: {data.source}")
    train = to_tensor_dataset(data.train_images, data.train_labels)
    test = to_tensor_dataset(data.test_images, data.test_labels)
    run_dir = RunDirectory(
        config.out or default_out_dir(config), annotate=_new_job_ids(engine_factory)
    )
    try:
        summary = _train(config, train, test, run_dir, engine_factory, cb, resume)
    finally:
        close = getattr(engine_factory, "close", None)
        if callable(close):  # ends an IBM Runtime batch/session; safe to call twice
            close()
    job_ids = list(getattr(engine_factory, "job_ids", []) or [])
    if job_ids:  # hardware/runtime job ids, for tracing a run back to its jobs
        summary["job_ids"] = job_ids
        run_dir.write_summary(summary)
    return summary, run_dir


def _new_job_ids(engine_factory: EngineFactory | None) -> Callable[[], dict[str, Any]] | None:
    """For metrics lines: the ids of the jobs the factory's engines submitted since the last line.

    Lines of runs whose engines submit no jobs (exact, density-matrix) get no ``job_ids`` key.
    """
    if getattr(engine_factory, "job_ids", None) is None:
        return None
    seen = 0

    def annotate() -> dict[str, Any]:
        nonlocal seen
        ids = list(getattr(engine_factory, "job_ids", []) or [])
        new, seen = ids[seen:], len(ids)
        return {"job_ids": new} if new else {}

    return annotate


def _train(
    config: TrainConfig,
    train: Any,
    test: Any,
    run_dir: RunDirectory,
    engine_factory: EngineFactory | None,
    cb: TrainingCallback,
    resume: bool,
) -> dict[str, Any]:
    """Centralized or federated training, by ``config.clients``."""
    if config.federated:
        from qfed_qiskit.federated.embedded import run_federated

        return run_federated(
            config,
            train=train,
            test=test,
            run_dir=run_dir,
            engine_factory=engine_factory,
            callback=cb,
            resume=resume,
        )
    from qfed_qiskit.training.centralized import run_centralized

    return run_centralized(
        config,
        train=train,
        test=test,
        run_dir=run_dir,
        engine_factory=engine_factory,
        callback=cb,
    )
