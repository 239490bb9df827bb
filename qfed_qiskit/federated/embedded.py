"""The embedded runtime: the server loop's clients run in this process, one after another.

:class:`EmbeddedTransport` runs each task's :func:`~qfed_qiskit.federated.core.client_fit` in a
worker thread, so a client slower than ``round_timeout`` can be abandoned; :func:`run_federated`
splits the data, builds the models and hands both to
:func:`~qfed_qiskit.federated.server.run_server_loop`, which owns the rounds (validation,
aggregation, evaluation, metrics, checkpoints, resume).

Isolation of abandoned clients: every client trains on a model taken from a pool, with its own
optimizer and a copy of its state; the server only ever uses what a client *returns*. A client
that times out is told to stop at its next step and its model is never handed out again, so a
thread still running cannot touch anything the server uses.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.federated.core import (
    ClientFn,
    ClientState,
    ClientUpdate,
    client_fit,
    client_steps_per_epoch,
)
from qfed_qiskit.federated.server import run_server_loop
from qfed_qiskit.federated.transport import FitReply, FitTask, failure_reply
from qfed_qiskit.models.quantum_train import EngineFactory
from qfed_qiskit.training.builders import (
    build_client_model,
    build_model,
    close_engine_factory,
    engine_job_ids,
    seed_all,
    use_job_journal,
)
from qfed_qiskit.training.callbacks import NullCallback, TrainingCallback
from qfed_qiskit.training.outputs import RunDirectory

logger = logging.getLogger(__name__)

ABANDON_GRACE_S = 2.0
"""After a timeout, how long to wait for the client to notice its stop signal before moving on."""


def partition_dataset(data: TensorDataset, config: TrainConfig) -> list[TensorDataset]:
    """Split ``data`` into ``config.clients`` disjoint shards (``config.partition``, ``seed``).

    Raises:
        QFedInputError: If the partition spec is invalid or a shard would be empty.
    """
    from qfed_qiskit.data.partition import client_partition

    images, labels = data.tensors
    parts = client_partition(config.partition, labels.numpy(), config.clients, seed=config.seed)
    return [
        TensorDataset(images[index], labels[index])
        for index in (torch.from_numpy(np.asarray(idx, dtype=np.int64)) for idx in parts)
    ]


def run_client(
    fn: Callable[[Callable[[], bool]], tuple[ClientUpdate, ClientState]],
    *,
    client_id: int,
    timeout: float | None,
) -> tuple[FitReply, bool]:
    """Run ``fn(should_stop)`` in a daemon worker thread and wait at most ``timeout`` seconds.

    An exception in the client becomes the reply's ``error`` (``fatal`` when the backend stayed
    unavailable); on timeout the client's stop signal is set (it stops at its next step) and the
    thread is left behind. ``KeyboardInterrupt`` and ``SystemExit`` (here or in the client) stop
    the client and propagate.

    Returns:
        The reply, and whether the client was abandoned (timed out).
    """
    stop = threading.Event()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn(stop.is_set)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"qfed-client-{client_id}", daemon=True)
    thread.start()
    try:
        thread.join(timeout)
    except BaseException:
        stop.set()
        raise
    if thread.is_alive():
        stop.set()
        thread.join(min(timeout or 0.0, ABANDON_GRACE_S))  # let it stop at its next step
        return FitReply(client_id, error=f"timed out after {timeout:g} s"), True
    if "error" in box:
        exc = box["error"]
        if not isinstance(exc, Exception):
            raise exc
        return failure_reply(client_id, exc), False
    update, state = box["result"]
    return FitReply(client_id, update=update, state=state), False


class _ModelPool:
    """Scratch models for clients; a model lent to an abandoned client is never reused."""

    def __init__(self, build: Callable[[], nn.Module]) -> None:
        self._build = build
        self._free: list[nn.Module] = []

    def take(self) -> nn.Module:
        if self._free:
            return self._free.pop()
        return self._build()

    def give_back(self, model: nn.Module) -> None:
        self._free.append(model)


class EmbeddedTransport:
    """Runs each task's client in this process, one after another (``round_timeout`` per client).

    Args:
        config: Run settings.
        shards: Every client's data.
        build_model: Builds a client's scratch model.
        client_fn: The client step (tests inject faults by wrapping it).
        callback: Progress: one phase per client and round, one step per optimizer step.
        job_ids: Ids of every job the clients' engines submitted so far (None: no jobs).
    """

    name = "embedded"
    concurrent = False

    def __init__(
        self,
        config: TrainConfig,
        *,
        shards: Sequence[TensorDataset],
        build_model: Callable[[], nn.Module],
        client_fn: ClientFn = client_fit,
        callback: TrainingCallback | None = None,
        job_ids: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        self.config = config
        self.shards = list(shards)
        self.pool = _ModelPool(build_model)
        self.client_fn = client_fn
        self.cb = callback or NullCallback()
        self._job_ids = job_ids

    def fit(self, tasks: Sequence[FitTask], *, timeout: float | None) -> Iterator[FitReply]:
        """Train the tasks' clients in turn, yielding each reply as soon as it is there."""
        for task in tasks:
            yield self._fit_one(task, timeout)

    def _fit_one(self, task: FitTask, timeout: float | None) -> FitReply:
        cfg = self.config
        cid, rnd = task.client_id, task.server_round
        shard = self.shards[cid]
        self.cb.on_phase_start(
            f"round {rnd}/{cfg.rounds} client {cid}",
            cfg.local_epochs * client_steps_per_epoch(cfg, len(shard)),
        )
        jobs_before = len(self._job_ids()) if self._job_ids is not None else 0
        model = self.pool.take()

        def work(should_stop: Callable[[], bool]) -> tuple[ClientUpdate, ClientState]:
            return self.client_fn(
                model,
                task.arrays,
                shard,
                config=cfg,
                client_id=cid,
                state=task.state,
                server_round=rnd,
                callback=self.cb,
                should_stop=should_stop,
            )

        reply, abandoned = run_client(work, client_id=cid, timeout=timeout)
        if not abandoned:
            self.pool.give_back(model)
        if self._job_ids is not None:
            reply = dataclasses.replace(reply, job_ids=tuple(self._job_ids()[jobs_before:]))
        return reply


