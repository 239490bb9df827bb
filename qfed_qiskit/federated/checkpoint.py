"""Atomic per-round checkpoints of a federated run, the replies of the round in progress, and
resuming from them."""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qfed_qiskit.config import TrainConfig, build_config, flatten_train_table
from qfed_qiskit.exceptions import ConfigError, QFedInputError
from qfed_qiskit.federated.core import Arrays, ClientState, ClientUpdate
from qfed_qiskit.federated.transport import FitReply
from qfed_qiskit.files import atomic_write_bytes

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
PARTIAL_NAME = "round-partial.pt"
"""The replies received so far in the round in progress (removed when the round's checkpoint is
written): a resumed run asks only the clients missing from it, so work already done, and paid
for on hardware, is not done again."""
FORMAT_VERSION = 1
RESUME_IGNORE = ("out", "data_dir", "extra", "rounds", "workers")
"""Settings that may change on resume: paths, ``rounds`` (a finished run can be extended) and
``workers`` (clients give the same results however many run side by side)."""


def resume_fingerprint(config: TrainConfig) -> str:
    """Fingerprint of the settings that must match for a resume (all but :data:`RESUME_IGNORE`)."""
    return config.fingerprint(ignore=RESUME_IGNORE)


def capture_rng_state() -> dict[str, Any]:
    """Global torch (CPU), NumPy and Python RNG states, in a ``weights_only``-loadable form."""
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": str(np_state["bit_generator"]),
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": random.getstate(),
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    nps = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": nps["bit_generator"],
            "state": {"key": nps["key"].numpy().astype(np.uint32), "pos": nps["pos"]},
            "has_gauss": nps["has_gauss"],
            "gauss": nps["gauss"],
        }
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


@dataclass(frozen=True)
class Checkpoint:
    """Everything needed to continue a federated run after round ``round``.

    Attributes:
        round: Last completed round.
        fingerprint: :func:`resume_fingerprint` of the run's config.
        config: The run's config as a dict (``TrainConfig.to_dict``).
        global_arrays: Global parameters after ``round``.
        client_states: Each client's optimizer/scheduler/shuffling state (clients that never
            trained successfully are absent).
        server: Server state: ``history`` (the metrics line of every round so far),
            ``wall_time_s`` (training time so far) and whatever the engine adds.
        rng: Global RNG states (:func:`capture_rng_state`).
    """

    round: int
    fingerprint: str
    config: dict[str, Any]
    global_arrays: Arrays
    client_states: dict[int, ClientState]
    server: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)


def checkpoint_path(run_dir: str | Path) -> Path:
    """Where the checkpoint of the run in ``run_dir`` lives."""
    return Path(run_dir) / CHECKPOINT_NAME


