"""What travels between the server loop and the clients, and the interface a runtime implements.

The server loop (:mod:`qfed_qiskit.federated.server`) owns every round; a runtime only moves
:class:`FitTask` objects to clients and :class:`FitReply` objects back. The embedded runtime
(:mod:`qfed_qiskit.federated.embedded`) is a transport within this process; the Flower ServerApp
(:mod:`qfed_qiskit.runtimes.flower.server_app`) is a transport over Flower's ``Grid``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from qfed_qiskit.exceptions import BackendUnavailableError, find_cause
from qfed_qiskit.federated.core import Arrays, ClientState, ClientUpdate


@dataclass(frozen=True)
class FitTask:
    """One client's instructions for one round.

    Attributes:
        client_id: The client (partition index).
        server_round: The round being trained.
        arrays: The global trainable parameters.
        state: The client's optimizer/scheduler/shuffling state after the last round the server
            accepted from it (None: it has none yet). The server keeps it, so that a checkpoint
            holds it and every runtime carries it across rounds the same way.
    """

    client_id: int
    server_round: int
    arrays: Arrays
    state: ClientState | None


@dataclass(frozen=True)
class FitReply:
    """What came back for one task.

    Attributes:
        client_id: The client the task was sent to (not what the reply claims to be).
        update: The client's update (None when it failed).
        state: Its new local state (None when it failed).
        error: Why there is no usable reply (None when there is one).
        fatal: The failure is not the client's but the backend's (it stayed unavailable after
            retries): the run stops, keeping this round's finished replies for ``--resume``.
        job_ids: Ids of the quantum jobs the client submitted for this round.
    """

    client_id: int
    update: ClientUpdate | None = None
    state: ClientState | None = None
    error: str | None = None
    fatal: bool = False
    job_ids: tuple[str, ...] = ()


def failure_reply(client_id: int, exc: Exception) -> FitReply:
    """The reply of a client whose training raised ``exc``: ``fatal`` when the backend stayed
    unavailable after retries (the run stops), otherwise an ordinary client failure."""
    unavailable = find_cause(exc, BackendUnavailableError)
    if unavailable is not None:
        return FitReply(client_id, error=str(unavailable), fatal=True)
    return FitReply(client_id, error=f"raised {type(exc).__name__}: {exc}")


class Transport(Protocol):
    """Delivers a round's tasks to clients and yields their replies as they arrive."""

    name: str
    """The runtime's name as written to ``summary.json`` (``"embedded"``, ``"flower"``)."""

    concurrent: bool
    """Whether the tasks of a round run side by side. After a fatal reply the loop still collects
    the replies of a concurrent transport (that work is under way, maybe paid for) and stops
    iterating a sequential one (its remaining clients have not started)."""

    def fit(self, tasks: Sequence[FitTask], *, timeout: float | None) -> Iterator[FitReply]:
        """Send ``tasks`` and yield one reply per task that answered within ``timeout`` seconds.

        A task without a reply when the iterator ends counts as timed out. The loop may stop
        iterating early (a fatal reply); the transport must then abandon the remaining tasks.
        """
        ...
