"""Worker processes: how many, what they refuse, and the progress they report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.federated import run_federated
from qfed_qiskit.federated.workers import WorkerTransport, describe_exit, worker_count
from qfed_qiskit.training import RunDirectory

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _config(**values: Any) -> TrainConfig:
    return TrainConfig(**{"model": "classical", "clients": 4, **values})


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, min(CORES, 4)),
        ({"workers": 1}, 1),
        ({"workers": 3}, 3),
        ({"workers": 8}, 4),  # never more than the clients per round
        ({"workers": 8, "fraction_fit": 0.5}, 2),
        ({"clients": 1, "workers": 2}, 1),  # centralized
    ],
)
def test_worker_count(values: dict[str, Any], expected: int) -> None:
    """The workers setting, capped by the clients per round; one per core by default."""
    assert worker_count(_config(**values)) == expected


def test_remote_backend_keeps_one_worker() -> None:
    """Runs on IBM Quantum train in this process; asking for more workers is one clear error."""
    assert worker_count(_config(), remote=True) == 1
    with pytest.raises(QFedInputError, match=r"workers=2: backend .* runs on IBM Quantum"):
        worker_count(_config(workers=2), remote=True)


def test_client_fn_that_cannot_pickle_is_refused() -> None:
    """A client function workers cannot receive is refused up front, with what to do instead."""
    shards = [TensorDataset(torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long))] * 2
    with pytest.raises(QFedInputError, match=r"cannot be sent to worker processes.*workers=1"):
        WorkerTransport(
            _config(clients=2),
            shards=shards,
            workers=2,
            jobs_dir="jobs",
            client_fn=lambda *a, **k: None,  # type: ignore[arg-type,return-value]
        )


def test_describe_exit() -> None:
    """Exit codes and signals in words."""
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(1) == "exit code 1"


class _Steps:
    def __init__(self) -> None:
        self.steps = 0
        self.phases: list[tuple[str, int]] = []

    def on_phase_start(self, name: str, total_steps: int) -> None:
        self.phases.append((name, total_steps))

    def on_step(self, loss: float) -> None:
        self.steps += 1

    def on_phase_end(self, name: str, metrics: dict[str, Any]) -> None:
        pass

    def on_message(self, text: str) -> None:
        pass


def test_progress_counts_every_step_of_every_worker(tmp_path: Path) -> None:
    """One phase per round with the steps of all its clients; each step reported once."""
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(96, 1, 28, 28, generator=g), torch.arange(96) % 10)
    config = _config(
        clients=3, rounds=2, local_epochs=1, batch_size=16, workers=2, out=str(tmp_path)
    )
    progress = _Steps()
    summary = run_federated(
        config, train=data, test=data, run_dir=RunDirectory(tmp_path), callback=progress
    )
    assert summary["workers"] == 2
    assert [total for _, total in progress.phases] == [6, 6]  # 3 clients x 32 samples / 16
    assert progress.phases[0][0] == "round 1/2 clients [0, 1, 2] on 2 workers"
    assert progress.steps == summary["steps"] == 12
