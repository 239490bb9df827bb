"""Federated client step and server aggregation as plain functions (no Flower, no circuits).

This module is the shared core of every federated runtime: the embedded in-process engine
(:mod:`qfed_qiskit.federated.embedded`) and the Flower apps call the same functions, so both give
the same numbers. Nothing here imports ``flwr`` or knows about quantum circuits: a model is any
:class:`torch.nn.Module`, and what travels between server and clients is a mapping of parameter
names to NumPy arrays (:data:`Arrays`).

The API, in the order a round uses it:

* :func:`get_parameters` / :func:`set_parameters`: the model's trainable parameters as named arrays
  (for QT: the 1,497 circuit angles and mapping weights; for the classical CNN: all 6,690 weights).
* :func:`client_fit`: load the global arrays into the client's model, train ``local_epochs`` epochs
  on the client's shard and return a :class:`ClientUpdate` (what is sent back) plus the client's new
  :class:`ClientState` (Adam moments, ReduceLROnPlateau counters and the shuffling generator, which
  the client keeps across rounds like the reference and which checkpoints must save).
* :func:`validate_update`: ``None`` or the reason a reply is unusable (non-finite values, wrong
  names/shapes/dtype, a delta norm above the bound).
* :func:`fedavg` (FedAvg, McMahan et al., arXiv 1602.05629: mean weighted by sample counts) or
  :func:`dp_fedavg` (server-side DP-FedAvg with fixed clipping, McMahan et al., arXiv 1710.06963).
* :func:`serialized_size`: bytes of the arrays in the encoding Flower's ``ArrayRecord`` uses.
"""

from __future__ import annotations

import copy
import io
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import TensorDataset

from qfed_qiskit.config import TrainConfig, clients_per_round
from qfed_qiskit.exceptions import QFedError, QFedInputError
from qfed_qiskit.training.builders import build_optimizer, build_scheduler
from qfed_qiskit.training.callbacks import NullCallback, TrainingCallback
from qfed_qiskit.training.loop import peak_rss_mb, steps_per_epoch, torch_threads, train_epoch

logger = logging.getLogger(__name__)

Array = npt.NDArray[Any]
Arrays = dict[str, Array]
"""Named parameter arrays, in the model's ``named_parameters`` order."""

# Tags that keep the seeded streams of different purposes apart (see derive_seed).
SEED_CLIENT = 1
SEED_SAMPLING = 2
SEED_DP_NOISE = 3

CLIENT_TORCH_THREADS = 1
"""Torch threads of every client's local training, in every runtime. Float32 reductions in
torch's CPU kernels (the convolution's weight gradient) depend on the thread count, so one fixed
count gives a client the same result whether it trains alone, beside others in worker processes
(``workers``), or on a Flower SuperNode; parallelism comes from clients side by side."""


class ClientCancelledError(QFedError):
    """A client's local training was stopped because the server gave up waiting for it."""


# --------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------


