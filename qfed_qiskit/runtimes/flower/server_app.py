"""The Flower ServerApp: QFed rounds over a Flower Grid with the core's validation and FedAvg.

Each round mirrors the embedded engine (:mod:`qfed_qiskit.federated.embedded`): the same seeded
client sampling, the same initial model, replies validated with
:func:`~qfed_qiskit.federated.core.validate_update` and averaged in client-id order with
:func:`~qfed_qiskit.federated.core.fedavg` (or DP-FedAvg), central evaluation on the test set, and
the same ``metrics.jsonl`` lines and ``summary.json`` keys (``runtime = "flower"``). What differs:
clients train in parallel on their SuperNodes, ``round_timeout`` bounds the whole round, and there
are no checkpoints (``--resume`` is an embedded-engine feature).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flwr.app import Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp
from torch import nn

from qfed_qiskit.exceptions import QFedError, QFedInputError
from qfed_qiskit.federated.core import (
    Arrays,
    ClientUpdate,
    aggregate_round,
    federated_summary,
    get_parameters,
    sample_clients,
    serialized_size,
    set_parameters,
    validate_update,
)
from qfed_qiskit.runtimes.flower import conversions as conv
from qfed_qiskit.runtimes.flower.task import (
    AppSettings,
    global_model,
    load_data,
    settings_from_run_config,
)
from qfed_qiskit.training.callbacks import NullCallback, TrainingCallback
from qfed_qiskit.training.loop import EvalResult, evaluate
from qfed_qiskit.training.outputs import RunDirectory

logger = logging.getLogger(__name__)

NODE_WAIT_S = 300.0
"""How long the server waits for ``clients`` SuperNodes to connect and answer."""


class FlowerLogCallback:
    """Progress as lines on Flower's logger (what ``flwr run --stream`` and ``flwr log`` show)."""

    def __init__(self) -> None:
        self._log = logging.getLogger("flwr")

    def on_phase_start(self, name: str, total_steps: int) -> None:
        """Ignore."""

    def on_step(self, loss: float) -> None:
        """Ignore."""

    def on_phase_end(self, name: str, metrics: dict[str, Any]) -> None:
        """Log a round's headline numbers."""
        self._log.info(
            "[qfed] %s: test accuracy %.4f, test loss %.4f, clients ok %s, rejected %s",
            name,
            metrics.get("test_accuracy", float("nan")),
            metrics.get("test_loss", float("nan")),
            metrics.get("clients_ok"),
            metrics.get("clients_rejected"),
        )

    def on_message(self, text: str) -> None:
        """Log a line."""
        self._log.info("[qfed] %s", text)


def build_server_app(
    settings: AppSettings | None = None, *, callback: TrainingCallback | None = None
) -> ServerApp:
    """A ServerApp that runs :func:`run_server`.

    Args:
        settings: Fixed settings (the in-process simulation); None reads them from the run config
            (``flwr run``).
        callback: Progress events (default: lines on Flower's logger).
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        """Run the federated training and write its outputs."""
        current = settings if settings is not None else settings_from_run_config(context.run_config)
        run_server(grid, current, callback=callback or FlowerLogCallback())

    return app


def _error_reason(reply: Message) -> str:
    reason = (reply.error.reason or "").strip()
    last = reason.splitlines()[-1] if reason else f"error code {reply.error.code}"
    return f"raised an error: {last}"


def discover_nodes(grid: Grid, num_clients: int, *, timeout: float = NODE_WAIT_S) -> dict[int, int]:
    """Ask each SuperNode which partition it holds, until every client ``0 … n-1`` has a node.

    Nodes are asked as they connect, so a misconfigured one (wrong ``num-partitions``, a
    partition out of range or taken twice) stops the run at once instead of after ``timeout``.

    Returns:
        Node id by client id (partition id), for every client ``0 … num_clients-1``.

    Raises:
        QFedError: If a node fails to answer or answers a partition that does not fit, or not
            every partition has a node within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    mapping: dict[int, int] = {}
    asked: set[int] = set()
    while True:
        new = sorted(set(grid.get_node_ids()) - asked)
        asked.update(new)
        queries = [
            Message(RecordDict(), dst_node_id=nid, message_type=MessageType.QUERY) for nid in new
        ]
        replies = list(grid.send_and_receive(queries, timeout=timeout)) if queries else []
        problems: list[str] = []
        for reply in sorted(replies, key=lambda r: r.metadata.src_node_id):
            nid = reply.metadata.src_node_id
            if reply.has_error():
                problems.append(f"node {nid} {_error_reason(reply)}")
                continue
            pid = int(reply.content.metric_records[conv.NODE]["partition-id"])  # type: ignore[arg-type]
            if pid in mapping:
                problems.append(f"nodes {mapping[pid]} and {nid} both hold partition {pid}")
            mapping[pid] = nid
        answered = {r.metadata.src_node_id for r in replies}
        problems += [f"node {nid} did not answer" for nid in new if nid not in answered]
        if problems:
            raise QFedError("Flower nodes: " + "; ".join(problems))
        if len(mapping) == num_clients:
            return mapping
        if time.monotonic() > deadline:
            missing = [cid for cid in range(num_clients) if cid not in mapping]
            raise QFedError(
                f"Flower nodes: no node holds partition(s) {missing} after {timeout:g} s "
                f"({len(mapping)} of {num_clients} SuperNodes connected)"
            )
        time.sleep(1.0)


