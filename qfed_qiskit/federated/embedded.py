"""The embedded federated engine: FedAvg rounds in this process, checkpointed after every round.

Each round the server samples clients, sends them the global trainable parameters, runs each
client's :func:`~qfed_qiskit.federated.core.client_fit` in turn (in a worker thread, so a client
slower than ``round_timeout`` can be abandoned), validates the replies, averages the valid ones
(FedAvg, or DP-FedAvg with ``dp_clip``), evaluates on the test set, appends a line to
``metrics.jsonl`` and writes an atomic checkpoint. ``resume=True`` continues from that checkpoint
and ends with the same parameters as an uninterrupted run.

Isolation of abandoned clients: every client trains on a model taken from a pool, with its own
optimizer and a copy of its state; the server only ever uses what a client *returns*. A client
that times out is told to stop at its next step and its model is never handed out again, so a
thread still running cannot touch anything the server uses. A client whose reply is rejected (or
that fails, or times out) keeps its previous state, as if it had not been sampled that round.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.federated.checkpoint import (
    Checkpoint,
    capture_rng_state,
    checkpoint_path,
    load_checkpoint,
    restore_rng_state,
    resume_fingerprint,
    save_checkpoint,
)
from qfed_qiskit.federated.core import (
    Arrays,
    ClientFn,
    ClientState,
    ClientUpdate,
    aggregate_round,
    client_fit,
    client_steps_per_epoch,
    federated_summary,
    get_parameters,
    sample_clients,
    serialized_size,
    set_parameters,
    validate_update,
)
from qfed_qiskit.federated.faults import FaultPlan
from qfed_qiskit.models.quantum_train import EngineFactory
from qfed_qiskit.training.builders import build_model, seed_all
from qfed_qiskit.training.callbacks import NullCallback, TrainingCallback
from qfed_qiskit.training.centralized import save_model_outputs, summarize
from qfed_qiskit.training.loop import EvalResult, evaluate
from qfed_qiskit.training.outputs import RunDirectory, atomic_write_bytes

logger = logging.getLogger(__name__)

ABANDON_GRACE_S = 2.0
"""After a timeout, how long to wait for the client to notice its stop signal before moving on."""


def partition_dataset(data: TensorDataset, config: TrainConfig) -> list[TensorDataset]:
    """Split ``data`` into ``config.clients`` disjoint shards (``config.partition``, ``seed``).

    Raises:
        QFedInputError: If the partition spec is invalid or a shard would be empty.
    """
    from qfed_qiskit.data.partition import make_partition

    images, labels = data.tensors
    parts = make_partition(config.partition, labels.numpy(), config.clients, seed=config.seed)
    shards = []
    for cid, idx in enumerate(parts):
        if len(idx) == 0:
            raise QFedInputError(f"partition {config.partition!r}: client {cid} got no samples")
        index = torch.from_numpy(np.asarray(idx, dtype=np.int64))
        shards.append(TensorDataset(images[index], labels[index]))
    return shards


@dataclass(frozen=True)
class ClientOutcome:
    """What happened when one client was asked to train.

    Attributes:
        client_id: The client.
        update: Its reply (None if it failed or timed out).
        state: Its new local state (None if it failed or timed out).
        error: Why there is no reply (None if there is one).
        timed_out: Whether the client was abandoned after ``round_timeout``.
    """

    client_id: int
    update: ClientUpdate | None
    state: ClientState | None
    error: str | None = None
    timed_out: bool = False


def run_client(
    fn: Callable[[Callable[[], bool]], tuple[ClientUpdate, ClientState]],
    *,
    client_id: int,
    timeout: float | None,
) -> ClientOutcome:
    """Run ``fn(should_stop)`` in a daemon worker thread and wait at most ``timeout`` seconds.

    An exception in the client becomes ``error``; on timeout the client's stop signal is set (it
    stops at its next step) and the thread is left behind. ``KeyboardInterrupt`` and
    ``SystemExit`` (here or in the client) stop the client and propagate.
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
        return ClientOutcome(
            client_id, None, None, error=f"timed out after {timeout:g} s", timed_out=True
        )
    if "error" in box:
        exc = box["error"]
        if not isinstance(exc, Exception):
            raise exc
        return ClientOutcome(client_id, None, None, error=f"raised {type(exc).__name__}: {exc}")
    update, state = box["result"]
    return ClientOutcome(client_id, update, state)


class _ModelPool:
    """Scratch models for clients; a model lent to an abandoned client is never reused."""

    def __init__(self, build: Callable[[], nn.Module]) -> None:
        self._build = build
        self._free: list[nn.Module] = []

    def take(self) -> nn.Module:
        if self._free:
            return self._free.pop()
        with torch.random.fork_rng(devices=[]):  # building must not move the global RNG
            return self._build()

    def give_back(self, model: nn.Module) -> None:
        self._free.append(model)


