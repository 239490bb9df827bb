"""Centralized training: one model, ``epochs`` epochs over the whole training set."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch.utils.data import TensorDataset

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.models.cnn import count_parameters
from qfed_qiskit.models.quantum_train import EngineFactory
from qfed_qiskit.provenance import git_commit
from qfed_qiskit.training.builders import (
    build_model,
    build_optimizer,
    build_scheduler,
    engine_job_ids,
    seed_all,
)
from qfed_qiskit.training.callbacks import NullCallback, TrainingCallback
from qfed_qiskit.training.loop import (
    EvalResult,
    evaluate,
    peak_rss_mb,
    steps_per_epoch,
    train_epoch,
)
from qfed_qiskit.training.outputs import NewJobIds, RunDirectory

logger = logging.getLogger(__name__)


def target_param_count(model: torch.nn.Module) -> int:
    """Number of weights of the classical model that ``model`` is or generates."""
    sizing = getattr(model, "sizing", None)
    return int(sizing.target_params) if sizing is not None else count_parameters(model)


def save_model_outputs(run_dir: RunDirectory, model: torch.nn.Module) -> None:
    """Save ``model.pt`` (the trainable model's state dict) and ``cnn.pt`` (the classical CNN)."""
    run_dir.save_state(RunDirectory.MODEL, model.state_dict())
    to_classical = getattr(model, "generated_state_dict", None)
    cnn_state = to_classical() if callable(to_classical) else model.state_dict()
    run_dir.save_state(RunDirectory.CNN, cnn_state)


def summarize(
    model: torch.nn.Module,
    config: TrainConfig,
    *,
    result: EvalResult,
    wall_time_s: float,
    steps: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` keys shared by centralized and federated runs, plus ``extra``.

    Keys: ``test_accuracy``, ``test_loss``, ``trainable_params``, ``target_params``,
    ``wall_time_s``, ``steps``, ``peak_rss_mb`` (this process's peak memory), ``git_commit``
    (:func:`~qfed_qiskit.provenance.git_commit`), ``model``,
    ``backend`` (None for the classical model), ``config`` and, for a QT model, ``engine``.
    """
    summary: dict[str, Any] = {
        "test_accuracy": result.accuracy,
        "test_loss": result.loss,
        "trainable_params": count_parameters(model),
        "target_params": target_param_count(model),
        "wall_time_s": wall_time_s,
        "steps": steps,
        "peak_rss_mb": peak_rss_mb(),
        "git_commit": git_commit(),
        "model": config.model,
        "backend": config.backend if config.model == "qt" else None,
        "config": config.to_dict(),
    }
    engine = getattr(model, "engine", None)
    if engine is not None:
        summary["engine"] = engine.describe()
    summary.update(extra or {})
    return summary


def run_centralized(
    config: TrainConfig,
    *,
    train: TensorDataset,
    test: TensorDataset,
    run_dir: RunDirectory,
    engine_factory: EngineFactory | None = None,
    callback: TrainingCallback | None = None,
    extra_summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``config.model`` on ``train`` for ``config.epochs`` epochs, evaluating on ``test``.

    Writes one line per epoch to ``metrics.jsonl`` (with ``job_ids``, the jobs the epoch
    submitted, on backends that submit jobs), then ``summary.json``, ``model.pt`` (the trainable
    parameters) and ``cnn.pt`` (the plain classical state dict) in ``run_dir``.

    Returns:
        The summary (also written to ``summary.json``).
    """
    cb = callback or NullCallback()
    seed_all(config.seed)
    model = build_model(config, engine_factory=engine_factory)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    generator = torch.Generator().manual_seed(config.seed)
    new_job_ids = NewJobIds(engine_job_ids(engine_factory))
    all_job_ids: list[str] = []
    run_dir.reset_metrics()
    start = time.perf_counter()
    steps = 0
    per_epoch = steps_per_epoch(len(train), config.batch_size, config.max_steps_per_epoch)
    result = None
    for epoch in range(1, config.epochs + 1):
        cb.on_phase_start(f"epoch {epoch}/{config.epochs}", per_epoch)
        epoch_start = time.perf_counter()
        epoch_result = train_epoch(
            model,
            train,
            optimizer,
            batch_size=config.batch_size,
            generator=generator,
            max_steps=config.max_steps_per_epoch,
            callback=cb,
        )
        scheduler.step(epoch_result.loss)
        steps += epoch_result.steps
        result = evaluate(model, test)
        record = {
            "epoch": epoch,
            "train_loss": epoch_result.loss,
            "train_accuracy": epoch_result.accuracy,
            "test_loss": result.loss,
            "test_accuracy": result.accuracy,
            "lr": optimizer.param_groups[0]["lr"],
            "steps": epoch_result.steps,
            "epoch_time_s": time.perf_counter() - epoch_start,
        }
        job_ids = new_job_ids()
        if job_ids:  # runs whose engines submit no jobs (exact, density matrix) get no key
            record["job_ids"] = job_ids
            all_job_ids.extend(job_ids)
        run_dir.append_metrics(record)
        logger.info("epoch %d: test accuracy %.4f", epoch, result.accuracy)
        cb.on_phase_end(f"epoch {epoch}/{config.epochs}", record)
    assert result is not None  # epochs >= 1 is validated by the config
    wall = time.perf_counter() - start
    save_model_outputs(run_dir, model)
    summary = summarize(
        model,
        config,
        result=result,
        wall_time_s=wall,
        steps=steps,
        extra={"epochs": config.epochs, **(extra_summary or {})},
    )
    if all_job_ids:  # hardware/runtime job ids, for tracing a run back to its jobs
        summary["job_ids"] = all_job_ids
    run_dir.write_summary(summary)
    return summary
