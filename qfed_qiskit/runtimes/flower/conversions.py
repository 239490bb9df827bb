"""Conversions between the federated core's types and Flower records (ArrayRecord, MetricRecord)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    ConfigRecordValues,
    MetricRecord,
    MetricRecordValues,
    RecordDict,
)

from qfed_qiskit.federated.core import Arrays, ClientState, ClientUpdate

ARRAYS = "arrays"
"""RecordDict key of the parameters (both directions)."""
CONFIG = "config"
"""RecordDict key of the server's instructions (``server-round``, ``accepted-round``)."""
METRICS = "metrics"
"""RecordDict key of the client's numbers (``client-id``, ``num-examples``, ``loss``, ...)."""
NODE = "node"
"""RecordDict key of a client's answer to the partition query."""
STATE = "qfed-client"
"""Key of the client's ConfigRecord in ``Context.state``."""


def arrays_to_record(arrays: Mapping[str, np.ndarray[Any, Any]]) -> ArrayRecord:
    """Named NumPy arrays as an ArrayRecord (``.npy`` bytes per array; names and order kept)."""
    return ArrayRecord(
        {name: Array.from_numpy_ndarray(np.asarray(value)) for name, value in arrays.items()}
    )


def record_to_arrays(record: ArrayRecord, *, order: Mapping[str, object] | None = None) -> Arrays:
    """An ArrayRecord as named NumPy arrays.

    Args:
        record: The record.
        order: Names to list first, in this order (the reference arrays); others follow.
    """
    names = list(record.keys())
    if order is not None:
        names = [n for n in order if n in record] + [n for n in names if n not in order]
    return {name: record[name].numpy() for name in names}


def update_to_content(update: ClientUpdate) -> RecordDict:
    """A client's reply: its arrays plus ``client-id``, ``num-examples``, ``loss`` and metrics."""
    metrics: dict[str, MetricRecordValues] = {
        "client-id": int(update.client_id),
        "num-examples": int(update.num_samples),
        "loss": float(update.loss),
    }
    metrics.update({k: float(v) for k, v in update.metrics.items()})
    return RecordDict({ARRAYS: arrays_to_record(update.arrays), METRICS: MetricRecord(metrics)})


def content_to_update(
    content: RecordDict, *, order: Mapping[str, object] | None = None
) -> ClientUpdate:
    """Inverse of :func:`update_to_content` (values are passed on unchecked for validation).

    Raises:
        KeyError: If the reply lacks the ``arrays`` or ``metrics`` record or a required metric.
    """
    metrics = dict(content.metric_records[METRICS])
    client_id = metrics.pop("client-id")
    num_samples = metrics.pop("num-examples")
    loss = metrics.pop("loss")
    return ClientUpdate(
        client_id=int(client_id) if isinstance(client_id, (int, float)) else -1,
        arrays=record_to_arrays(content.array_records[ARRAYS], order=order),
        num_samples=num_samples,  # type: ignore[arg-type]  # validate_update checks the type
        loss=float(loss) if isinstance(loss, (int, float)) else math.nan,
        metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
    )


def train_content(arrays: Arrays, *, server_round: int, accepted_round: int) -> RecordDict:
    """The server's train instruction: the global arrays and the round numbers.

    Args:
        arrays: Global parameters.
        server_round: The round being trained.
        accepted_round: The last round whose update from this client the server accepted
            (0: none); the client keeps the local state it had after that round.
    """
    return RecordDict(
        {
            ARRAYS: arrays_to_record(arrays),
            CONFIG: ConfigRecord(
                {"server-round": int(server_round), "accepted-round": int(accepted_round)}
            ),
        }
    )


def client_state_from_record(
    record: ConfigRecord | None, *, accepted_round: int
) -> ClientState | None:
    """The client's state to train from, given the server's ``accepted-round``.

    The record holds the state of the last accepted round (``state``) and the state produced by
    the last fit (``pending``, from ``pending-round``). The pending one becomes the state only if
    the server accepted that round's update; otherwise the client continues as if it had not
    trained then (the embedded engine's rule for rejected or failed clients).
    """
    if record is None:
        return None
    data = record.get("state")
    if "pending" in record and record.get("pending-round") == accepted_round:
        data = record["pending"]
    return ClientState.from_bytes(data) if isinstance(data, bytes) else None


def client_state_to_record(
    committed: ClientState | None, pending: ClientState, *, pending_round: int
) -> ConfigRecord:
    """What a client keeps in ``Context.state`` after fitting round ``pending_round``."""
    values: dict[str, ConfigRecordValues] = {
        "pending": pending.to_bytes(),
        "pending-round": pending_round,
    }
    if committed is not None:
        values["state"] = committed.to_bytes()
    return ConfigRecord(values)
