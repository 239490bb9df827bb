"""Fault injection: make chosen clients misbehave in chosen rounds, in any runtime."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import TensorDataset

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.exceptions import BackendUnavailableError, QFedInputError
from qfed_qiskit.federated.core import (
    Array,
    ClientCancelledError,
    ClientFn,
    ClientState,
    ClientUpdate,
    client_fit,
)
from qfed_qiskit.training.callbacks import TrainingCallback

FAULT_KINDS = ("raise", "nan", "shape", "dtype", "names", "norm", "slow", "unavailable", "die")
"""``raise``: the client raises. ``nan``: one value of the reply is NaN. ``shape``: one array
loses an element. ``dtype``: arrays come back as float64. ``names``: one array is renamed.
``norm``: the reply is moved far from the global model. ``slow``: the client sleeps
``slow_seconds`` (polling its stop signal) before training, to trip the round timeout.
``unavailable``: the client's backend stays unavailable (the run stops). ``die``: the process
kills itself with SIGKILL (only for clients in worker processes)."""


class InjectedFault(RuntimeError):
    """The error raised by a client told to ``raise``."""


@dataclass(frozen=True)
class FaultPlan:
    """Which client misbehaves how, and in which round.

    Args:
        faults: ``{(round, client_id): kind}`` with kinds from :data:`FAULT_KINDS`.
        slow_seconds: How long a ``slow`` client sleeps.
        on_fault: Called as ``on_fault(round, client_id, kind)`` when a fault fires (e.g. to
            write a marker file a test waits for).
    """

    faults: Mapping[tuple[int, int], str] = field(default_factory=dict)
    slow_seconds: float = 3600.0
    on_fault: Callable[[int, int, str], None] | None = None

    def __post_init__(self) -> None:
        bad = sorted({k for k in self.faults.values() if k not in FAULT_KINDS})
        if bad:
            raise QFedInputError(f"unknown fault kinds {bad} (allowed: {', '.join(FAULT_KINDS)})")

    def wrap(self, fn: ClientFn) -> ClientFn:
        """A client function that behaves like ``fn`` except where this plan says otherwise
        (it pickles when ``fn`` and ``on_fault`` do, so worker processes can run it)."""
        return FaultyClient(self, fn)


@dataclass(frozen=True)
class FaultyClient:
    """``inner`` with the faults of ``plan`` (see :meth:`FaultPlan.wrap`)."""

    plan: FaultPlan
    inner: ClientFn

    def __call__(
        self,
        model: nn.Module,
        global_arrays: Mapping[str, Array],
        data: TensorDataset,
        *,
        config: TrainConfig,
        client_id: int,
        state: ClientState | None = None,
        server_round: int = 0,
        callback: TrainingCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[ClientUpdate, ClientState]:
        plan = self.plan
        kind = plan.faults.get((server_round, client_id))
        if kind is not None and plan.on_fault is not None:
            plan.on_fault(server_round, client_id, kind)
        if kind == "raise":
            raise InjectedFault(f"injected failure of client {client_id}")
        if kind == "unavailable":
            raise BackendUnavailableError("sampler job failed 3 times (RuntimeError: closed)")
        if kind == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "slow":
            deadline = time.monotonic() + plan.slow_seconds
            while time.monotonic() < deadline:
                if should_stop is not None and should_stop():
                    raise ClientCancelledError("client training cancelled")
                time.sleep(0.01)
        update, new_state = self.inner(
            model,
            global_arrays,
            data,
            config=config,
            client_id=client_id,
            state=state,
            server_round=server_round,
            callback=callback,
            should_stop=should_stop,
        )
        if kind is None or kind == "slow":
            return update, new_state
        return _corrupt(update, kind), new_state


@dataclass(frozen=True)
class MarkerFile:
    """An ``on_fault`` that writes ``round client`` to ``path`` (a test waits for it)."""

    path: str

    def __call__(self, server_round: int, client_id: int, kind: str) -> None:
        Path(self.path).write_text(f"{server_round} {client_id}")


@dataclass(frozen=True)
class CallLog:
    """A client function that appends every ``round client`` it is asked to train to ``path``
    (a file, so that calls in worker processes count too)."""

    path: str
    inner: ClientFn = client_fit

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[ClientUpdate, ClientState]:
        with open(self.path, "a", encoding="utf-8") as log:
            log.write(f"{kwargs['server_round']} {kwargs['client_id']}\n")
        return self.inner(*args, **kwargs)

    @property
    def calls(self) -> list[tuple[int, int]]:
        """Every (round, client) asked so far."""
        path = Path(self.path)
        if not path.exists():
            return []
        pairs = (line.split() for line in path.read_text(encoding="utf-8").splitlines())
        return [(int(r), int(c)) for r, c in pairs]


def _corrupt(update: ClientUpdate, kind: str) -> ClientUpdate:
    arrays = {k: v.copy() for k, v in update.arrays.items()}
    first = next(iter(arrays))
    if kind == "nan":
        arrays[first].reshape(-1)[0] = np.nan
    elif kind == "shape":
        arrays[first] = arrays[first].reshape(-1)[:-1]
    elif kind == "dtype":
        arrays = {k: v.astype(np.float64) for k, v in arrays.items()}
    elif kind == "names":
        arrays[first + "_renamed"] = arrays.pop(first)
    elif kind == "norm":
        arrays[first] = arrays[first] + np.asarray(1e9, dtype=arrays[first].dtype)
    return replace(update, arrays=arrays)