def _write_history(run_dir: RunDirectory, history: list[dict[str, Any]]) -> None:
    payload = "".join(json.dumps(line, sort_keys=True) + "\n" for line in history)
    atomic_write_bytes(run_dir.path / RunDirectory.METRICS, payload.encode())


class _Server:
    """State and round logic of one embedded run (private; see :func:`run_federated`)."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        shards: list[TensorDataset],
        test: TensorDataset,
        run_dir: RunDirectory,
        model: nn.Module,
        pool: _ModelPool,
        fit: ClientFn,
        callback: TrainingCallback,
    ) -> None:
        self.config = config
        self.shards = shards
        self.test = test
        self.run_dir = run_dir
        self.model = model
        self.pool = pool
        self.fit = fit
        self.cb = callback
        self.global_arrays: Arrays = get_parameters(model)
        self.client_states: dict[int, ClientState] = {}
        self.history: list[dict[str, Any]] = []
        self.round = 0
        self.prior_wall = 0.0
        self.last_eval: EvalResult | None = None

    def restore(self, ckpt: Checkpoint) -> None:
        self.round = ckpt.round
        self.global_arrays = ckpt.global_arrays
        self.client_states = dict(ckpt.client_states)
        self.history = list(ckpt.server.get("history", []))
        self.prior_wall = float(ckpt.server.get("wall_time_s", 0.0))
        restore_rng_state(ckpt.rng)

    def _fit_one(self, cid: int, rnd: int) -> ClientOutcome:
        cfg = self.config
        shard = self.shards[cid]
        self.cb.on_phase_start(
            f"round {rnd}/{cfg.rounds} client {cid}",
            cfg.local_epochs * client_steps_per_epoch(cfg, len(shard)),
        )
        model = self.pool.take()
        state = self.client_states.get(cid)
        arrays = self.global_arrays

        def work(should_stop: Callable[[], bool]) -> tuple[ClientUpdate, ClientState]:
            return self.fit(
                model,
                arrays,
                shard,
                config=cfg,
                client_id=cid,
                state=state,
                server_round=rnd,
                callback=self.cb,
                should_stop=should_stop,
            )

        outcome = run_client(work, client_id=cid, timeout=cfg.round_timeout)
        if not outcome.timed_out:
            self.pool.give_back(model)
        return outcome

    def run_round(self, rnd: int, wall_before: float) -> dict[str, Any]:
        cfg = self.config
        start = time.perf_counter()
        sampled = sample_clients(
            cfg.clients,
            fraction=cfg.fraction_fit,
            min_clients=cfg.min_clients,
            seed=cfg.seed,
            server_round=rnd,
        )
        bytes_down = serialized_size(self.global_arrays) * len(sampled)
        bytes_up = 0
        accepted: list[ClientUpdate] = []
        new_states: dict[int, ClientState] = {}
        rejected: list[dict[str, Any]] = []
        steps = 0
        for cid in sampled:
            outcome = self._fit_one(cid, rnd)
            reason = outcome.error
            if outcome.update is not None:
                update = outcome.update
                bytes_up += serialized_size(update.arrays)
                steps += int(update.metrics.get("steps", 0))
                reason = validate_update(update, self.global_arrays, max_norm=cfg.max_update_norm)
                if reason is None and update.client_id != cid:
                    reason = f"reply names client {update.client_id}"
                if reason is None and update.num_samples != len(self.shards[cid]):
                    reason = (
                        f"reports {update.num_samples} samples, its shard has "
                        f"{len(self.shards[cid])}"
                    )
            if reason is not None:
                logger.warning("round %d: client %d rejected: %s", rnd, cid, reason)
                self.cb.on_message(f"round {rnd}: client {cid} rejected: {reason}")
                rejected.append({"client": cid, "reason": reason})
                continue
            assert outcome.update is not None and outcome.state is not None
            accepted.append(outcome.update)
            new_states[cid] = outcome.state
        self.global_arrays, record = aggregate_round(
            rnd=rnd,
            config=cfg,
            reference=self.global_arrays,
            sampled=sampled,
            accepted=accepted,
            rejected=rejected,
            bytes_down=bytes_down,
            bytes_up=bytes_up,
            steps=steps,
        )
        if record["status"] == "ok":
            self.client_states.update(new_states)
        else:
            self.cb.on_message(f"round {rnd} failed: {record['failure']}")
        set_parameters(self.model, self.global_arrays)
        result = evaluate(self.model, self.test)
        self.last_eval = result
        record["test_loss"] = result.loss
        record["test_accuracy"] = result.accuracy
        record["wall_time_s"] = time.perf_counter() - start
        record["run_time_s"] = wall_before + record["wall_time_s"]
        return record

    def checkpoint(self) -> None:
        save_checkpoint(
            self.run_dir.path,
            Checkpoint(
                round=self.round,
                fingerprint=resume_fingerprint(self.config),
                config=self.config.to_dict(),
                global_arrays=self.global_arrays,
                client_states=self.client_states,
                server={"history": self.history, "wall_time_s": self.wall_time()},
                rng=capture_rng_state(),
            ),
        )

    def wall_time(self) -> float:
        return float(self.history[-1]["run_time_s"]) if self.history else self.prior_wall


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
    faults: FaultPlan | None = None,
) -> dict[str, Any]:
    """Federated training of ``config.model`` with ``config.clients`` in-process clients.

    Writes one ``metrics.jsonl`` line per round (``round``, ``status``, ``test_accuracy``,
    ``test_loss``, ``train_loss`` = sample-weighted mean client loss, ``clients_sampled``,
    ``accepted``, ``client_lr`` (their learning rates after the round), ``clients_ok``,
    ``rejected`` = ``[{"client", "reason"}]``, ``clients_rejected``,
    ``bytes_down``, ``bytes_up``, ``steps``, ``wall_time_s``, ``run_time_s``), a checkpoint after
    every round (``checkpoint.pt``), and at the end ``summary.json``, ``model.pt`` and ``cnn.pt``.

    ``round_timeout`` bounds each client's time in a round (clients run one after another).

    Args:
        config: Run settings (``clients > 1``).
        train: Training set, split into client shards by ``config.partition``.
        test: Test set for the server's evaluation after every round.
        run_dir: Output folder.
        engine_factory: QNN engine of the backend profile (None: exact statevector).
        callback: Progress events (one phase per client per round; ``on_phase_end`` per round).
        resume: Continue from the checkpoint in ``run_dir`` (same settings required).
        client_fn: Replaces :func:`~qfed_qiskit.federated.core.client_fit` (tests).
        faults: Makes chosen clients misbehave (tests; applied on top of ``client_fn``).

    Returns:
        The summary (also written to ``summary.json``).

    Raises:
        QFedInputError: On contradictory settings, or a missing or mismatched checkpoint.
    """
    if not config.federated:
        raise QFedInputError(f"clients={config.clients}: federated training needs clients >= 2")
    if config.dp_noise > 0 and config.dp_clip is None:
        raise QFedInputError(f"dp_noise={config.dp_noise} needs dp_clip (the clipping norm C)")
    cb = callback or NullCallback()
    fit: ClientFn = client_fn or client_fit
    if faults is not None:
        fit = faults.wrap(fit)
    ckpt = load_checkpoint(run_dir.path, config=config) if resume else None
    seed_all(config.seed)
    model = build_model(config, engine_factory=engine_factory)
    shards = partition_dataset(train, config)
    server = _Server(
        config,
        shards=shards,
        test=test,
        run_dir=run_dir,
        model=model,
        pool=_ModelPool(lambda: build_model(config, engine_factory=engine_factory)),
        fit=fit,
        callback=cb,
    )
    if ckpt is not None:
        server.restore(ckpt)
        _write_history(run_dir, server.history)
        cb.on_message(f"resuming {run_dir.path} after round {ckpt.round}")
        if ckpt.round > config.rounds:
            logger.warning("checkpoint is at round %d > rounds=%d", ckpt.round, config.rounds)
    else:
        checkpoint_path(run_dir.path).unlink(missing_ok=True)
        run_dir.reset_metrics()
    cb.on_message(
        f"federated: {config.clients} clients, shards "
        f"{[len(s) for s in shards]}, {len(server.global_arrays)} arrays, "
        f"{serialized_size(server.global_arrays):,} bytes per model"
    )
    session_start = time.perf_counter()
    for rnd in range(server.round + 1, config.rounds + 1):
        wall_before = server.prior_wall + (time.perf_counter() - session_start)
        record = server.run_round(rnd, wall_before)
        if ckpt is not None and rnd == ckpt.round + 1:
            record["resumed_after"] = ckpt.round
        server.history.append(record)
        server.round = rnd
        run_dir.append_metrics(record)
        server.checkpoint()
        logger.info("round %d: test accuracy %.4f", rnd, record["test_accuracy"])
        cb.on_phase_end(f"round {rnd}/{config.rounds}", record)
    set_parameters(model, server.global_arrays)
    result = server.last_eval or evaluate(model, test)
    save_model_outputs(run_dir, model)
    history = server.history
    summary = summarize(
        model,
        config,
        result=result,
        wall_time_s=server.prior_wall + (time.perf_counter() - session_start),
        steps=sum(int(r.get("steps", 0)) for r in history),
        extra=federated_summary(
            config,
            history=history,
            shard_sizes=[len(s) for s in shards],
            global_arrays=server.global_arrays,
            runtime="embedded",
            resumed=resume,
        ),
    )
    run_dir.write_summary(summary)
    return summary
