"""Glue shared by the Flower apps: run config to TrainConfig, data, client shards and models.

Run-config keys are the declared settings (:data:`qfed_qiskit.config.SETTINGS`) in flag style,
plus the app keys of :data:`APP_KEYS`. Flower's run config cannot hold ``None``, so an unset
optional setting travels as the zero of its type (``0`` or ``""``): every optional setting's rule
rejects that value, so it cannot mean anything else.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.utils.data import TensorDataset

from qfed_qiskit.config import SETTINGS, Setting, TrainConfig, build_config
from qfed_qiskit.exceptions import ConfigError, QFedInputError
from qfed_qiskit.models.quantum_train import EngineFactory

DATA_CHECKS = ("strict", "relaxed")
"""``data-check`` values: ``strict`` (full FashionMNIST) or ``relaxed`` (any consistent size)."""

APP_KEYS: dict[str, Any] = {"data-check": "strict", "resume": False, "overwrite": False}
"""Run-config keys that are not training settings, with their defaults: ``data-check``,
``resume`` (continue the run in ``out`` from its checkpoint) and ``overwrite`` (replace the run
in ``out``)."""

UNSET: dict[str, bool | int | float | str] = {"int": 0, "float": 0.0, "str": "", "bool": False}
"""How an unset (None) optional setting of each kind travels in Flower's run config."""

RunConfig = dict[str, bool | int | float | str]


@dataclass(frozen=True)
class AppSettings:
    """Everything the ServerApp and ClientApp read from Flower's run config.

    Attributes:
        config: The training settings (``runtime == "flower"``).
        data_check: ``"strict"`` requires the full FashionMNIST (60,000 / 10,000 images, as the
            embedded runtime does); ``"relaxed"`` accepts any consistent size (small test files).
        resume: Continue the run in ``config.out`` from its checkpoint.
        overwrite: Replace a run already in ``config.out``.
    """

    config: TrainConfig
    data_check: str = "strict"
    resume: bool = False
    overwrite: bool = False


def flower_settings() -> dict[str, Setting]:
    """The declared settings that Flower's run config carries, by field name."""
    return {name: spec for name, spec in SETTINGS.items() if spec.flower}


def run_config_keys() -> tuple[str, ...]:
    """Every run-config key the apps read (settings in flag style, then the app keys)."""
    return (*(spec.key for spec in flower_settings().values()), *APP_KEYS)


def encode(spec: Setting, value: Any) -> bool | int | float | str:
    """A setting's value as Flower's run config holds it (None: the unset value)."""
    if value is None:
        return UNSET[spec.kind]
    out: bool | int | float | str = value
    return out


def _decode(spec: Setting | None, value: Any) -> Any:
    unset = spec is not None and spec.optional and not isinstance(value, bool)
    return None if unset and value == UNSET[spec.kind] else value  # type: ignore[union-attr]


def settings_from_run_config(run_config: Mapping[str, Any]) -> AppSettings:
    """Validate Flower's run config and turn it into :class:`AppSettings`.

    Raises:
        ConfigError: Listing every unknown key and bad value.
    """
    declared = {spec.key: spec for spec in flower_settings().values()}
    values: dict[str, Any] = {}
    problems: list[str] = []
    app = {**APP_KEYS, **{k: v for k, v in run_config.items() if k in APP_KEYS}}
    if app["data-check"] not in DATA_CHECKS:
        problems.append(
            f"data-check={app['data-check']!r} (expected one of {', '.join(DATA_CHECKS)})"
        )
    for key in ("resume", "overwrite"):
        if not isinstance(app[key], bool):
            problems.append(f"{key}={app[key]!r} (expected true or false)")
    for key, value in run_config.items():
        if key in APP_KEYS:
            continue
        spec = declared.get(key)
        if spec is None and key.replace("-", "_") in SETTINGS:
            problems.append(f"{key!r} is not a Flower run-config key")
            continue
        values[key] = _decode(spec, value)
    values["runtime"] = "flower"
    try:
        config = build_config(values, source="Flower run config")
    except ConfigError as exc:
        problems.insert(0, str(exc).removeprefix("Flower run config: "))
    if problems:
        raise ConfigError("Flower run config: " + "; ".join(problems))
    return AppSettings(
        config=config,
        data_check=str(app["data-check"]),
        resume=bool(app["resume"]),
        overwrite=bool(app["overwrite"]),
    )


def run_config_from_settings(settings: AppSettings) -> RunConfig:
    """The run config that :func:`settings_from_run_config` turns back into ``settings``."""
    out: RunConfig = {
        spec.key: encode(spec, getattr(settings.config, name))
        for name, spec in flower_settings().items()
    }
    out.update(
        {
            "data-check": settings.data_check,
            "resume": settings.resume,
            "overwrite": settings.overwrite,
        }
    )
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
def _shards(config: TrainConfig, data_check: str) -> tuple[TensorDataset, ...]:
    from qfed_qiskit.federated.embedded import partition_dataset

    train, _ = _load_data(config.data_dir, data_check)
    return tuple(partition_dataset(train, config))


def client_shards(settings: AppSettings) -> tuple[TensorDataset, ...]:
    """All clients' shards, split exactly as the embedded engine splits them (cached)."""
    return _shards(settings.config, settings.data_check)


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
    (expensive preparation such as transpilation happens once). Its engines keep their sampler
    results in the run folder's job journal when ``out`` is set (the ServerApp empties it with
    every checkpoint).
    """
    from qfed_qiskit.training.builders import journaled_engine_factory

    return journaled_engine_factory(config)


def global_model(settings: AppSettings) -> nn.Module:
    """The server's initial model, seeded exactly as the embedded engine seeds it."""
    from qfed_qiskit.training.builders import build_model, seed_all

    config = settings.config
    factory = engine_factory(config)
    seed_all(config.seed)
    return build_model(config, engine_factory=factory)


def client_model(settings: AppSettings) -> nn.Module:
    """A client's scratch model (:func:`~qfed_qiskit.training.builders.build_client_model`)."""
    from qfed_qiskit.training.builders import build_client_model

    config = settings.config
    return build_client_model(config, engine_factory=engine_factory(config))
