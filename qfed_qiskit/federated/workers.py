"""Worker processes that train a round's clients side by side (the embedded runtime's ``workers``).

:class:`WorkerTransport` is a :class:`~qfed_qiskit.federated.transport.Transport`: the server loop
(:func:`~qfed_qiskit.federated.server.run_server_loop`) hands it a round's tasks and it yields the
replies as they arrive, like the sequential
:class:`~qfed_qiskit.federated.embedded.EmbeddedTransport`. Each worker is a process of its own,
started once per run, with its own single-threaded torch and its own engine factory (built from the
config, as a Flower SuperNode builds one). The client shards are moved into shared memory once and
handed to the workers when they start; per round only the task (about 12 kB for QT) and the reply
travel, pickled over a pipe.

Results are bit-identical to the sequential runtime: a client's training depends only on its task
(global arrays, its state, its shard and id), every client trains on
:data:`~qfed_qiskit.federated.core.CLIENT_TORCH_THREADS` threads, and the server aggregates in
client-id order whatever the arrival order.

Faults: an exception in a client is its reply's error (``fatal`` when the backend stayed
unavailable), a client past ``round_timeout`` has its worker killed and replaced, and a worker
that dies (killed, out of memory, a crash in native code) is that client's failure; nothing waits
for a process that is gone. A worker whose server disappears (it was killed) exits within a second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.exceptions import QFedError, QFedInputError
from qfed_qiskit.federated.core import ClientFn, client_fit, client_steps_per_epoch
from qfed_qiskit.federated.transport import FitReply, FitTask, failure_reply
from qfed_qiskit.training.callbacks import NullCallback, TrainingCallback

logger = logging.getLogger(__name__)

START_METHOD = "forkserver"
"""Workers are forked from a clean server process that has imported this module (and so torch)
once: forking the trainer itself would copy its OpenMP and numba thread pools, which is unsafe,
and spawning would import torch again for every worker."""

STOP_GRACE_S = 5.0
"""How long a worker told to stop may take before it is killed."""

PARENT_POLL_S = 1.0
"""How often a worker checks that the server process is still there."""


class WorkerError(QFedError):
    """A worker process could not start (its engine or model could not be built)."""


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker gets once, when it starts.

    Attributes:
        config: Run settings (the worker builds its engine factory and model from them).
        shards: Every client's data, its tensors in shared memory.
        client_fn: The client step (tests inject faults; it must pickle).
        jobs_dir: The run's job journal (engines that submit jobs keep their results there).
        server_pid: The server's process (a worker exits when it is gone).
    """

    config: TrainConfig
    shards: tuple[TensorDataset, ...]
    client_fn: ClientFn
    jobs_dir: str
    server_pid: int


# ------------------------------------------------------------------------------------------------
# Inside a worker
# ------------------------------------------------------------------------------------------------


def _send(conn: Connection, kind: str, payload: Any) -> None:
    conn.send_bytes(pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL))


class _StepsToParent:
    """Forwards each optimizer step's loss to the parent (its progress bar)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def on_phase_start(self, name: str, total_steps: int) -> None:
        pass

    def on_step(self, loss: float) -> None:
        _send(self._conn, "step", float(loss))

    def on_phase_end(self, name: str, metrics: dict[str, Any]) -> None:
        pass

    def on_message(self, text: str) -> None:
        pass


def _exit_with_server(server_pid: int) -> None:
    """Exit as soon as the server process is gone (it was killed). Its pipe would tell only at
    the next message, and the forkserver this worker was forked from outlives the server for as
    long as any worker lives."""

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # pragma: no cover - the pid now belongs to someone else
                os._exit(1)

    threading.Thread(target=watch, name="qfed-server-watch", daemon=True).start()


def _warm_up(model: nn.Module | None, images: torch.Tensor) -> None:
    """One Adam step on a scratch tensor and, given a ``model``, a forward + backward of it on a
    blank image, before the worker says it is ready, so that the first task's ``round_timeout``
    clock does not include Adam's first step importing its machinery (about 2.5 s measured here)
    or the exact engine's kernels loading or compiling. The model takes no step and its gradients
    are dropped, so training is unchanged."""
    if model is not None:
        with torch.random.fork_rng(devices=[]):
            model(torch.zeros_like(images[:1])).sum().backward()
        model.zero_grad(set_to_none=True)
    scratch = nn.Parameter(torch.zeros(1))
    scratch.grad = torch.zeros(1)
    torch.optim.Adam([scratch]).step()


def _worker_main(conn: Connection, setup: WorkerSetup) -> None:
    """A worker's life: build the model, then train the tasks that arrive until told to stop."""
    from qfed_qiskit.training.builders import (
        build_client_model,
        close_engine_factory,
        engine_job_ids,
        resolve_engine_factory,
        use_job_journal,
    )

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    _exit_with_server(setup.server_pid)
    torch.set_num_threads(1)
    config = setup.config
    try:
        factory = resolve_engine_factory(config)
        use_job_journal(factory, setup.jobs_dir)
        model = build_client_model(config, engine_factory=factory)
        # The model only on the default exact engine: no other engine's state (a sampler's
        # seed, a job submitted and paid for) may be touched before training.
        _warm_up(model if factory is None else None, setup.shards[0].tensors[0])
    except Exception as exc:
        _send(conn, "failed", f"{type(exc).__name__}: {exc}")
        return
    job_ids = engine_job_ids(factory)
    progress = _StepsToParent(conn)
    try:
        _send(conn, "ready", os.getpid())
        while True:
            task: FitTask | None = pickle.loads(conn.recv_bytes())
            if task is None:
                return
            before = len(job_ids()) if job_ids is not None else 0
            try:
                update, state = setup.client_fn(
                    model,
                    task.arrays,
                    setup.shards[task.client_id],
                    config=config,
                    client_id=task.client_id,
                    state=task.state,
                    server_round=task.server_round,
                    callback=progress,
                )
                reply = FitReply(task.client_id, update=update, state=state)
            except Exception as exc:
                reply = failure_reply(task.client_id, exc)
            if job_ids is not None:
                reply = dataclasses.replace(reply, job_ids=tuple(job_ids()[before:]))
            _send(conn, "reply", reply)
    except (EOFError, OSError):
        return  # the server closed the pipe or is gone
    finally:
        close_engine_factory(factory)


