"""Run one federated config on any runtime, in this process, for tests that must hold for all.

``embedded``: :func:`qfed_qiskit.federated.run_federated` with its clients in this process, one
after another (``workers = 1``). ``workers``: the same with two worker processes side by side
(``workers = 2``; a ``client_fn`` must pickle). ``flower``: the real ServerApp
(:func:`~qfed_qiskit.runtimes.flower.server_app.run_server`) and ClientApp code with Flower
Messages and records, over :class:`ThreadGrid`, a Grid that runs each pushed message's ClientApp
in a thread of this process (one Context per node, as a SuperNode keeps one). Only Flower's
networking is left out; the real Flower processes are tested in test_flower.py.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from qfed_qiskit.federated import ClientFn, client_fit, run_federated
from qfed_qiskit.training import RunDirectory
from qfed_qiskit.training.callbacks import TrainingCallback

RUNTIMES = ("embedded", "workers", "flower")
WORKERS = {"embedded": 1, "workers": 2}
"""Worker processes of each embedded runtime."""


def set_task_identity() -> None:
    """The identity Flower's runtime sets in a ServerApp process (messages are stamped with it)."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_task_id", 1), ("_run_id", 1), ("_node_id", 0)):
        setattr(TaskIdentity, name, value)


class ThreadGrid:
    """Delivers messages to an in-process ClientApp, each in its own thread.

    Args:
        app: The ClientApp.
        num_nodes: SuperNodes; node ``i`` holds partition ``num_nodes - 1 - i`` (so that node
            order and client order differ).
        node_configs: Replaces the node configs (tests of misconfigured nodes).
    """

    def __init__(
        self,
        app: Any,
        num_nodes: int,
        *,
        node_configs: list[dict[str, Any]] | None = None,
        first_node: int = 1000,
    ) -> None:
        from flwr.app import Context, RecordDict

        self.app = app
        configs = node_configs or [
            {"partition-id": num_nodes - 1 - i, "num-partitions": num_nodes}
            for i in range(num_nodes)
        ]
        self.contexts = {
            first_node + 7 * i: Context(
                run_id=1,
                node_id=first_node + 7 * i,
                node_config=config,
                state=RecordDict(),
                run_config={},
            )
            for i, config in enumerate(configs)
        }
        self._replies: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.delivered = 0

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def _deliver(self, msg: Any) -> None:
        from flwr.app import Error, Message

        context = self.contexts[msg.metadata.dst_node_id]
        try:
            reply = self.app(msg, context)
        except Exception as exc:
            reply = Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=msg)
        with self._lock:
            self._replies[msg.metadata.message_id] = reply

    def push_messages(self, messages: Iterable[Any]) -> list[str]:
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            ids.append(msg.metadata.message_id)
            self.delivered += 1
            threading.Thread(target=self._deliver, args=(msg,), daemon=True).start()
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Any]:
        with self._lock:
            found = [self._replies.pop(i) for i in message_ids if i in self._replies]
        return list(reversed(found))  # arrival order must not matter

    def send_and_receive(
        self, messages: Iterable[Any], *, timeout: float | None = None
    ) -> list[Any]:
        pending = set(self.push_messages(messages))
        deadline = time.monotonic() + (timeout if timeout is not None else 60.0)
        out: list[Any] = []
        while pending and time.monotonic() < deadline:
            got = self.pull_messages(sorted(pending))
            pending -= {m.metadata.reply_to_message_id for m in got}
            out += got
            time.sleep(0.01)
        return out


def app_settings(run_config: dict[str, Any]) -> Any:
    from qfed_qiskit.runtimes.flower.task import settings_from_run_config

    return settings_from_run_config(run_config)


def run(
    runtime: str,
    run_config: dict[str, Any],
    *,
    client_fn: ClientFn | None = None,
    resume: bool = False,
    callback: TrainingCallback | None = None,
) -> dict[str, Any]:
    """Train the Flower-style ``run_config`` (it names ``data-dir`` and ``out``) on ``runtime``."""
    settings = app_settings({**run_config, "resume": resume})
    if runtime in WORKERS:
        from qfed_qiskit.runtimes.flower.task import load_data
        from qfed_qiskit.training.builders import resolve_engine_factory

        train, test = load_data(settings)
        config = dataclasses.replace(settings.config, runtime="embedded", workers=WORKERS[runtime])
        assert config.out is not None
        return run_federated(
            config,
            train=train,
            test=test,
            run_dir=RunDirectory.prepare(config.out, resume=resume, overwrite=True),
            engine_factory=resolve_engine_factory(config),
            client_fn=client_fn,
            resume=resume,
            callback=callback,
        )
    if runtime != "flower":
        raise ValueError(runtime)
    from qfed_qiskit.runtimes.flower.client_app import build_client_app
    from qfed_qiskit.runtimes.flower.server_app import run_server

    set_task_identity()
    settings = dataclasses.replace(settings, overwrite=not resume)
    grid = ThreadGrid(
        build_client_app(settings, client_fn=client_fn or client_fit), settings.config.clients
    )
    summary: dict[str, Any] = run_server(grid, settings, callback=callback)  # type: ignore[arg-type]
    return summary


def out_of(run_config: dict[str, Any]) -> Path:
    return Path(run_config["out"])
