"""The Flower ClientApp: unpack the Message, run the core client step, pack the reply."""

from __future__ import annotations

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from qfed_qiskit.exceptions import BackendUnavailableError, find_cause
from qfed_qiskit.federated.core import ClientFn, client_fit
from qfed_qiskit.runtimes.flower import conversions as conv
from qfed_qiskit.runtimes.flower.task import (
    AppSettings,
    client_model,
    client_shards,
    engine_factory,
    partition_id,
    settings_from_run_config,
)
from qfed_qiskit.training.builders import engine_job_ids
from qfed_qiskit.training.outputs import NewJobIds


def build_client_app(
    settings: AppSettings | None = None, *, client_fn: ClientFn | None = None
) -> ClientApp:
    """A ClientApp that trains with :func:`~qfed_qiskit.federated.core.client_fit`.

    The node's shard is ``partition-id`` of its node config (``flower-supernode --node-config``;
    set by the simulation). The client's optimizer, scheduler and shuffling state comes with each
    train message and goes back with the reply: the server keeps it (and checkpoints it), so a
    SuperNode that restarts loses nothing.

    Args:
        settings: Fixed settings (the in-process simulation); None reads them from the run config
            of each message's run (``flwr run``).
        client_fn: Replaces :func:`~qfed_qiskit.federated.core.client_fit` (tests).
    """
    app = ClientApp()
    fit: ClientFn = client_fn or client_fit

    def current(context: Context) -> AppSettings:
        return settings if settings is not None else settings_from_run_config(context.run_config)

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        """Tell the server which partition (client id) this node holds."""
        config = current(context).config
        pid = partition_id(context.node_config, config)
        node = MetricRecord({"partition-id": pid, "num-partitions": config.clients})
        return Message(RecordDict({conv.NODE: node}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        """Train the received global arrays on this node's shard for one round."""
        current_settings = current(context)
        config = current_settings.config
        task = conv.content_to_task(
            msg.content, client_id=partition_id(context.node_config, config)
        )
        new_job_ids = NewJobIds(engine_job_ids(engine_factory(config)))
        new_job_ids()  # the ids of earlier rounds in this process are not this round's
        try:
            update, state = fit(
                client_model(current_settings),
                task.arrays,
                client_shards(current_settings)[task.client_id],
                config=config,
                client_id=task.client_id,
                state=task.state,
                server_round=task.server_round,
            )
        except Exception as exc:
            unavailable = find_cause(exc, BackendUnavailableError)
            if unavailable is None:
                raise  # Flower replies with the error: the server rejects this client
            return Message(
                conv.fatal_content(str(unavailable), job_ids=new_job_ids()), reply_to=msg
            )
        return Message(conv.update_to_content(update, state, job_ids=new_job_ids()), reply_to=msg)

    return app


app = build_client_app()
"""The ClientApp of ``flwr run`` (``[tool.flwr.app.components] clientapp``)."""
