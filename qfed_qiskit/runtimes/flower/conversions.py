"""Conversions between the federated core's types and Flower records (ArrayRecord, MetricRecord).

A train instruction carries a :class:`~qfed_qiskit.federated.transport.FitTask` (the global
arrays, the round and the client's state); its reply carries the client's update, its new state
and the ids of the jobs it submitted, or the reason it has none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    ConfigRecordValues,
    Message,
    MetricRecord,
    MetricRecordValues,
    RecordDict,
)

from qfed_qiskit.federated.core import Arrays, ClientState, ClientUpdate
from qfed_qiskit.federated.transport import FitReply, FitTask

ARRAYS = "arrays"
"""RecordDict key of the parameters (both directions)."""
CONFIG = "config"
"""RecordDict key of the server's instructions and the client's state (both directions)."""
METRICS = "metrics"
"""RecordDict key of the client's numbers (``client-id``, ``num-examples``, ``loss``, ...)."""
NODE = "node"
"""RecordDict key of a client's answer to the partition query."""


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


def task_to_content(task: FitTask) -> RecordDict:
    """The server's train instruction: the global arrays, the round and the client's state."""
    config: dict[str, ConfigRecordValues] = {
        "server-round": int(task.server_round),
        "client-id": int(task.client_id),
    }
    if task.state is not None:
        config["state"] = task.state.to_bytes()
    return RecordDict({ARRAYS: arrays_to_record(task.arrays), CONFIG: ConfigRecord(config)})


def content_to_task(content: RecordDict, *, client_id: int) -> FitTask:
    """Inverse of :func:`task_to_content`, for the client holding shard ``client_id``."""
    config = content.config_records[CONFIG]
    state = config.get("state")
    return FitTask(
        client_id=client_id,
        server_round=int(config["server-round"]),  # type: ignore[arg-type]
        arrays=record_to_arrays(content.array_records[ARRAYS]),
        state=ClientState.from_bytes(state) if isinstance(state, bytes) else None,
    )


def update_to_content(
    update: ClientUpdate, state: ClientState, *, job_ids: Sequence[str] = ()
) -> RecordDict:
    """A client's reply: its arrays, ``client-id``, ``num-examples``, ``loss``, metrics, state."""
    metrics: dict[str, MetricRecordValues] = {
        "client-id": int(update.client_id),
        "num-examples": int(update.num_samples),
        "loss": float(update.loss),
    }
    metrics.update({k: float(v) for k, v in update.metrics.items()})
    return RecordDict(
        {
            ARRAYS: arrays_to_record(update.arrays),
            METRICS: MetricRecord(metrics),
            CONFIG: ConfigRecord({"state": state.to_bytes(), "job-ids": list(job_ids)}),
        }
    )


def fatal_content(error: str, *, job_ids: Sequence[str] = ()) -> RecordDict:
    """A client's reply when its backend stayed unavailable: the run stops (see FitReply)."""
    return RecordDict({CONFIG: ConfigRecord({"fatal": error, "job-ids": list(job_ids)})})


def content_to_update(
    content: RecordDict, *, order: Mapping[str, object] | None = None
) -> ClientUpdate:
    """The update of a reply (values are passed on unchecked, for validation).

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


def error_reason(reply: Message) -> str:
    """The last line of a Flower error reply (where the ClientApp's exception is)."""
    reason = (reply.error.reason or "").strip()
    last = reason.splitlines()[-1] if reason else f"error code {reply.error.code}"
    return f"raised an error: {last}"


def message_to_reply(
    client_id: int, reply: Message, *, order: Mapping[str, object] | None = None
) -> FitReply:
    """The :class:`FitReply` of the Flower reply from client ``client_id``."""
    if reply.has_error():
        return FitReply(client_id, error=error_reason(reply))
    content = reply.content
    config = content.config_records.get(CONFIG, ConfigRecord())
    raw_ids = config.get("job-ids", [])
    job_ids = tuple(str(j) for j in raw_ids) if isinstance(raw_ids, list) else ()
    fatal = config.get("fatal")
    if isinstance(fatal, str):
        return FitReply(client_id, error=fatal, fatal=True, job_ids=job_ids)
    try:
        update = content_to_update(content, order=order)
        state_bytes = config["state"]
        if not isinstance(state_bytes, bytes):
            raise TypeError(f"state is a {type(state_bytes).__name__}")
        state = ClientState.from_bytes(state_bytes)
    except Exception as exc:  # whatever a foreign or broken client sent
        return FitReply(
            client_id, error=f"malformed reply ({type(exc).__name__}: {exc})", job_ids=job_ids
        )
    return FitReply(client_id, update=update, state=state, job_ids=job_ids)
