"""Run a training job described by a :class:`~qfed_qiskit.config.TrainConfig`.

This is the one place that wires data, backend profile and training mode together; the CLI only
parses options and calls :func:`run_training`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qfed_qiskit.config import TrainConfig, load_config, read_toml
from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.training.builders import close_engine_factory, resolve_engine_factory
from qfed_qiskit.training.callbacks import NullCallback, TrainingCallback
from qfed_qiskit.training.outputs import RunDirectory, check_run_folder, default_out_dir

logger = logging.getLogger(__name__)


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
    config: TrainConfig,
    *,
    callback: TrainingCallback | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> tuple[dict[str, Any], RunDirectory]:
    """Load the data, build the engine and train (centralized or federated).

    Problems with the output folder or the backend (unknown profile, missing credentials) are
    raised before any data is loaded. ``resume`` continues the federated run in ``config.out``
    from its checkpoint; without it, a folder that already holds a run is refused unless
    ``overwrite``.

    Returns:
        The summary and the run directory.
    """
    if resume and not (config.federated and config.out):
        raise QFedInputError("--resume needs a federated run directory (clients > 1)")
    if resume and overwrite:
        raise QFedInputError("--resume and --overwrite contradict each other; give one of them")
    out = Path(config.out) if config.out else default_out_dir(config.model, config.backend)
    check_run_folder(out, resume=resume, overwrite=overwrite)
    cb = callback or NullCallback()
    if config.workers is not None and (config.runtime == "flower" or not config.federated):
        ignored = f"workers={config.workers} is ignored: it sets the worker processes of"
        ignored += " federated runs on the embedded runtime"
        logger.warning(ignored)
        cb.on_message(ignored)
    if config.runtime == "flower" and config.federated:
        # Flower's Simulation Runtime: its apps build the engines and load the data.
        from qfed_qiskit.runtimes.flower.simulation import run_flower_simulation

        return run_flower_simulation(
            config, out=out, callback=cb, resume=resume, overwrite=overwrite
        )
    engine_factory = resolve_engine_factory(config)
    try:
        from qfed_qiskit.data import load_fashion_mnist, to_tensor_dataset

        data = load_fashion_mnist(config.data_dir)
        cb.on_message(f"data: {data.source}")
        train = to_tensor_dataset(data.train_images, data.train_labels)
        test = to_tensor_dataset(data.test_images, data.test_labels)
        run_dir = RunDirectory.prepare(out, resume=resume, overwrite=overwrite)
        common: dict[str, Any] = {
            "train": train,
            "test": test,
            "run_dir": run_dir,
            "engine_factory": engine_factory,
            "callback": cb,
        }
        if config.federated:
            from qfed_qiskit.federated.embedded import run_federated

            summary = run_federated(config, resume=resume, **common)
        else:
            from qfed_qiskit.training.centralized import run_centralized

            summary = run_centralized(config, **common)
    finally:
        close_engine_factory(engine_factory)
    return summary, run_dir
