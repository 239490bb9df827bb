"""The Flower ServerApp: the federated server loop with Flower's Grid as its transport.

The rounds are :func:`~qfed_qiskit.federated.server.run_server_loop`'s, exactly as in the embedded
runtime (sampling, validation, FedAvg / DP-FedAvg, evaluation, metrics, checkpoints, ``resume``).
This module only finds which SuperNode holds which partition and moves tasks and replies as Flower
Messages (:class:`FlowerTransport`). Clients train in parallel on their SuperNodes, so
``round_timeout`` bounds the whole round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from flwr.app import Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from qfed_qiskit.exceptions import QFedError
from qfed_qiskit.federated.server import run_server_loop
from qfed_qiskit.federated.transport import FitReply, FitTask
from qfed_qiskit.runtimes.flower import conversions as conv
from qfed_qiskit.runtimes.flower.task import (
    AppSettings,
    engine_factory,
    global_model,
    load_data,
    settings_from_run_config,
)
from qfed_qiskit.training.builders import close_engine_factory, engine_job_ids, use_job_journal
from qfed_qiskit.training.callbacks import NullCallback, TrainingCallback
from qfed_qiskit.training.outputs import RunDirectory, default_out_dir

logger = logging.getLogger(__name__)

NODE_WAIT_S = 300.0
"""How long the server waits for ``clients`` SuperNodes to connect and answer."""
POLL_S = 0.2
"""How often the server looks for replies that have arrived."""


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
    settings: AppSettings | None = None,
    *,
    callback: TrainingCallback | None = None,
    errors: list[BaseException] | None = None,
) -> ServerApp:
    """A ServerApp that runs :func:`run_server`.

    Args:
        settings: Fixed settings (the in-process simulation); None reads them from the run config
            (``flwr run``).
        callback: Progress events (default: lines on Flower's logger).
        errors: Collects the error that ended the run, if any, and swallows it (the in-process
            simulation re-raises it after Flower has shut down; Flower itself only logs it).
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        """Run the federated training and write its outputs."""
        current = settings if settings is not None else settings_from_run_config(context.run_config)
        try:
            run_server(grid, current, callback=callback or FlowerLogCallback())
        except BaseException as exc:
            if errors is None:
                raise
            errors.append(exc)

    return app


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
                problems.append(f"node {nid} {conv.error_reason(reply)}")
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


class FlowerTransport:
    """Moves the server loop's tasks to SuperNodes as train Messages and yields their replies.

    Args:
        grid: The run's Grid.
        nodes: Node id of each client (:func:`discover_nodes`).
        poll_s: Seconds between looks for replies.
    """

    name = "flower"
    concurrent = True

    def __init__(self, grid: Grid, nodes: dict[int, int], *, poll_s: float = POLL_S) -> None:
        self.grid = grid
        self.nodes = dict(nodes)
        self.poll_s = poll_s

    def fit(self, tasks: Sequence[FitTask], *, timeout: float | None) -> Iterator[FitReply]:
        """Push every task at once (clients train in parallel); yield replies as they arrive."""
        if not tasks:
            return
        messages = [
            Message(
                conv.task_to_content(task),
                dst_node_id=self.nodes[task.client_id],
                message_type=MessageType.TRAIN,
                group_id=str(task.server_round),
            )
            for task in tasks
        ]
        pending = set(self.grid.push_messages(messages))
        client_of = {nid: cid for cid, nid in self.nodes.items()}
        order = tasks[0].arrays
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            for reply in self.grid.pull_messages(sorted(pending)):
                pending.discard(reply.metadata.reply_to_message_id)
                cid = client_of.get(reply.metadata.src_node_id)
                if cid is not None:
                    yield conv.message_to_reply(cid, reply, order=order)
            if not pending or (deadline is not None and time.monotonic() >= deadline):
                return
            time.sleep(self.poll_s)


def _shard_sizes(settings: AppSettings) -> list[int]:
    """Samples per client, from the partition of the labels (the server needs no shard copies)."""
    from qfed_qiskit.data.partition import client_partition

    config = settings.config
    train, _ = load_data(settings)
    labels = train.tensors[1].numpy()
    return [
        len(p) for p in client_partition(config.partition, labels, config.clients, seed=config.seed)
    ]


def run_server(
    grid: Grid, settings: AppSettings, *, callback: TrainingCallback | None = None
) -> dict[str, Any]:
    """Federated training of ``settings.config`` with the Flower nodes of ``grid``.

    Writes what :func:`~qfed_qiskit.federated.server.run_server_loop` writes to ``config.out``
    (default ``runs/<model>-<backend>-<time>``; a relative path is resolved in the ServerApp's
    working directory); ``settings.resume`` continues the run there from its checkpoint.

    Returns:
        The summary (also written to ``summary.json``).

    Raises:
        QFedInputError: On contradictory settings, an output folder that holds another run, or a
            missing or mismatched checkpoint.
        QFedError: If the SuperNodes do not match the config (see :func:`discover_nodes`).
    """
    config = settings.config
    cb = callback or NullCallback()
    out = config.out or default_out_dir(config.model, config.backend)
    run_dir = RunDirectory.prepare(out, resume=settings.resume, overwrite=settings.overwrite)
    cb.on_message(f"outputs: {Path(run_dir.path).resolve()}")
    _, test = load_data(settings)
    shard_sizes = _shard_sizes(settings)
    factory = engine_factory(config)
    use_job_journal(factory, run_dir.jobs)
    model = global_model(settings)
    nodes = discover_nodes(grid, config.clients)
    cb.on_message(f"Flower nodes by client: {nodes}")
    summary = run_server_loop(
        config,
        transport=FlowerTransport(grid, nodes),
        model=model,
        test=test,
        shard_sizes=shard_sizes,
        run_dir=run_dir,
        callback=cb,
        resume=settings.resume,
        server_job_ids=engine_job_ids(factory),
        close=lambda: close_engine_factory(factory),
    )
    cb.on_message(f"test accuracy {summary['test_accuracy']:.4f}; outputs in {run_dir.path}")
    return summary


app = build_server_app()
"""The ServerApp of ``flwr run`` (``[tool.flwr.app.components] serverapp``)."""
