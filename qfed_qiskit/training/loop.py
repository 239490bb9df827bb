"""The local training loop and evaluation, shared by centralized and federated training."""

from __future__ import annotations

import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import TensorDataset

from qfed_qiskit.training.callbacks import NullCallback, TrainingCallback


@dataclass(frozen=True)
class EpochResult:
    """What one local epoch did."""

    loss: float
    accuracy: float
    steps: int
    samples: int


@dataclass(frozen=True)
class EvalResult:
    """Loss and accuracy on a data set."""

    loss: float
    accuracy: float
    samples: int


def steps_per_epoch(num_samples: int, batch_size: int, max_steps: int | None = None) -> int:
    """Optimizer steps of one epoch over ``num_samples`` (the last batch may be smaller)."""
    steps = -(-num_samples // batch_size)
    return steps if max_steps is None else min(steps, max_steps)


def train_epoch(
    model: nn.Module,
    data: TensorDataset,
    optimizer: torch.optim.Optimizer,
    *,
    batch_size: int,
    generator: torch.Generator,
    max_steps: int | None = None,
    callback: TrainingCallback | None = None,
) -> EpochResult:
    """One pass over ``data`` in a random order drawn from ``generator``.

    Args:
        model: Module mapping images to logits.
        data: ``TensorDataset(images, labels)``.
        optimizer: Optimizer over the model's trainable parameters.
        batch_size: Samples per step (the last batch may be smaller).
        generator: Source of the shuffling order (seeded by the caller for reproducibility).
        max_steps: Stop after this many steps (None: the whole epoch).
        callback: Receives one ``on_step`` per step.

    Returns:
        Mean loss and accuracy over the samples seen, steps and samples.
    """
    cb = callback or NullCallback()
    images, labels = data.tensors
    order = torch.randperm(images.shape[0], generator=generator)
    steps_total = steps_per_epoch(images.shape[0], batch_size, max_steps)
    model.train()
    loss_sum = 0.0
    correct = 0
    seen = 0
    for step in range(steps_total):
        idx = order[step * batch_size : (step + 1) * batch_size]
        x, y = images[idx], labels[idx]
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        value = float(loss.detach())
        loss_sum += value * y.shape[0]
        correct += int((logits.detach().argmax(1) == y).sum())
        seen += int(y.shape[0])
        cb.on_step(value)
    return EpochResult(
        loss=loss_sum / max(seen, 1),
        accuracy=correct / max(seen, 1),
        steps=steps_total,
        samples=seen,
    )


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorDataset, *, batch_size: int = 1000) -> EvalResult:
    """Mean cross-entropy and accuracy of ``model`` on ``data``.

    A model that generates its weights (it has ``to_classical()``) generates them once and the
    plain classical model is evaluated, so the QNN runs once per evaluation, not once per batch.
    """
    to_classical = getattr(model, "to_classical", None)
    module: nn.Module = to_classical() if callable(to_classical) else model
    was_training = module.training
    module.eval()
    images, labels = data.tensors
    loss_sum = 0.0
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size]
        y = labels[start : start + batch_size]
        logits = module(x)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    module.train(was_training)
    n = int(images.shape[0])
    return EvalResult(loss=loss_sum / max(n, 1), accuracy=correct / max(n, 1), samples=n)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads in this thread, then restore them.

    Torch's OpenMP thread count belongs to the calling thread, so clients trained side by side in
    threads of one process each keep their own.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (a run's ``peak_rss_mb``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