def save_checkpoint(run_dir: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` atomically (temporary file + rename) into ``run_dir``.

    A crash at any moment leaves either the previous checkpoint or the new one, never a torn file.
    """
    payload = {
        "format": FORMAT_VERSION,
        "round": checkpoint.round,
        "fingerprint": checkpoint.fingerprint,
        "config": checkpoint.config,
        "global_arrays": {
            k: torch.from_numpy(v.copy()) for k, v in checkpoint.global_arrays.items()
        },
        "global_names": list(checkpoint.global_arrays),
        "client_states": {int(k): s.to_dict() for k, s in checkpoint.client_states.items()},
        "server": checkpoint.server,
        "rng": checkpoint.rng,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    path = checkpoint_path(run_dir)
    atomic_write_bytes(path, buf.getvalue())
    logger.info("checkpoint after round %d written to %s", checkpoint.round, path)
    return path


def _reply_to_dict(reply: FitReply) -> dict[str, Any]:
    return {
        "client_id": reply.client_id,
        "update": None if reply.update is None else reply.update.to_dict(),
        "state": None if reply.state is None else reply.state.to_dict(),
        "error": reply.error,
        "job_ids": list(reply.job_ids),
    }


def _reply_from_dict(data: Mapping[str, Any]) -> FitReply:
    return FitReply(
        client_id=int(data["client_id"]),
        update=None if data["update"] is None else ClientUpdate.from_dict(data["update"]),
        state=None if data["state"] is None else ClientState.from_dict(data["state"]),
        error=data["error"],
        job_ids=tuple(data["job_ids"]),
    )


def save_partial_round(
    run_dir: str | Path, *, server_round: int, fingerprint: str, replies: Mapping[int, FitReply]
) -> None:
    """Atomically store the replies received so far in round ``server_round``."""
    payload = {
        "format": FORMAT_VERSION,
        "round": server_round,
        "fingerprint": fingerprint,
        "replies": {int(cid): _reply_to_dict(r) for cid, r in replies.items()},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(Path(run_dir) / PARTIAL_NAME, buf.getvalue())


def load_partial_round(
    run_dir: str | Path, *, server_round: int, fingerprint: str
) -> dict[int, FitReply]:
    """The stored replies of round ``server_round`` (empty when none were stored for it)."""
    path = Path(run_dir) / PARTIAL_NAME
    if not path.is_file():
        return {}
    try:
        data = torch.load(path, weights_only=True)
    except Exception as exc:  # a foreign file: ignore it, the round is simply redone
        logger.warning("%s: unreadable (%s); the round is redone", path, type(exc).__name__)
        return {}
    if data.get("round") != server_round or data.get("fingerprint") != fingerprint:
        return {}
    return {int(cid): _reply_from_dict(r) for cid, r in data["replies"].items()}


def clear_partial_round(run_dir: str | Path) -> None:
    """Remove the stored replies (the round they belong to is checkpointed, or restarted)."""
    (Path(run_dir) / PARTIAL_NAME).unlink(missing_ok=True)


def _config_diff(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    keys = sorted((set(stored) | set(current)) - set(RESUME_IGNORE))
    return [
        f"{k} {stored.get(k)!r} -> {current.get(k)!r}"
        for k in keys
        if stored.get(k) != current.get(k)
    ]


def _stored_fingerprint(stored: Mapping[str, Any], *, recorded: str) -> str:
    """The resume fingerprint of a checkpoint's stored config, under today's list of settings.

    A setting added after the checkpoint was written gets its default, which reproduces what the
    older version did, so its checkpoints stay resumable. A stored config this version cannot
    read (a setting it does not know) keeps the ``recorded`` fingerprint, which will not match.
    """
    try:
        config = TrainConfig.from_dict(stored)
    except (TypeError, ConfigError):  # a setting this version does not know, or now refuses
        return recorded
    return resume_fingerprint(config)


def load_checkpoint(run_dir: str | Path, *, config: TrainConfig | None = None) -> Checkpoint:
    """Read the checkpoint in ``run_dir``.

    Args:
        run_dir: The run's output folder.
        config: If given, the checkpoint must have been written by a run with the same settings
            (all but :data:`RESUME_IGNORE`).

    Returns:
        The checkpoint.

    Raises:
        QFedInputError: If there is no readable checkpoint, or it belongs to a different config.
    """
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise QFedInputError(f"{run_dir}: no checkpoint ({CHECKPOINT_NAME}) to resume from")
    try:
        data = torch.load(path, weights_only=True)
    except Exception as exc:  # a torn or foreign file; the atomic write makes this unlikely
        raise QFedInputError(f"{path}: unreadable checkpoint ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise QFedInputError(f"{path}: not a qfed-qiskit checkpoint (format {FORMAT_VERSION})")
    fingerprint = _stored_fingerprint(data["config"], recorded=str(data["fingerprint"]))
    if config is not None and fingerprint != resume_fingerprint(config):
        diff = _config_diff(data["config"], config.to_dict())
        raise QFedInputError(
            f"{run_dir}: checkpoint was written with a different config "
            f"({'; '.join(diff) or 'fingerprint ' + data['fingerprint']}); refusing to resume"
        )
    arrays = {k: data["global_arrays"][k].numpy().copy() for k in data["global_names"]}
    return Checkpoint(
        round=int(data["round"]),
        fingerprint=fingerprint,
        config=dict(data["config"]),
        global_arrays=arrays,
        client_states={int(k): ClientState.from_dict(v) for k, v in data["client_states"].items()},
        server=dict(data["server"]),
        rng=dict(data["rng"]),
    )


def resume_config(
    run_dir: str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    file_values: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """The config to continue the run in ``run_dir`` with.

    Starts from the config stored in the checkpoint; explicitly given values (a TOML file's and
    CLI flags') may only change what does not affect the result (``rounds`` to extend the run,
    ``data_dir``). ``out`` is ``run_dir``.

    Args:
        run_dir: The run's output folder.
        overrides: CLI flag values (None values are ignored).
        file_values: Values of a ``--config`` TOML file, if one was given.

    Raises:
        QFedInputError: If there is no checkpoint, ``out`` names another folder, or a given value
            would change the run's fingerprint.
    """
    ckpt = load_checkpoint(run_dir)
    given = {
        **flatten_train_table(file_values or {}),
        **{k: v for k, v in flatten_train_table(overrides or {}).items() if v is not None},
    }
    out = given.get("out")
    if out is not None and Path(out).resolve() != Path(run_dir).resolve():
        raise QFedInputError(f"--out {out} contradicts --resume {run_dir}; give one of them")
    stored = {k: v for k, v in ckpt.config.items() if k not in ("out", "extra")}
    config = build_config(stored, {**given, "out": str(run_dir)}, source=f"--resume {run_dir}")
    if resume_fingerprint(config) != ckpt.fingerprint:
        diff = _config_diff(ckpt.config, config.to_dict())
        raise QFedInputError(
            f"--resume {run_dir}: these settings differ from the checkpoint's and would change the "
            f"result: {'; '.join(diff)}"
        )
    return config