def run_federated(
    config: TrainConfig,
    *,
    train: TensorDataset,
    test: TensorDataset,
    run_dir: RunDirectory,
    engine_factory: EngineFactory | None = None,
    callback: TrainingCallback | None = None,
    resume: bool = False,
    client_fn: ClientFn | None = None,
) -> dict[str, Any]:
    """Federated training of ``config.model`` with ``config.clients`` clients on this machine.

    Writes what :func:`~qfed_qiskit.federated.server.run_server_loop` writes; ``round_timeout``
    bounds each client's time in a round. With one worker
    (:func:`~qfed_qiskit.federated.workers.worker_count`) the clients train in this process, one
    after another, on ``engine_factory``'s engines; with more, in worker processes side by side
    (:class:`~qfed_qiskit.federated.workers.WorkerTransport`), each with the engine factory the
    config's backend gives, and with the same results.

    Args:
        config: Run settings (``clients > 1``).
        train: Training set, split into client shards by ``config.partition``.
        test: Test set for the server's evaluation after every round.
        run_dir: Output folder.
        engine_factory: QNN engine of the backend profile (None: exact statevector).
        callback: Progress events (one phase per client per round, or per round with workers;
            ``on_phase_end`` per round).
        resume: Continue from the checkpoint in ``run_dir`` (same settings required).
        client_fn: Replaces :func:`~qfed_qiskit.federated.core.client_fit` (tests; it must
            pickle when clients run in worker processes).

    Returns:
        The summary (also written to ``summary.json``).

    Raises:
        QFedInputError: On contradictory settings, or a missing or mismatched checkpoint.
    """
    from qfed_qiskit.federated.workers import WorkerTransport, worker_count

    workers = worker_count(config, remote=bool(getattr(engine_factory, "remote", False)))
    use_job_journal(engine_factory, run_dir.jobs)
    seed_all(config.seed)
    model = build_model(config, engine_factory=engine_factory)
    shards = partition_dataset(train, config)
    job_ids = engine_job_ids(engine_factory)
    transport: EmbeddedTransport | WorkerTransport
    if workers > 1:
        transport = WorkerTransport(
            config,
            shards=shards,
            workers=workers,
            jobs_dir=run_dir.jobs,
            client_fn=client_fn or client_fit,
            callback=callback,
        )
    else:
        transport = EmbeddedTransport(
            config,
            shards=shards,
            build_model=lambda: build_client_model(config, engine_factory=engine_factory),
            client_fn=client_fn or client_fit,
            callback=callback,
            job_ids=job_ids,
        )

    def close() -> None:
        try:
            if isinstance(transport, WorkerTransport):
                transport.close()
        finally:
            close_engine_factory(engine_factory)

    return run_server_loop(
        config,
        transport=transport,
        model=model,
        test=test,
        shard_sizes=[len(s) for s in shards],
        run_dir=run_dir,
        callback=callback,
        resume=resume,
        # One factory serves the server and the in-process clients: the loop keeps each id once.
        server_job_ids=job_ids,
        close=close,
        summary_extra={"workers": workers},
    )
