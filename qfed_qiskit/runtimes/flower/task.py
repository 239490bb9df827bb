"""Glue shared by the Flower apps: run config to TrainConfig, data, client shards and models."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from qfed_qiskit.config import TrainConfig, build_config
from qfed_qiskit.exceptions import ConfigError, QFedInputError
from qfed_qiskit.models.quantum_train import EngineFactory

DATA_CHECKS = ("strict", "relaxed")
"""``data-check`` values: ``strict`` (full FashionMNIST) or ``relaxed`` (any consistent size)."""

APP_ONLY_KEYS = ("data-check",)
"""Run-config keys that are not TrainConfig fields."""

NOT_RUN_CONFIG = ("epochs", "runtime", "extra")
"""TrainConfig fields with no run-config key (centralized-only, fixed, or internal)."""

RunConfig = dict[str, bool | int | float | str]


@dataclass(frozen=True)
class AppSettings:
    """Everything the ServerApp and ClientApp read from Flower's run config.

    Attributes:
        config: The training settings (``runtime == "flower"``).
        data_check: ``"strict"`` requires the full FashionMNIST (60,000 / 10,000 images, as the
            embedded runtime does); ``"relaxed"`` accepts any consistent size (small test files).
    """

    config: TrainConfig
    data_check: str = "strict"


def _fields() -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(TrainConfig) if f.name not in NOT_RUN_CONFIG}


def _is_optional(field: dataclasses.Field[Any]) -> bool:
    return "None" in str(field.type)


def run_config_keys() -> tuple[str, ...]:
    """Every run-config key the apps read (TrainConfig fields in flag style, then app keys)."""
    return (*(name.replace("_", "-") for name in _fields()), *APP_ONLY_KEYS)


def settings_from_run_config(run_config: Mapping[str, Any]) -> AppSettings:
    """Validate Flower's run config and turn it into :class:`AppSettings`.

    Keys are TrainConfig fields in flag style (``local-epochs``), as in qfed-qiskit's TOML configs,
    plus ``data-check``. Flower's run config cannot hold ``None``, so for settings that may be
    unset (``lr``, ``max-steps-per-epoch``, ``round-timeout``, ``dp-clip``, ``data-dir``, ``out``)
    ``0`` or ``""`` means unset.

    Raises:
        ConfigError: Listing every unknown key and bad value.
    """
    fields = _fields()
    values: dict[str, Any] = {}
    problems: list[str] = []
    data_check = run_config.get("data-check", "strict")
    if data_check not in DATA_CHECKS:
        problems.append(f"data-check={data_check!r} (expected one of {', '.join(DATA_CHECKS)})")
    for key, value in run_config.items():
        if key in APP_ONLY_KEYS:
            continue
        name = key.replace("-", "_")
        if name in NOT_RUN_CONFIG:
            problems.append(f"{key!r} is not a Flower run-config key")
            continue
        field = fields.get(name)
        unset = not isinstance(value, bool) and value in ("", 0)
        values[name] = None if field is not None and _is_optional(field) and unset else value
    values["runtime"] = "flower"
    try:
        config = build_config(values, source="Flower run config")
    except ConfigError as exc:
        problems.insert(0, str(exc).removeprefix("Flower run config: "))
    if problems:
        raise ConfigError("Flower run config: " + "; ".join(problems))
    return AppSettings(config=config, data_check=str(data_check))


def run_config_from_settings(settings: AppSettings) -> RunConfig:
    """The run config that :func:`settings_from_run_config` turns back into ``settings``."""
    out: RunConfig = {}
    for name, field in _fields().items():
        value = getattr(settings.config, name)
        if value is None:
            value = "" if str(field.type).startswith("str") else 0
        out[name.replace("_", "-")] = value
    out["data-check"] = settings.data_check
    return out


@functools.lru_cache(maxsize=2)
def _load_data(data_dir: str | None, data_check: str) -> tuple[TensorDataset, TensorDataset]:
    from qfed_qiskit.data import load_fashion_mnist, to_tensor_dataset

    if data_check == "strict":
        data = load_fashion_mnist(data_dir)
    else:
        data = load_fashion_mnist(data_dir, expected_sizes=None)
    return (
        to_tensor_dataset(data.train_images, data.train_labels),
        to_tensor_dataset(data.test_images, data.test_labels),
    )


def load_data(settings: AppSettings) -> tuple[TensorDataset, TensorDataset]:
    """The training and test sets (read once per process; do not modify the tensors)."""
    return _load_data(settings.config.data_dir, settings.data_check)


@functools.lru_cache(maxsize=2)
def _shards(settings: AppSettings) -> tuple[TensorDataset, ...]:
    from qfed_qiskit.federated.embedded import partition_dataset

    train, _ = load_data(settings)
    return tuple(partition_dataset(train, settings.config))


def client_shards(settings: AppSettings) -> tuple[TensorDataset, ...]:
    """All clients' shards, split exactly as the embedded engine splits them (cached)."""
    return _shards(settings)


def partition_id(node_config: Mapping[str, Any], config: TrainConfig) -> int:
    """The client (shard) index of a SuperNode, from its ``partition-id`` node config.

    Raises:
        QFedInputError: If ``partition-id`` is missing or out of range, or the node's
            ``num-partitions`` differs from ``config.clients``.
    """
    hint = (
        "start each SuperNode with --node-config 'partition-id=K num-partitions=N' "
        f"(K = 0 … N-1, N = clients = {config.clients})"
    )
    pid = node_config.get("partition-id")
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise QFedInputError(f"node config partition-id={pid!r} is not an integer; {hint}")
    if not 0 <= pid < config.clients:
        raise QFedInputError(f"node config partition-id={pid} is not in 0…{config.clients - 1}")
    num = node_config.get("num-partitions", config.clients)
    if num != config.clients:
        raise QFedInputError(
            f"node config num-partitions={num!r} differs from the run config clients="
            f"{config.clients}; pass --run-config 'clients={num}' or, for a simulation, "
            f"--federation-config 'num-supernodes={config.clients}'"
        )
    return pid


@functools.lru_cache(maxsize=2)
def engine_factory(config: TrainConfig) -> EngineFactory | None:
    """The backend profile's engine factory, once per process and config (None: statevector).

    One factory builds every model of the process, as one builds every model of an embedded run
    (expensive preparation such as transpilation happens once).
    """
    from qfed_qiskit.runner import resolve_engine_factory

    return resolve_engine_factory(config)


def global_model(settings: AppSettings) -> nn.Module:
    """The server's initial model, seeded exactly as the embedded engine seeds it."""
    from qfed_qiskit.training.builders import build_model, seed_all

    config = settings.config
    factory = engine_factory(config)
    seed_all(config.seed)
    return build_model(config, engine_factory=factory)


def client_model(settings: AppSettings) -> nn.Module:
    """A client's scratch model (its weights are overwritten; building leaves torch's RNG alone)."""
    from qfed_qiskit.training.builders import build_model

    config = settings.config
    with torch.random.fork_rng(devices=[]):
        return build_model(config, engine_factory=engine_factory(config))
