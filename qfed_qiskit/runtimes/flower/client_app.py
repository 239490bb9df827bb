"""The Flower ClientApp: unpack the Message, run the core client step, pack the reply."""

from __future__ import annotations

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from qfed_qiskit.federated.core import ClientFn, client_fit
from qfed_qiskit.runtimes.flower import conversions as conv
from qfed_qiskit.runtimes.flower.task import (
    AppSettings,
    client_model,
    client_shards,
    partition_id,
    settings_from_run_config,
)


def build_client_app(
    settings: AppSettings | None = None, *, client_fn: ClientFn | None = None
) -> ClientApp:
    """A ClientApp that trains with :func:`~qfed_qiskit.federated.core.client_fit`.

    The node's shard is ``partition-id`` of its node config (``flower-supernode --node-config``;
    set by the simulation). The client's optimizer, scheduler and shuffling state stay in the
    node's ``Context.state`` between rounds (see :func:`.conversions.client_state_from_record`).

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
        cid = partition_id(context.node_config, config)
        instructions = msg.content.config_records[conv.CONFIG]
        server_round = int(instructions["server-round"])  # type: ignore[arg-type]
        accepted_round = int(instructions["accepted-round"])  # type: ignore[arg-type]
        state = conv.client_state_from_record(
            context.state.config_records.get(conv.STATE), accepted_round=accepted_round
        )
        update, new_state = fit(
            client_model(current_settings),
            conv.record_to_arrays(msg.content.array_records[conv.ARRAYS]),
            client_shards(current_settings)[cid],
            config=config,
            client_id=cid,
            state=state,
            server_round=server_round,
        )
        context.state[conv.STATE] = conv.client_state_to_record(
            state, new_state, pending_round=server_round
        )
        return Message(conv.update_to_content(update), reply_to=msg)

    return app


app = build_client_app()
"""The ClientApp of ``flwr run`` (``[tool.flwr.app.components] clientapp``)."""
