"""The one federated server loop, for every runtime.

:func:`run_server_loop` owns a round from start to end: sample the clients, send each the global
trainable parameters and its state (:class:`~qfed_qiskit.federated.transport.FitTask`), collect
the replies within ``round_timeout`` (storing each as it arrives), validate them, aggregate
(FedAvg or DP-FedAvg), evaluate on the test set, append the round's ``metrics.jsonl`` line and
write the checkpoint; at the end it writes the summary and closes what the engine factory opened.
How tasks reach clients is the transport's business
(:class:`~qfed_qiskit.federated.transport.Transport`): in this process
(:mod:`qfed_qiskit.federated.embedded`) or over Flower's Grid
(:mod:`qfed_qiskit.runtimes.flower.server_app`).

The server keeps every client's state (Adam moments, ReduceLROnPlateau counters, shuffling
generator) and sends it with each task: a client whose reply is rejected (or that fails, or times
out) continues next time from the state of the last round the server accepted from it, and a
checkpoint holds all of it, whichever runtime runs the clients.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.exceptions import BackendError, QFedInputError
from qfed_qiskit.federated.checkpoint import (
    Checkpoint,
    capture_rng_state,
    clear_partial_round,
    load_checkpoint,
    load_partial_round,
    restore_rng_state,
    resume_fingerprint,
    save_checkpoint,
    save_partial_round,
)
from qfed_qiskit.federated.core import (
    Arrays,
    ClientState,
    ClientUpdate,
    FedAdam,
    aggregate_round,
    check_reply,
    federated_summary,
    get_parameters,
    sample_clients,
    serialized_size,
    set_parameters,
)
from qfed_qiskit.federated.transport import FitReply, FitTask, Transport
from qfed_qiskit.provenance import git_commit
from qfed_qiskit.training.callbacks import NullCallback, TrainingCallback
from qfed_qiskit.training.centralized import save_model_outputs, summarize
from qfed_qiskit.training.loop import EvalResult, evaluate, peak_rss_mb
from qfed_qiskit.training.outputs import NewJobIds, RunDirectory

logger = logging.getLogger(__name__)

SERVER_OPTIMIZER_KEY = "server_optimizer"
"""Where the checkpoint's server state keeps FedAdam's moments."""
RESUME_HINT = "rerun with --resume {out} to continue: finished clients are not asked again"


def _unique(ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class _Loop:
    """State of one federated run (private; see :func:`run_server_loop`)."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        transport: Transport,
        model: nn.Module,
        test: TensorDataset,
        shard_sizes: Sequence[int],
        run_dir: RunDirectory,
        callback: TrainingCallback,
        server_job_ids: Callable[[], Sequence[str]] | None,
    ) -> None:
        self.config = config
        self.transport = transport
        self.model = model
        self.test = test
        self.shard_sizes = list(shard_sizes)
        self.run_dir = run_dir
        self.cb = callback
        self.fingerprint = resume_fingerprint(config)
        self.global_arrays: Arrays = get_parameters(model)
        self.client_states: dict[int, ClientState] = {}
        self.history: list[dict[str, Any]] = []
        self.round = 0
        self.prior_wall = 0.0
        self.last_eval: EvalResult | None = None
        self.server_optimizer = FedAdam.from_config(config)
        # Counted from 0 in every process, resumed or not: the engine factory is new in each.
        self._server_job_ids = NewJobIds(server_job_ids)

    # ----------------------------------------------------------------------------------------
    # Persistence
    # ----------------------------------------------------------------------------------------

    def restore(self, ckpt: Checkpoint) -> None:
        self.round = ckpt.round
        self.global_arrays = ckpt.global_arrays
        self.client_states = dict(ckpt.client_states)
        self.history = list(ckpt.server.get("history", []))
        self.prior_wall = float(ckpt.server.get("wall_time_s", 0.0))
        if self.server_optimizer is not None and SERVER_OPTIMIZER_KEY in ckpt.server:
            self.server_optimizer.load_state_dict(ckpt.server[SERVER_OPTIMIZER_KEY])
        restore_rng_state(ckpt.rng)

    def checkpoint(self) -> None:
        save_checkpoint(
            self.run_dir.path,
            Checkpoint(
                round=self.round,
                fingerprint=self.fingerprint,
                config=self.config.to_dict(),
                global_arrays=self.global_arrays,
                client_states=self.client_states,
                server=self.server_state(),
                rng=capture_rng_state(),
            ),
        )
        clear_partial_round(self.run_dir.path)
        self.run_dir.clear_jobs()  # the work of the round is in the checkpoint now

    def server_state(self) -> dict[str, Any]:
        """What the checkpoint keeps of the server: the history, the time, FedAdam's moments."""
        state: dict[str, Any] = {"history": self.history, "wall_time_s": self.wall_time()}
        if self.server_optimizer is not None:
            moments = self.server_optimizer.state_dict()
            state[SERVER_OPTIMIZER_KEY] = {  # tensors: the checkpoint loads with weights_only
                part: {k: torch.from_numpy(x.copy()) for k, x in arrays.items()}
                for part, arrays in moments.items()
            }
        return state

    def wall_time(self) -> float:
        return float(self.history[-1]["run_time_s"]) if self.history else self.prior_wall

    # ----------------------------------------------------------------------------------------
    # One round
    # ----------------------------------------------------------------------------------------

    def _collect(self, rnd: int, sampled: list[int]) -> dict[int, FitReply]:
        """Every sampled client's reply: stored ones (a resumed round), then the transport's."""
        replies = load_partial_round(
            self.run_dir.path, server_round=rnd, fingerprint=self.fingerprint
        )
        replies = {cid: r for cid, r in replies.items() if cid in sampled}
        if replies:
            self.cb.on_message(
                f"round {rnd}: replies of clients {sorted(replies)} kept from before the restart"
            )
        tasks = [
            FitTask(cid, rnd, self.global_arrays, self.client_states.get(cid))
            for cid in sampled
            if cid not in replies
        ]
        waiting = {t.client_id for t in tasks}
        self.cb.on_message(f"round {rnd}/{self.config.rounds}: clients {sorted(waiting)} training")
        fatal: FitReply | None = None
        for reply in self.transport.fit(tasks, timeout=self.config.round_timeout):
            if reply.client_id not in waiting:
                logger.warning("round %d: unexpected reply for client %d", rnd, reply.client_id)
                continue
            waiting.discard(reply.client_id)
            if reply.fatal:
                fatal = fatal or reply
                if not self.transport.concurrent:
                    break
                continue
            replies[reply.client_id] = reply
            save_partial_round(
                self.run_dir.path, server_round=rnd, fingerprint=self.fingerprint, replies=replies
            )
        if fatal is not None:
            hint = RESUME_HINT.format(out=self.run_dir.path)
            raise BackendError(f"round {rnd}, client {fatal.client_id}: {fatal.error}; {hint}")
        timeout = self.config.round_timeout
        for cid in sorted(waiting):
            reason = f"timed out after {timeout:g} s" if timeout else "no reply"
            replies[cid] = FitReply(cid, error=reason)
        return replies

    def run_round(self, rnd: int, wall_before: float) -> dict[str, Any]:
        cfg = self.config
        start = time.perf_counter()
        sampled = sample_clients(
            cfg.clients,
            fraction=cfg.fraction_fit,
            min_clients=cfg.min_clients,
            seed=cfg.seed,
            server_round=rnd,
        )
        replies = self._collect(rnd, sampled)
        bytes_down = serialized_size(self.global_arrays) * len(sampled)
        bytes_up = 0
        steps = 0
        accepted: list[ClientUpdate] = []
        new_states: dict[int, ClientState] = {}
        rejected: list[dict[str, Any]] = []
        job_ids: list[str] = []
        peak_mb = peak_rss_mb()
        for cid in sampled:  # client-id order: the aggregation order of every runtime
            reply = replies[cid]
            job_ids.extend(reply.job_ids)
            reason = reply.error
            update = reply.update
            if update is not None:
                bytes_up += serialized_size(update.arrays)
                steps += int(update.metrics.get("steps", 0))
                peak_mb = max(peak_mb, float(update.metrics.get("peak_rss_mb", 0.0)))
                reason = check_reply(
                    update,
                    self.global_arrays,
                    client_id=cid,
                    num_samples=self.shard_sizes[cid],
                    max_norm=cfg.max_update_norm,
                )
            if reason is None and reply.state is None:
                reason = "reply carries no client state"
            if reason is not None or update is None or reply.state is None:
                logger.warning("round %d: client %d rejected: %s", rnd, cid, reason)
                self.cb.on_message(f"round {rnd}: client {cid} rejected: {reason}")
                rejected.append({"client": cid, "reason": reason})
                continue
            accepted.append(update)
            new_states[cid] = reply.state
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
            server_optimizer=self.server_optimizer,
        )
        if record["status"] == "ok":
            self.client_states.update(new_states)
        else:
            self.cb.on_message(f"round {rnd} failed: {record['failure']}")
        set_parameters(self.model, self.global_arrays)
        try:
            result = evaluate(self.model, self.test)
        except BackendError as exc:  # the replies are stored: a resumed run only evaluates
            hint = RESUME_HINT.format(out=self.run_dir.path)
            raise BackendError(f"round {rnd}, server evaluation: {exc}; {hint}") from exc
        self.last_eval = result
        record["test_loss"] = result.loss
        record["test_accuracy"] = result.accuracy
        record["wall_time_s"] = time.perf_counter() - start
        record["run_time_s"] = wall_before + record["wall_time_s"]
        record["peak_rss_mb"] = peak_mb
        record["git_commit"] = git_commit()  # a run resumed in pieces may span commits
        job_ids = _unique([*job_ids, *self._server_job_ids()])
        if job_ids:  # runs whose engines submit no jobs (exact, density matrix) get no key
            record["job_ids"] = job_ids
        return record

    # ----------------------------------------------------------------------------------------
    # The run
    # ----------------------------------------------------------------------------------------

    def run(self, *, resume: bool) -> dict[str, Any]:
        """Every round from the checkpoint (``resume``) or from round 1; returns the summary."""
        config, run_dir, cb = self.config, self.run_dir, self.cb
        ckpt = load_checkpoint(run_dir.path, config=config) if resume else None
        if ckpt is not None:
            self.restore(ckpt)
            run_dir.write_metrics(self.history)
            cb.on_message(f"resuming {run_dir.path} after round {ckpt.round}")
            if ckpt.round > config.rounds:
                logger.warning("checkpoint is at round %d > rounds=%d", ckpt.round, config.rounds)
        else:
            run_dir.reset_metrics()
            self.checkpoint()  # round 0: a run that dies in its first round can be resumed too
        cb.on_message(
            f"federated ({self.transport.name}): {config.clients} clients, shards "
            f"{self.shard_sizes}, {len(self.global_arrays)} arrays, "
            f"{serialized_size(self.global_arrays):,} bytes per model"
        )
        session_start = time.perf_counter()
        for rnd in range(self.round + 1, config.rounds + 1):
            wall_before = self.prior_wall + (time.perf_counter() - session_start)
            record = self.run_round(rnd, wall_before)
            if ckpt is not None and rnd == ckpt.round + 1:
                record["resumed_after"] = ckpt.round
            self.history.append(record)
            self.round = rnd
            run_dir.append_metrics(record)
            self.checkpoint()
            logger.info("round %d: test accuracy %.4f", rnd, record["test_accuracy"])
            cb.on_phase_end(f"round {rnd}/{config.rounds}", record)
        set_parameters(self.model, self.global_arrays)
        result = self.last_eval or evaluate(self.model, self.test)
        save_model_outputs(run_dir, self.model)
        summary = summarize(
            self.model,
            config,
            result=result,
            wall_time_s=self.prior_wall + (time.perf_counter() - session_start),
            steps=sum(int(r.get("steps", 0)) for r in self.history),
            extra=federated_summary(
                config,
                history=self.history,
                shard_sizes=self.shard_sizes,
                global_arrays=self.global_arrays,
                runtime=self.transport.name,
                resumed=resume,
            ),
        )
        job_ids = _unique([j for r in self.history for j in r.get("job_ids", [])])
        if job_ids:  # hardware/runtime job ids, for tracing a run back to its jobs
            summary["job_ids"] = job_ids
        return summary


