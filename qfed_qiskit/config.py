"""Experiment configuration: one frozen dataclass, loadable from TOML, overridable by CLI flags.

TOML keys mirror the CLI flags (``batch-size`` or ``batch_size``); flags win over the file.
Unknown keys, wrong types and out-of-range values are all collected and reported together in one
:class:`~qfed_qiskit.exceptions.ConfigError` line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from qfed_qiskit.exceptions import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MODELS = ("qt", "classical")
DTYPES = ("float32", "float64")
ACTIVATIONS = ("none", "relu")
RUNTIMES = ("embedded", "flower")
PLATEAU_SCOPES = ("client", "round")

PAPER_LR = {"qt": 1e-4, "classical": 1e-3}
"""Adam learning rates of the reference (paper.md): QT 1e-4, classical CNN 1e-3."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    Centralized training (``clients == 1``) runs ``epochs`` epochs. Federated training
    (``clients > 1``) runs ``rounds`` rounds of ``local_epochs`` epochs per client.
    Defaults follow the reference (paper.md).
    """

    model: str = "qt"
    epochs: int = 50
    batch_size: int = 128
    lr: float | None = None
    weight_decay: float = 1e-5
    adam_eps: float = 1e-6
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    # Federated only: "client" keeps each client's ReduceLROnPlateau tracker across rounds;
    # "round" restarts its best-loss/bad-epoch tracking (not the lr) when a round starts,
    # because the aggregated model's loss is not comparable with the client's own last best.
    plateau_scope: str = "client"
    blocks: int = 16
    chunk_size: int = 1
    activation: str = "none"
    seed: int = 0
    max_steps_per_epoch: int | None = None
    data_dir: str | None = None
    out: str | None = None
    dtype: str = "float32"
    backend: str = "statevector"
    # Federated (used when clients > 1).
    clients: int = 1
    rounds: int = 70
    local_epochs: int = 10
    partition: str = "iid"
    fraction_fit: float = 1.0
    min_clients: int = 1
    round_timeout: float | None = None
    max_update_norm: float = 1e4
    dp_clip: float | None = None
    dp_noise: float = 0.0
    runtime: str = "embedded"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def learning_rate(self) -> float:
        """``lr`` if set, else the paper's rate for this model."""
        return self.lr if self.lr is not None else PAPER_LR[self.model]

    @property
    def federated(self) -> bool:
        """Whether this is a federated run (more than one client)."""
        return self.clients > 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of all settings (``extra`` omitted when empty)."""
        data = dataclasses.asdict(self)
        if not data["extra"]:
            data.pop("extra")
        return data

    def fingerprint(self, *, ignore: tuple[str, ...] = ("out", "data_dir", "extra")) -> str:
        """Stable hash of the settings that define the result (for refusing a mismatched resume)."""
        data = {k: v for k, v in self.to_dict().items() if k not in ignore}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


_FIELDS = {f.name: f for f in fields(TrainConfig) if f.name != "extra"}


def _type_error(key: str, value: Any, expected: str) -> str:
    return f"{key}={value!r} (expected {expected})"


def _check_value(key: str, value: Any) -> str | None:
    """Return a problem description, or None when ``value`` is allowed for ``key``."""
    ann = str(_FIELDS[key].type)
    optional = "None" in ann
    if value is None:
        return None if optional else _type_error(key, value, ann.replace(" | None", ""))
    if ann.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            return _type_error(key, value, "an integer")
    elif ann.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _type_error(key, value, "a number")
    elif ann.startswith("str") and not isinstance(value, str):
        return _type_error(key, value, "a string")
    choices = {
        "model": MODELS,
        "dtype": DTYPES,
        "activation": ACTIVATIONS,
        "runtime": RUNTIMES,
        "plateau_scope": PLATEAU_SCOPES,
    }
    if key in choices and value not in choices[key]:
        return _type_error(key, value, "one of " + ", ".join(choices[key]))
    positive = {
        "epochs",
        "batch_size",
        "blocks",
        "chunk_size",
        "max_steps_per_epoch",
        "clients",
        "rounds",
        "local_epochs",
        "min_clients",
        "plateau_patience",
    }
    if key in positive and value < 1:
        return _type_error(key, value, "an integer >= 1")
    if key in {"lr", "adam_eps", "round_timeout", "max_update_norm", "dp_clip"} and value <= 0:
        return _type_error(key, value, "a number > 0")
    if key in {"weight_decay", "dp_noise"} and value < 0:
        return _type_error(key, value, "a number >= 0")
    if key in {"fraction_fit", "plateau_factor"} and not 0 < value <= 1:
        return _type_error(key, value, "a number in (0, 1]")
    if key == "seed" and value < 0:
        return _type_error(key, value, "an integer >= 0")
    if key == "partition":
        from qfed_qiskit.data.partition import PARTITION_HELP, parse_partition

        try:
            parse_partition(value)
        except ValueError:
            return _type_error(key, value, PARTITION_HELP)
    return None


def normalise_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """Map flag-style keys (``batch-size``) to field names (``batch_size``)."""
    return {k.replace("-", "_"): v for k, v in values.items()}


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning a missing file or bad syntax into a one-line ConfigError."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror}") from None


def build_config(
    file_values: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    source: str = "config",
) -> TrainConfig:
    """Merge file values and CLI overrides (overrides win; ``None`` overrides are ignored).

    Args:
        file_values: Values from a TOML file (flag-style or field-style keys). A ``[train]``
            table, if present, is used; other top-level tables are rejected as unknown keys.
        overrides: Values from CLI flags.
        source: Name of the file for error messages.

    Returns:
        The validated config.

    Raises:
        ConfigError: Listing every unknown key and bad value.
    """
    values = normalise_keys(file_values or {})
    if isinstance(values.get("train"), dict):
        values = {
            **{k: v for k, v in values.items() if k != "train"},
            **normalise_keys(values["train"]),
        }
    values.update({k: v for k, v in normalise_keys(overrides or {}).items() if v is not None})
    problems: list[str] = []
    allowed = ", ".join(sorted(k.replace("_", "-") for k in _FIELDS))
    for key in sorted(values):
        if key not in _FIELDS:
            problems.append(f"unknown key {key.replace('_', '-')!r} (allowed: {allowed})")
            continue
        if (
            isinstance(values[key], int)
            and not isinstance(values[key], bool)
            and str(_FIELDS[key].type).startswith("float")
        ):
            values[key] = float(values[key])
        problem = _check_value(key, values[key])
        if problem:
            problems.append(problem)
    clients = values.get("clients", 1)
    if not problems and values.get("min_clients", 1) > clients:
        problems.append(f"min_clients={values['min_clients']} (expected <= clients={clients})")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return TrainConfig(**values)


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Load ``path`` (if given) and apply ``overrides``."""
    file_values = read_toml(path) if path is not None else {}
    return build_config(file_values, overrides, source=str(path) if path else "options")