class _Server:
    """State and round logic of one Flower run (private; see :func:`run_server`)."""

    def __init__(
        self,
        grid: Grid,
        settings: AppSettings,
        *,
        nodes: dict[int, int],
        shard_sizes: list[int],
        model: nn.Module,
        callback: TrainingCallback,
    ) -> None:
        self.grid = grid
        self.config = settings.config
        self.nodes = nodes
        self.shard_sizes = shard_sizes
        self.model = model
        self.cb = callback
        self.global_arrays: Arrays = get_parameters(model)
        self.accepted_round: dict[int, int] = {}

    def _collect(self, sampled: list[int], rnd: int) -> dict[int, Message]:
        messages = [
            Message(
                conv.train_content(
                    self.global_arrays,
                    server_round=rnd,
                    accepted_round=self.accepted_round.get(cid, 0),
                ),
                dst_node_id=self.nodes[cid],
                message_type=MessageType.TRAIN,
                group_id=str(rnd),
            )
            for cid in sampled
        ]
        client_of = {nid: cid for cid, nid in self.nodes.items()}
        replies: Iterable[Message] = self.grid.send_and_receive(
            messages, timeout=self.config.round_timeout
        )
        return {client_of[r.metadata.src_node_id]: r for r in replies}

    def _unpack(self, cid: int, reply: Message | None) -> tuple[ClientUpdate | None, str | None]:
        if reply is None:
            timeout = self.config.round_timeout
            return None, (f"timed out after {timeout:g} s" if timeout else "no reply")
        if reply.has_error():
            return None, _error_reason(reply)
        try:
            return conv.content_to_update(reply.content, order=self.global_arrays), None
        except (KeyError, TypeError, ValueError) as exc:
            return None, f"malformed reply ({type(exc).__name__}: {exc})"

    def run_round(self, rnd: int) -> dict[str, Any]:
        """Sample, train, validate and aggregate one round; returns its metrics line so far."""
        cfg = self.config
        sampled = sample_clients(
            cfg.clients,
            fraction=cfg.fraction_fit,
            min_clients=cfg.min_clients,
            seed=cfg.seed,
            server_round=rnd,
        )
        self.cb.on_message(f"round {rnd}/{cfg.rounds}: clients {sampled} training")
        replies = self._collect(sampled, rnd)
        bytes_down = serialized_size(self.global_arrays) * len(sampled)
        bytes_up = 0
        steps = 0
        accepted: list[ClientUpdate] = []
        rejected: list[dict[str, Any]] = []
        for cid in sampled:  # increasing client id: the embedded engine's aggregation order
            update, reason = self._unpack(cid, replies.get(cid))
            if update is not None:
                bytes_up += serialized_size(update.arrays)
                steps += int(update.metrics.get("steps", 0))
                reason = validate_update(update, self.global_arrays, max_norm=cfg.max_update_norm)
                if reason is None and update.client_id != cid:
                    reason = f"reply names client {update.client_id}"
                if reason is None and update.num_samples != self.shard_sizes[cid]:
                    reason = (
                        f"reports {update.num_samples} samples, its shard has "
                        f"{self.shard_sizes[cid]}"
                    )
            if reason is not None or update is None:
                logger.warning("round %d: client %d rejected: %s", rnd, cid, reason)
                self.cb.on_message(f"round {rnd}: client {cid} rejected: {reason}")
                rejected.append({"client": cid, "reason": reason})
                continue
            accepted.append(update)
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
            self.accepted_round.update({u.client_id: rnd for u in accepted})
        else:
            self.cb.on_message(f"round {rnd} failed: {record['failure']}")
        set_parameters(self.model, self.global_arrays)
        return record