# ------------------------------------------------------------------------------------------------
# In the server
# ------------------------------------------------------------------------------------------------


def describe_exit(exitcode: int | None) -> str:
    """How a process ended, in words (``killed by SIGKILL``, ``exit code 1``)."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class _Worker:
    """One worker process, the server's end of its pipe, and the task it is training."""

    def __init__(self, ctx: Any, setup: WorkerSetup, index: int) -> None:
        server_end, worker_end = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main,
            args=(worker_end, setup),
            name=f"qfed-worker-{index}",
            daemon=True,
        )
        self.process.start()
        worker_end.close()
        self.conn: Connection = server_end
        self.ready = False
        self.task: FitTask | None = None
        self.deadline: float | None = None

    def give(self, task: FitTask, timeout: float | None) -> None:
        self.conn.send_bytes(pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL))
        self.task = task
        self.deadline = time.monotonic() + timeout if timeout else None

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(STOP_GRACE_S)
        self.conn.close()

    def stop(self) -> None:
        """Ask an idle worker to finish; kill it if it does not within :data:`STOP_GRACE_S`."""
        with contextlib.suppress(OSError):
            self.conn.send_bytes(pickle.dumps(None))
        self.process.join(STOP_GRACE_S)
        self.kill()


class WorkerTransport:
    """Runs a round's clients in ``workers`` processes, side by side.

    Args:
        config: Run settings (each worker builds its engine and model from them).
        shards: Every client's data (moved into shared memory here).
        workers: How many processes (at least 1; there is no gain beyond the clients per round).
        jobs_dir: The run's job journal folder (``RunDirectory.jobs``).
        client_fn: The client step; it must pickle (a module-level function or class instance).
        callback: Progress: one phase per round, one step per optimizer step of any client.
    """

    name = "embedded"
    concurrent = True

    def __init__(
        self,
        config: TrainConfig,
        *,
        shards: Sequence[TensorDataset],
        workers: int,
        jobs_dir: str | Path,
        client_fn: ClientFn = client_fit,
        callback: TrainingCallback | None = None,
    ) -> None:
        if workers < 1:
            raise QFedInputError(f"workers must be >= 1, got {workers}")
        try:
            pickle.dumps(client_fn)
        except Exception as exc:
            raise QFedInputError(
                f"client_fn {client_fn!r} cannot be sent to worker processes ({exc}); use a "
                "module-level function or class instance, or workers=1"
            ) from exc
        for shard in shards:
            for tensor in shard.tensors:
                tensor.share_memory_()  # type: ignore[no-untyped-call]  # in place: the workers map these pages, nobody copies
        self.config = config
        self.size = workers
        self.cb = callback or NullCallback()
        self.shard_sizes = [len(s) for s in shards]
        self._setup = WorkerSetup(
            config=config,
            shards=tuple(shards),
            client_fn=client_fn,
            jobs_dir=str(jobs_dir),
            server_pid=os.getpid(),
        )
        self._ctx = multiprocessing.get_context(START_METHOD)
        self._ctx.set_forkserver_preload([__name__])
        self._workers: list[_Worker] = []
        self._started = 0

    # -- the pool --------------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        self._started += 1
        return _Worker(self._ctx, self._setup, self._started)

    def _fill(self) -> None:
        while len(self._workers) < self.size:
            self._workers.append(self._spawn())

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers[self._workers.index(worker)] = self._spawn()

    def close(self) -> None:
        """Stop every worker (the run is over, or stopped); safe to call twice."""
        for worker in self._workers:
            if worker.task is None:
                worker.stop()
            else:
                worker.kill()
        self._workers = []

    # -- a round ---------------------------------------------------------------------------------

    def fit(self, tasks: Sequence[FitTask], *, timeout: float | None) -> Iterator[FitReply]:
        """Train ``tasks`` on the workers, yielding each reply as it arrives.

        Tasks go out in the given order, each to the next free worker; a client past
        ``timeout`` seconds (from when its worker got it) has its worker killed and replaced.
        A worker still busy when the caller stops iterating is killed too, so that no late
        reply can reach a later round.
        """
        if not tasks:
            return
        self._fill()
        cfg = self.config
        total = sum(
            cfg.local_epochs * client_steps_per_epoch(cfg, self.shard_sizes[t.client_id])
            for t in tasks
        )
        rnd = tasks[0].server_round
        self.cb.on_phase_start(
            f"round {rnd}/{cfg.rounds} clients {[t.client_id for t in tasks]} "
            f"on {min(self.size, len(tasks))} workers",
            total,
        )
        pending = deque(tasks)
        try:
            while pending or any(w.task is not None for w in self._workers):
                for worker in self._workers:
                    if worker.ready and worker.task is None and pending:
                        worker.give(pending.popleft(), timeout)
                wait(
                    [w.conn for w in self._workers] + [w.process.sentinel for w in self._workers],
                    timeout=self._until_next_deadline(),
                )
                for worker in list(self._workers):
                    reply = self._poll(worker)
                    if reply is not None:
                        yield reply
                now = time.monotonic()
                for worker in list(self._workers):
                    late = worker.deadline is not None and now >= worker.deadline
                    if worker.task is not None and late:
                        cid = worker.task.client_id
                        self._replace(worker)
                        yield FitReply(cid, error=f"timed out after {timeout:g} s")
        finally:
            for worker in list(self._workers):
                if worker.task is not None:  # abandoned: its reply must never be read later
                    self._replace(worker)

    def _until_next_deadline(self) -> float | None:
        deadlines = [w.deadline for w in self._workers if w.task is not None and w.deadline]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _poll(self, worker: _Worker) -> FitReply | None:
        """Read what ``worker`` sent; its reply if it finished its task, or the reply that says
        it died with one."""
        try:
            while worker.conn.poll():
                kind, payload = pickle.loads(worker.conn.recv_bytes())
                if kind == "step":
                    self.cb.on_step(payload)
                elif kind == "ready":
                    worker.ready = True
                elif kind == "failed":
                    raise WorkerError(f"a client worker process could not start: {payload}")
                elif kind == "reply":
                    worker.task = worker.deadline = None
                    reply: FitReply = payload
                    return reply
        except (EOFError, OSError):
            pass  # the worker is gone: its sentinel says how
        if worker.process.is_alive():
            return None
        worker.process.join()
        how = describe_exit(worker.process.exitcode)
        if not worker.ready:
            raise WorkerError(
                f"a client worker process ended before it was ready ({how}); a script that "
                "starts a federated run with workers > 1 needs `if __name__ == '__main__':` "
                "(workers import it), or pass workers=1"
            )
        task = worker.task
        self._replace(worker)
        if task is None:
            logger.warning("an idle client worker process ended (%s); replaced", how)
            return None
        return FitReply(task.client_id, error=f"worker process died ({how})")


def worker_count(config: TrainConfig, *, remote: bool = False) -> int:
    """How many worker processes train a round's clients (1: in this process, one by one).

    ``config.workers`` if set, else one per core this process may use; never more than the
    clients per round. Runs whose engines submit jobs to IBM Quantum (``remote``) keep one:
    the run's jobs share one batch or session, and the work is not on this machine's cores.

    Raises:
        QFedInputError: If ``workers`` > 1 is asked for with a remote backend.
    """
    if not config.federated:
        return 1
    if remote:
        if config.workers is not None and config.workers > 1:
            raise QFedInputError(
                f"workers={config.workers}: backend {config.backend!r} runs on IBM Quantum, "
                "where a run's jobs share one batch or session; use workers=1"
            )
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    wanted = config.workers if config.workers is not None else (cores or 1)
    return max(1, min(wanted, config.clients_per_round))