def run_server_loop(
    config: TrainConfig,
    *,
    transport: Transport,
    model: nn.Module,
    test: TensorDataset,
    shard_sizes: Sequence[int],
    run_dir: RunDirectory,
    callback: TrainingCallback | None = None,
    resume: bool = False,
    server_job_ids: Callable[[], Sequence[str]] | None = None,
    close: Callable[[], None] | None = None,
    summary_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Federated training of ``config`` through ``transport``; returns the summary.

    Writes one ``metrics.jsonl`` line per round (``round``, ``status``, ``test_accuracy``,
    ``test_loss``, ``train_loss`` = sample-weighted mean client loss, ``clients_sampled``,
    ``accepted``, ``client_lr`` (their learning rates after the round), ``clients_ok``,
    ``rejected`` = ``[{"client", "reason"}]``, ``clients_rejected``, ``bytes_down``, ``bytes_up``,
    ``steps``, ``wall_time_s``, ``run_time_s`` and, for backends that submit jobs, ``job_ids``), a
    checkpoint before round 1 and after every round (``checkpoint.pt``), the replies of the round
    in progress (``round-partial.pt``), and at the end ``summary.json``, ``model.pt`` and
    ``cnn.pt``. The job journal of the round in progress (``jobs/``, written by the engines) is
    emptied with every checkpoint.

    Args:
        config: Run settings (``clients > 1``).
        transport: Delivers tasks to clients (its ``name`` is the summary's ``runtime``).
        model: The global model, freshly built and seeded (its parameters are the round-1
            global parameters unless a checkpoint is resumed).
        test: Test set for the evaluation after every round.
        shard_sizes: Samples per client (what each reply must report).
        run_dir: Output folder.
        callback: Progress events (``on_phase_end`` per round).
        resume: Continue from the checkpoint in ``run_dir`` (same settings required).
        server_job_ids: Ids of the jobs the server's own engine submitted so far (evaluation).
        close: Called once at the end, also on errors (closes an IBM Runtime batch/session).
        summary_extra: More keys for ``summary.json``.

    Raises:
        QFedInputError: On contradictory settings, or a missing or mismatched checkpoint.
        BackendError: When a client reports its backend unavailable after retries.
    """
    if not config.federated:
        raise QFedInputError(f"clients={config.clients}: federated training needs clients >= 2")
    if len(shard_sizes) != config.clients:
        raise QFedInputError(f"{len(shard_sizes)} shard sizes for clients={config.clients}")
    loop = _Loop(
        config,
        transport=transport,
        model=model,
        test=test,
        shard_sizes=shard_sizes,
        run_dir=run_dir,
        callback=callback or NullCallback(),
        server_job_ids=server_job_ids,
    )
    try:
        summary = loop.run(resume=resume)
        summary.update(summary_extra or {})
        run_dir.write_summary(summary)
        run_dir.clear_jobs()  # the outputs' own forward passes (cnn.pt) need no journal either
        return summary
    finally:
        if close is not None:
            close()