def _shard_sizes(settings: AppSettings) -> list[int]:
    from qfed_qiskit.data.partition import make_partition

    config = settings.config
    train, _ = load_data(settings)
    labels = train.tensors[1].numpy()
    parts = make_partition(config.partition, labels, config.clients, seed=config.seed)
    sizes = [len(p) for p in parts]
    if 0 in sizes:
        cid = sizes.index(0)
        raise QFedInputError(f"partition {config.partition!r}: client {cid} got no samples")
    return sizes


def run_server(
    grid: Grid, settings: AppSettings, *, callback: TrainingCallback | None = None
) -> dict[str, Any]:
    """Federated training of ``settings.config`` with the Flower nodes of ``grid``.

    Writes ``metrics.jsonl`` (one line per round), ``summary.json``, ``model.pt`` and ``cnn.pt``
    to ``config.out`` (default ``runs/<model>-<backend>-<time>``; a relative path is resolved in
    the ServerApp's working directory), exactly as :func:`~qfed_qiskit.federated.run_federated`.

    Returns:
        The summary (also written to ``summary.json``).

    Raises:
        QFedInputError: On contradictory settings.
        QFedError: If the SuperNodes do not match the config (see :func:`discover_nodes`).
    """
    from qfed_qiskit.runner import default_out_dir
    from qfed_qiskit.training.centralized import save_model_outputs, summarize

    config = settings.config
    if not config.federated:
        raise QFedInputError(f"clients={config.clients}: federated training needs clients >= 2")
    if config.dp_noise > 0 and config.dp_clip is None:
        raise QFedInputError(f"dp_noise={config.dp_noise} needs dp_clip (the clipping norm C)")
    cb = callback or NullCallback()
    _, test = load_data(settings)
    shard_sizes = _shard_sizes(settings)
    run_dir = RunDirectory(config.out or default_out_dir(config))
    run_dir.reset_metrics()
    cb.on_message(f"outputs: {Path(run_dir.path).resolve()}")
    model = global_model(settings)
    nodes = discover_nodes(grid, config.clients)
    server = _Server(grid, settings, nodes=nodes, shard_sizes=shard_sizes, model=model, callback=cb)
    cb.on_message(
        f"federated (Flower): {config.clients} clients on nodes {nodes}, shards {shard_sizes}, "
        f"{len(server.global_arrays)} arrays, "
        f"{serialized_size(server.global_arrays):,} bytes per model"
    )
    history: list[dict[str, Any]] = []
    session_start = time.perf_counter()
    result: EvalResult | None = None
    for rnd in range(1, config.rounds + 1):
        wall_before = time.perf_counter() - session_start
        round_start = time.perf_counter()
        record = server.run_round(rnd)
        result = evaluate(model, test)
        record["test_loss"] = result.loss
        record["test_accuracy"] = result.accuracy
        record["wall_time_s"] = time.perf_counter() - round_start
        record["run_time_s"] = wall_before + record["wall_time_s"]
        history.append(record)
        run_dir.append_metrics(record)
        logger.info("round %d: test accuracy %.4f", rnd, record["test_accuracy"])
        cb.on_phase_end(f"round {rnd}/{config.rounds}", record)
    assert result is not None  # rounds >= 1 is validated by the config
    save_model_outputs(run_dir, model)
    summary = summarize(
        model,
        config,
        result=result,
        wall_time_s=time.perf_counter() - session_start,
        steps=sum(int(r.get("steps", 0)) for r in history),
        extra=federated_summary(
            config,
            history=history,
            shard_sizes=shard_sizes,
            global_arrays=server.global_arrays,
            runtime="flower",
            resumed=False,
        ),
    )
    run_dir.write_summary(summary)
    cb.on_message(f"test accuracy {result.accuracy:.4f}; outputs in {run_dir.path}")
    return summary


app = build_server_app()
"""The ServerApp of ``flwr run`` (``[tool.flwr.app.components] serverapp``)."""