def derive_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed derived from ``seed`` and integer ``parts`` (independent streams per purpose).

    Args:
        seed: The run's seed (``config.seed``).
        *parts: Integers naming the stream, e.g. ``(SEED_CLIENT, client_id)``.

    Returns:
        A non-negative integer usable by ``torch.Generator.manual_seed`` and NumPy.
    """
    state = np.random.SeedSequence([int(seed), *(int(p) for p in parts)]).generate_state(
        1, dtype=np.uint64
    )
    return int(state[0]) & (2**63 - 1)


# --------------------------------------------------------------------------------------------
# Parameters as named arrays
# --------------------------------------------------------------------------------------------


def get_parameters(model: nn.Module) -> Arrays:
    """The model's trainable parameters as independent NumPy copies, keyed by name.

    Only parameters with ``requires_grad`` are included: they are what FedAvg averages.
    """
    return {
        name: p.detach().cpu().numpy().copy()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def set_parameters(model: nn.Module, arrays: Mapping[str, Array]) -> None:
    """Copy ``arrays`` into the model's trainable parameters (in place, no autograd).

    Args:
        model: The model to update.
        arrays: One array per trainable parameter, same names and shapes as
            :func:`get_parameters` returns (dtype is converted to the parameter's).

    Raises:
        QFedInputError: If a name is missing or unexpected, or a shape differs.
    """
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(arrays))
    unexpected = sorted(set(arrays) - set(params))
    if missing or unexpected:
        raise QFedInputError(
            f"parameter names do not match the model: missing {missing}, unexpected {unexpected}"
        )
    values = {name: np.asarray(arrays[name]) for name in params}
    for name, p in params.items():  # check everything before changing anything
        if tuple(values[name].shape) != tuple(p.shape):
            raise QFedInputError(
                f"parameter {name!r}: expected shape {tuple(p.shape)}, got {values[name].shape}"
            )
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(torch.from_numpy(np.ascontiguousarray(values[name])).to(p.dtype))


def arrays_delta(arrays: Mapping[str, Array], reference: Mapping[str, Array]) -> Arrays:
    """``arrays - reference`` per name, in float64."""
    return {
        k: np.asarray(arrays[k], np.float64) - np.asarray(reference[k], np.float64)
        for k in reference
    }


def arrays_norm(arrays: Mapping[str, Array]) -> float:
    """Global L2 norm of all arrays together (computed in float64)."""
    return math.sqrt(
        sum(float(np.sum(np.square(np.asarray(a, np.float64)))) for a in arrays.values())
    )


def serialized_size(arrays: Mapping[str, Array]) -> int:
    """Bytes needed to send ``arrays``: each name plus the array in NumPy ``.npy`` format.

    This is the payload of Flower's ``ArrayRecord`` (``Array.from_numpy_ndarray`` stores
    ``np.save`` bytes per array); the protobuf framing adds only a few bytes per array.
    """
    total = 0
    for name, value in arrays.items():
        buf = io.BytesIO()
        np.save(buf, np.asarray(value), allow_pickle=False)
        total += len(name.encode()) + len(buf.getvalue())
    return total


# --------------------------------------------------------------------------------------------
# Client side
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientState:
    """What a client keeps between rounds: optimizer, scheduler and shuffling RNG state.

    Treat it as immutable: :func:`client_fit` deep-copies it before use and returns a new one,
    so a stored state is never changed by later training.

    Attributes:
        optimizer: ``torch.optim.Adam.state_dict()``.
        scheduler: ``ReduceLROnPlateau.state_dict()``.
        generator: State of the ``torch.Generator`` that shuffles the client's shard.
        fits: Number of completed :func:`client_fit` calls.
    """

    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    generator: torch.Tensor
    fits: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of tensors and Python values (``torch.load(weights_only=True)`` safe)."""
        return {
            "optimizer": copy.deepcopy(self.optimizer),
            "scheduler": copy.deepcopy(self.scheduler),
            "generator": self.generator.clone(),
            "fits": self.fits,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientState:
        """Inverse of :meth:`to_dict`."""
        return cls(
            optimizer=copy.deepcopy(dict(data["optimizer"])),
            scheduler=copy.deepcopy(dict(data["scheduler"])),
            generator=data["generator"].clone(),
            fits=int(data["fits"]),
        )

    def to_bytes(self) -> bytes:
        """Serialise with :func:`torch.save` (for runtimes that store state as bytes)."""
        buf = io.BytesIO()
        torch.save(self.to_dict(), buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ClientState:
        """Inverse of :meth:`to_bytes` (loaded with ``weights_only=True``)."""
        return cls.from_dict(torch.load(io.BytesIO(data), weights_only=True))


@dataclass(frozen=True)
class ClientUpdate:
    """A client's reply to one round: its trained parameters and how it got them.

    Attributes:
        client_id: Which client (partition index) trained.
        arrays: Trained parameters, same names as the global arrays it started from.
        num_samples: Size of the client's shard (the FedAvg weight).
        loss: Mean training loss over the round's last local epoch.
        metrics: Further numbers (``accuracy``, ``steps``, ``lr``, ``fit_time_s``, ...).
    """

    client_id: int
    arrays: Arrays
    num_samples: int
    loss: float
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of tensors and Python values (``torch.load(weights_only=True)`` safe)."""
        return {
            "client_id": self.client_id,
            "names": list(self.arrays),
            "arrays": {k: torch.from_numpy(np.array(v, copy=True)) for k, v in self.arrays.items()},
            "num_samples": self.num_samples,
            "loss": self.loss,
            "metrics": dict(self.metrics),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientUpdate:
        """Inverse of :meth:`to_dict`."""
        return cls(
            client_id=int(data["client_id"]),
            arrays={k: data["arrays"][k].numpy().copy() for k in data["names"]},
            num_samples=data["num_samples"],
            loss=float(data["loss"]),
            metrics={str(k): float(x) for k, x in data["metrics"].items()},
        )


class _StopCallback:
    """Forwards progress and raises :class:`ClientCancelledError` once ``should_stop()``."""

    def __init__(self, inner: TrainingCallback, should_stop: Callable[[], bool]) -> None:
        self._inner = inner
        self._should_stop = should_stop

    def check(self) -> None:
        if self._should_stop():
            raise ClientCancelledError("client training cancelled")

    def on_phase_start(self, name: str, total_steps: int) -> None:
        self.check()
        self._inner.on_phase_start(name, total_steps)

    def on_step(self, loss: float) -> None:
        self.check()
        self._inner.on_step(loss)

    def on_phase_end(self, name: str, metrics: dict[str, Any]) -> None:
        self.check()
        self._inner.on_phase_end(name, metrics)

    def on_message(self, text: str) -> None:
        self.check()
        self._inner.on_message(text)


def client_generator(config: TrainConfig, client_id: int) -> torch.Generator:
    """The freshly seeded shuffling generator of client ``client_id`` (before its first round)."""
    return torch.Generator().manual_seed(derive_seed(config.seed, SEED_CLIENT, client_id))


def client_steps_per_epoch(config: TrainConfig, num_samples: int) -> int:
    """Optimizer steps a client makes per local epoch on a shard of ``num_samples``."""
    return steps_per_epoch(num_samples, config.batch_size, config.max_steps_per_epoch)


def restart_plateau_tracking(scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau) -> None:
    """Forget the best loss and the bad-epoch count of ``scheduler``; keep its learning rate.

    After FedAvg the client starts from a model it did not train, whose local loss is usually
    above the client's own best of the previous round; without this, every round would count
    as non-improving epochs and the learning rate would halve round after round.
    """
    scheduler.best = scheduler.mode_worse
    scheduler.num_bad_epochs = 0
    scheduler.cooldown_counter = 0


def client_fit(
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
    """One client's local training for one round.

    Loads ``global_arrays`` into ``model``, rebuilds Adam and ReduceLROnPlateau from ``state``
    (fresh ones on the first round), trains ``config.local_epochs`` epochs of
    :func:`~qfed_qiskit.training.loop.train_epoch` on ``data`` (the scheduler steps on each
    epoch's loss, as in centralized training; with ``config.plateau_step == "round"`` once, on
    the round's last epoch's loss) on :data:`CLIENT_TORCH_THREADS` torch threads and returns the
    trained arrays. With ``config.plateau_scope == "round"`` the scheduler keeps its learning rate
    but forgets its best loss and bad-epoch count at the start of the round
    (:func:`restart_plateau_tracking`); with ``config.optimizer_scope == "round"`` Adam starts
    with fresh moments every round, at the learning rate the scheduler reached.

    ``model`` is used as scratch space: its parameters are overwritten and trained. Neither
    ``state`` nor ``global_arrays`` is modified, so a caller that abandons a slow call (see
    ``should_stop``) keeps consistent data as long as it does not reuse that ``model``.

    Args:
        model: The client's model (any module; only trainable parameters are exchanged).
        global_arrays: Global parameters from the server (:func:`get_parameters` layout).
        data: The client's shard, ``TensorDataset(images, labels)``.
        config: Run settings (``local_epochs``, ``batch_size``, ``max_steps_per_epoch``,
            optimizer and scheduler settings, ``seed``).
        client_id: The client's index (seeds its shuffling generator on the first round).
        state: The state this client returned last time (None: first round).
        server_round: Round number, recorded in the metrics.
        callback: Receives one phase per call and one ``on_step`` per optimizer step.
        should_stop: Polled before every step; once it returns True, training stops with
            :class:`ClientCancelledError`.

    Returns:
        The update to send to the server and the client's new state.

    Raises:
        QFedInputError: If ``global_arrays`` does not fit the model or ``data`` is empty.
        ClientCancelledError: If ``should_stop`` asked to stop.
    """
    n = len(data)
    if n < 1:
        raise QFedInputError(f"client {client_id}: empty data shard")
    stop = should_stop or (lambda: False)
    cb = _StopCallback(callback or NullCallback(), stop)
    cb.check()
    start = time.perf_counter()
    set_parameters(model, global_arrays)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    generator = client_generator(config, client_id)
    fits = 0
    if state is not None:
        if config.optimizer_scope == "client":
            optimizer.load_state_dict(copy.deepcopy(state.optimizer))
        else:  # fresh moments, at the learning rate the client's scheduler had reached
            for group, saved in zip(
                optimizer.param_groups, state.optimizer["param_groups"], strict=True
            ):
                group["lr"] = saved["lr"]
        scheduler.load_state_dict(copy.deepcopy(state.scheduler))
        generator.set_state(state.generator.clone())
        fits = state.fits
        if config.plateau_scope == "round":
            restart_plateau_tracking(scheduler)
    loss = accuracy = 0.0
    steps = 0
    with torch_threads(CLIENT_TORCH_THREADS):
        for _ in range(config.local_epochs):
            result = train_epoch(
                model,
                data,
                optimizer,
                batch_size=config.batch_size,
                generator=generator,
                max_steps=config.max_steps_per_epoch,
                callback=cb,
            )
            if config.plateau_step == "epoch":
                scheduler.step(result.loss)
            loss, accuracy = result.loss, result.accuracy
            steps += result.steps
    if config.plateau_step == "round":
        scheduler.step(loss)
    cb.check()
    update = ClientUpdate(
        client_id=client_id,
        arrays=get_parameters(model),
        num_samples=n,
        loss=loss,
        metrics={
            "accuracy": accuracy,
            "steps": float(steps),
            "lr": float(optimizer.param_groups[0]["lr"]),
            "round": float(server_round),
            "fit_time_s": time.perf_counter() - start,
            "peak_rss_mb": peak_rss_mb(),
        },
    )
    new_state = ClientState(
        optimizer=copy.deepcopy(optimizer.state_dict()),
        scheduler=copy.deepcopy(scheduler.state_dict()),
        generator=generator.get_state().clone(),
        fits=fits + 1,
    )
    return update, new_state


class ClientFn(Protocol):
    """Signature of :func:`client_fit`; runtimes accept any such callable (tests inject faults)."""

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
        """Train one client for one round."""
        ...


# --------------------------------------------------------------------------------------------
# Server side
# --------------------------------------------------------------------------------------------


def sample_clients(
    num_clients: int,
    *,
    fraction: float,
    min_clients: int,
    seed: int,
    server_round: int,
) -> list[int]:
    """The clients asked to train in ``server_round``, in increasing order.

    ``max(min_clients, int(fraction * num_clients))`` clients (at least 1, at most all) are drawn
    without replacement from a generator seeded by ``(seed, server_round)``, so a resumed run
    samples the same clients as an uninterrupted one. ``fraction == 1`` selects everyone.
    """
    if fraction >= 1.0:
        return list(range(num_clients))
    k = clients_per_round(num_clients, fraction=fraction, min_clients=min_clients)
    rng = np.random.default_rng(derive_seed(seed, SEED_SAMPLING, server_round))
    return sorted(int(c) for c in rng.choice(num_clients, size=k, replace=False))


def validate_update(
    update: ClientUpdate, reference: Mapping[str, Array], *, max_norm: float
) -> str | None:
    """Check a client reply before it is averaged.

    Args:
        update: The reply.
        reference: The global arrays the client was sent (names, shapes and dtypes to expect).
        max_norm: Largest allowed global L2 norm of ``update.arrays - reference``.

    Returns:
        None if the update is usable, else a one-line reason.
    """
    if isinstance(update.num_samples, bool) or not isinstance(update.num_samples, int):
        return f"num_samples is {update.num_samples!r}, expected an integer"
    if update.num_samples < 1:
        return f"num_samples is {update.num_samples}, expected >= 1"
    if not math.isfinite(update.loss):
        return f"loss is {update.loss}"
    missing = [k for k in reference if k not in update.arrays]
    unexpected = [k for k in update.arrays if k not in reference]
    if missing or unexpected:
        return f"parameter names differ: missing {missing}, unexpected {unexpected}"
    for name, ref in reference.items():
        value = update.arrays[name]
        if not isinstance(value, np.ndarray):
            return f"{name!r} is a {type(value).__name__}, expected a numpy array"
        if value.shape != ref.shape:
            return f"{name!r} has shape {value.shape}, expected {ref.shape}"
        if value.dtype != ref.dtype:
            return f"{name!r} has dtype {value.dtype}, expected {ref.dtype}"
        if not np.all(np.isfinite(value)):
            bad = int(value.size - np.count_nonzero(np.isfinite(value)))
            return f"{name!r} has {bad} non-finite values"
    norm = arrays_norm(arrays_delta(update.arrays, reference))
    if not norm <= max_norm:
        return f"update norm {norm:.4g} exceeds the bound {max_norm:.4g}"
    return None


def check_reply(
    update: ClientUpdate,
    reference: Mapping[str, Array],
    *,
    client_id: int,
    num_samples: int,
    max_norm: float,
) -> str | None:
    """Everything the server checks before averaging a reply: :func:`validate_update`, and that
    the reply names the client it was asked of and that client's shard size.

    Returns:
        None if the reply is usable, else a one-line reason.
    """
    reason = validate_update(update, reference, max_norm=max_norm)
    if reason is None and update.client_id != client_id:
        reason = f"reply names client {update.client_id}"
    if reason is None and update.num_samples != num_samples:
        reason = f"reports {update.num_samples} samples, its shard has {num_samples}"
    return reason


def _check_updates(updates: Sequence[ClientUpdate]) -> list[str]:
    if not updates:
        raise QFedInputError("cannot aggregate zero client updates")
    names = list(updates[0].arrays)
    for u in updates[1:]:
        if list(u.arrays) != names:
            raise QFedInputError(f"client {u.client_id}: parameter names differ from the first")
    return names


def fedavg(updates: Sequence[ClientUpdate]) -> Arrays:
    """FedAvg: the mean of the clients' arrays weighted by their sample counts.

    McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized Data",
    arXiv 1602.05629. With equal shards this is the plain mean (the QFed reference). Computed in
    float64 with :func:`numpy.average` and cast back to each array's dtype.

    Args:
        updates: Validated updates (same names, shapes and dtypes).

    Returns:
        The averaged arrays.

    Raises:
        QFedInputError: If ``updates`` is empty or the names differ.
    """
    names = _check_updates(updates)
    weights = np.array([u.num_samples for u in updates], dtype=np.float64)
    out: Arrays = {}
    for name in names:
        stack = np.stack([np.asarray(u.arrays[name], np.float64) for u in updates])
        out[name] = np.average(stack, axis=0, weights=weights).astype(updates[0].arrays[name].dtype)
    return out


@dataclass(frozen=True)
class DPResult:
    """Outcome of one DP-FedAvg aggregation.

    Attributes:
        arrays: The new global arrays.
        noise_std: Standard deviation of the Gaussian noise added to the mean delta
            (``noise_multiplier * clip / n``).
        clipped: How many client deltas were scaled down to norm ``clip``.
        norms: Each client's delta norm before clipping.
    """

    arrays: Arrays
    noise_std: float
    clipped: int
    norms: tuple[float, ...]


def clip_delta(delta: Mapping[str, Array], clip: float) -> tuple[Arrays, float]:
    """Scale ``delta`` so its global L2 norm is at most ``clip``.

    Returns:
        The clipped delta (float64) and the norm before clipping.
    """
    norm = arrays_norm(delta)
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    return {k: np.asarray(v, np.float64) * scale for k, v in delta.items()}, norm


def dp_fedavg(
    updates: Sequence[ClientUpdate],
    reference: Mapping[str, Array],
    *,
    clip: float,
    noise_multiplier: float,
    rng: np.random.Generator,
) -> DPResult:
    """Server-side DP-FedAvg with fixed clipping.

    Each client delta ``Δ_k = w_k - w`` is clipped to L2 norm ``clip`` (C); the clipped deltas
    are averaged with equal weights (so one client moves the mean by at most C/n), Gaussian noise
    ``N(0, (σ·C/n)²)`` is added to every coordinate of the mean, and the result is added to the
    global arrays. McMahan et al., "Learning Differentially Private Recurrent Language Models",
    arXiv 1710.06963 (Flower's server-side fixed clipping does the same). No privacy accountant
    is included: ``σ`` and ``C`` are reported, the (ε, δ) bookkeeping is the user's.

    Args:
        updates: Validated updates.
        reference: The global arrays the round started from.
        clip: Clipping norm C (> 0).
        noise_multiplier: σ (>= 0; 0 means clipping only).
        rng: Source of the noise (seed it for reproducible runs).

    Returns:
        The new arrays and what was done.

    Raises:
        QFedInputError: If there are no updates, or ``clip``/``noise_multiplier`` are out of range.
    """
    names = _check_updates(updates)
    if not clip > 0:
        raise QFedInputError(f"dp clip must be > 0, got {clip}")
    if not noise_multiplier >= 0:
        raise QFedInputError(f"dp noise multiplier must be >= 0, got {noise_multiplier}")
    n = len(updates)
    clipped_deltas: list[Arrays] = []
    norms: list[float] = []
    for u in updates:
        d, norm = clip_delta(arrays_delta(u.arrays, reference), clip)
        clipped_deltas.append(d)
        norms.append(norm)
    std = noise_multiplier * clip / n
    out: Arrays = {}
    for name in names:
        mean = np.mean(np.stack([d[name] for d in clipped_deltas]), axis=0)
        if std > 0:
            mean = mean + rng.normal(0.0, std, size=mean.shape)
        ref = np.asarray(reference[name])
        out[name] = (ref.astype(np.float64) + mean).astype(ref.dtype)
    return DPResult(
        arrays=out,
        noise_std=std,
        clipped=sum(1 for x in norms if x > clip),
        norms=tuple(norms),
    )


class FedAdam:
    """Server-side Adam on the mean client delta: FedAdam of Reddi et al., "Adaptive Federated
    Optimization", arXiv 2003.00295, Algorithm 2 (as Flower's ``FedAdam``: zero-initialised
    moments, no bias correction).

    With ``Δ`` the FedAvg mean minus the global arrays, per coordinate
    ``m ← β1 m + (1 - β1) Δ``, ``v ← β2 v + (1 - β2) Δ²`` and ``x ← x + η m / (√v + τ)``, in
    float64, cast back to each array's dtype. The moments are server state: the server loop
    checkpoints them (:meth:`state_dict`) so a resumed run continues bit for bit.
    """

    def __init__(self, *, lr: float, beta1: float, beta2: float, tau: float) -> None:
        self.lr, self.beta1, self.beta2, self.tau = lr, beta1, beta2, tau
        self.m: dict[str, npt.NDArray[np.float64]] = {}
        self.v: dict[str, npt.NDArray[np.float64]] = {}

    @classmethod
    def from_config(cls, config: TrainConfig) -> FedAdam | None:
        """The run's server optimizer (None for plain FedAvg)."""
        if config.server_optimizer != "fedadam":
            return None
        return cls(
            lr=config.server_lr,
            beta1=config.server_beta1,
            beta2=config.server_beta2,
            tau=config.server_tau,
        )

    def step(self, reference: Mapping[str, Array], averaged: Mapping[str, Array]) -> Arrays:
        """The new global arrays, given the round's start and its FedAvg mean."""
        out: Arrays = {}
        for name, ref in reference.items():
            start = np.asarray(ref, np.float64)
            delta = np.asarray(averaged[name], np.float64) - start
            m = self.m.get(name, np.zeros_like(delta))
            v = self.v.get(name, np.zeros_like(delta))
            m = self.beta1 * m + (1.0 - self.beta1) * delta
            v = self.beta2 * v + (1.0 - self.beta2) * delta * delta
            self.m[name], self.v[name] = m, v
            moved = start + self.lr * m / (np.sqrt(v) + self.tau)
            out[name] = moved.astype(np.asarray(ref).dtype)
        return out

    def state_dict(self) -> dict[str, dict[str, npt.NDArray[np.float64]]]:
        """The moments, by array name."""
        return {"m": dict(self.m), "v": dict(self.v)}

    def load_state_dict(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        """Restore :meth:`state_dict` (values may be tensors or arrays)."""
        self.m = {k: np.asarray(x, np.float64).copy() for k, x in state["m"].items()}
        self.v = {k: np.asarray(x, np.float64).copy() for k, x in state["v"].items()}


def weighted_loss(updates: list[ClientUpdate]) -> float | None:
    """Mean client loss weighted by sample count (None without updates)."""
    if not updates:
        return None
    return float(np.average([u.loss for u in updates], weights=[u.num_samples for u in updates]))


def aggregate_round(
    *,
    rnd: int,
    config: TrainConfig,
    reference: Arrays,
    sampled: list[int],
    accepted: list[ClientUpdate],
    rejected: list[dict[str, Any]],
    bytes_down: int,
    bytes_up: int,
    steps: int,
    server_optimizer: FedAdam | None = None,
) -> tuple[Arrays, dict[str, Any]]:
    """The server side of one round, shared by every runtime.

    Averages the accepted updates (FedAvg, or DP-FedAvg when ``config.dp_clip`` is set, with noise
    seeded by the round; with ``server_optimizer``, FedAdam steps on the FedAvg mean and its
    moments are updated in place) unless fewer than ``config.min_clients`` were accepted, in
    which case the round fails and ``reference`` is returned unchanged.

    Returns:
        The new global arrays and the round's metrics record (``status`` ``"ok"`` or
        ``"failed"``, with ``failure`` saying why).
    """
    record: dict[str, Any] = {
        "round": rnd,
        "clients_sampled": sampled,
        "accepted": [u.client_id for u in accepted],
        "rejected": rejected,
        "clients_ok": len(accepted),
        "clients_rejected": len(rejected),
        "train_loss": weighted_loss(accepted),
        # Each accepted client's learning rate after its local epochs (same order as "accepted").
        "client_lr": [u.metrics.get("lr") for u in accepted],
        "bytes_down": bytes_down,
        "bytes_up": bytes_up,
        "steps": steps,
    }
    if len(accepted) < config.min_clients:
        record["status"] = "failed"
        record["failure"] = (
            f"{len(accepted)} valid update(s), fewer than min_clients={config.min_clients}"
        )
        logger.warning("round %d failed: %s; global model unchanged", rnd, record["failure"])
        return reference, record
    record["status"] = "ok"
    if server_optimizer is not None:
        return server_optimizer.step(reference, fedavg(accepted)), record
    if config.dp_clip is None:
        return fedavg(accepted), record
    rng = np.random.default_rng(derive_seed(config.seed, SEED_DP_NOISE, rnd))
    dp = dp_fedavg(
        accepted, reference, clip=config.dp_clip, noise_multiplier=config.dp_noise, rng=rng
    )
    record["dp_noise_std"] = dp.noise_std
    record["dp_clipped"] = dp.clipped
    return dp.arrays, record


def federated_summary(
    config: TrainConfig,
    *,
    history: Sequence[Mapping[str, Any]],
    shard_sizes: Sequence[int],
    global_arrays: Mapping[str, Array],
    runtime: str,
    resumed: bool,
) -> dict[str, Any]:
    """The federated keys of ``summary.json`` (both runtimes write the same ones).

    Args:
        config: The run's configuration.
        history: One record per finished round (as written to ``metrics.jsonl``).
        shard_sizes: Samples per client.
        global_arrays: The final global parameters.
        runtime: ``"embedded"`` or ``"flower"``.
        resumed: Whether the run continued from a checkpoint.
    """
    return {
        "rounds": len(history),
        "rounds_failed": sum(1 for r in history if r.get("status") != "ok"),
        "clients": config.clients,
        "local_epochs": config.local_epochs,
        "partition": config.partition,
        "shard_sizes": list(shard_sizes),
        "bytes_down_total": sum(int(r["bytes_down"]) for r in history),
        "bytes_up_total": sum(int(r["bytes_up"]) for r in history),
        "bytes_total": sum(int(r["bytes_down"]) + int(r["bytes_up"]) for r in history),
        "bytes_per_model": serialized_size(global_arrays),
        "clients_rejected_total": sum(int(r["clients_rejected"]) for r in history),
        "dp": {
            "enabled": config.dp_clip is not None,
            "clip": config.dp_clip,
            "noise_multiplier": config.dp_noise if config.dp_clip is not None else None,
            "accountant": None,
        },
        "runtime": runtime,
        "resumed": resumed,
        # The largest of the server's and every client process's peak, over all sessions.
        "peak_rss_mb": max([peak_rss_mb(), *(float(r.get("peak_rss_mb", 0)) for r in history)]),
    }
