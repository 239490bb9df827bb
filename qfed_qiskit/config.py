"""Experiment configuration: every setting declared once, as a field of :class:`TrainConfig`.

Each field carries its :class:`Setting` (rule, help text, how its default reads, whether Flower's
run config has it) in its metadata, next to its name, type and default. Everything else is derived
from that one declaration: the ``train`` command's options (:mod:`qfed_qiskit.cli.train_cmd`), the
TOML keys (flag style, ``batch-size``, or field style, ``batch_size``), the Flower run-config keys
(:mod:`qfed_qiskit.runtimes.flower.task`) and the validation here. Unknown keys and bad values are
collected and reported together in one :class:`~qfed_qiskit.exceptions.ConfigError` line; checks
that involve several settings are in :func:`cross_field_problems`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from qfed_qiskit import validation as v
from qfed_qiskit.exceptions import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MODELS = ("qt", "classical", "small-cnn")
"""qt: Quantum-Train generating the paper's CNN; classical: that CNN (6,690 parameters) trained
directly; small-cnn: a classical CNN of at most 1,500 parameters trained directly (a baseline)."""
GENERATORS = ("qnn", "frozen-qnn", "vector")
"""Where QT's 2**n "probabilities" come from: the trained QNN (the method), the QNN frozen at its
initial angles (only the mapping trains), or a classical generator with as many trainable values
as the QNN has angles (softmax of a fixed random projection of them). The last two are baselines."""
PAPER_MAPPING_HIDDEN = (4, 20, 4)
"""Hidden widths of the reference mapping MLP (14 -> 4 -> 20 -> 4 -> 1, 249 parameters)."""
MAPPING_HELP = "'mlp' (the paper's 4,20,4 hidden widths), 'mlp:W1,W2,...' or 'linear'"
"""QT's mapping model: the paper's MLP, an MLP of other hidden widths, or one linear layer 14 -> 1
(:func:`parse_mapping`)."""
SCOPES = ("client", "round")
DTYPES = ("float32", "float64")
ACTIVATIONS = ("none", "relu")
"""Activations the target CNN and the mapping MLP accept: none (the paper) or ReLU."""
RUNTIMES = ("embedded", "flower")
DEFAULT_BACKEND = "statevector"
"""The backend profile of a run that names none: the exact torch engine."""

PAPER_LR = {"qt": 1e-4, "classical": 1e-3, "small-cnn": 1e-3}
"""Adam learning rates of the reference (paper.md): QT 1e-4, classical CNNs 1e-3."""
PLATEAU_STEPS = ("epoch", "round")
SERVER_OPTIMIZERS = ("fedavg", "fedadam")


def _partition_ok(value: Any) -> bool:
    from qfed_qiskit.data.partition import parse_partition
    from qfed_qiskit.exceptions import QFedInputError

    try:
        parse_partition(value)
    except QFedInputError:
        return False
    return True


def parse_mapping(spec: str) -> tuple[int, ...]:
    """The hidden widths a ``mapping`` setting names: ``"mlp"`` → :data:`PAPER_MAPPING_HIDDEN`,
    ``"mlp:16,8"`` → ``(16, 8)``, ``"linear"`` → ``()`` (one linear layer).

    Raises:
        ConfigError: For anything else.
    """
    text = spec.strip().lower()
    if text == "linear":
        return ()
    if text == "mlp":
        return PAPER_MAPPING_HIDDEN
    kind, _, widths = text.partition(":")
    if kind == "mlp" and widths:
        parts = [w.strip() for w in widths.split(",")]
        if all(p.isdigit() and int(p) > 0 for p in parts):
            return tuple(int(p) for p in parts)
    raise ConfigError(f"mapping={spec!r} is not allowed (expected {MAPPING_HELP})")


def _mapping_ok(value: Any) -> bool:
    try:
        parse_mapping(value)
    except ConfigError:
        return False
    return True


def _partition_rule() -> v.Rule:
    from qfed_qiskit.data.partition import PARTITION_HELP

    return v.text(PARTITION_HELP, _partition_ok)


@dataclass(frozen=True)
class Setting:
    """How one :class:`TrainConfig` field is checked, documented and exposed.

    Attributes:
        rule: The allowed values (:mod:`qfed_qiskit.validation`); ``None`` is allowed on top of
            them when the field's type is optional.
        help: One line for ``train --help`` and the docs.
        default_text: How the default reads in ``--help`` (None: the default's own value).
        flower: Whether Flower's run config has this key (centralized-only or runtime-selecting
            settings do not).
        name: The field name (filled in by :data:`SETTINGS`).
        kind: ``"int"``, ``"float"``, ``"str"`` or ``"bool"`` (from the field's type).
        optional: Whether the field's type admits None.
        default: The field's default.
    """

    rule: v.Rule
    help: str
    default_text: str | None = None
    flower: bool = True
    name: str = ""
    kind: str = ""
    optional: bool = False
    default: Any = None

    @property
    def key(self) -> str:
        """The flag-style key: ``--KEY`` on the command line, ``KEY`` in TOML and Flower."""
        return self.name.replace("_", "-")

    @property
    def shown_default(self) -> str:
        """The default as ``--help`` shows it."""
        if self.default_text is not None:
            return self.default_text
        return "unset" if self.default is None else str(self.default)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (None: it is)."""
        if value is None:
            return None if self.optional else v.describe(self.name, value, self.rule.expected)
        return v.problem(self.name, value, self.rule)


def setting(
    default: Any,
    rule: v.Rule,
    help: str,
    *,
    default_text: str | None = None,
    flower: bool = True,
) -> Any:
    """A dataclass field with its :class:`Setting` in the metadata (used only in TrainConfig)."""
    spec = Setting(rule=rule, help=help, default_text=default_text, flower=flower)
    return field(default=default, metadata={"setting": spec})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    Centralized training (``clients == 1``) runs ``epochs`` epochs. Federated training
    (``clients > 1``) runs ``rounds`` rounds of ``local_epochs`` epochs per client.
    Defaults follow the reference (paper.md).
    """

    model: str = setting(
        "qt", v.one_of(MODELS), "qt (Quantum-Train), classical (its CNN) or small-cnn (<= 1,500)."
    )
    backend: str = setting(
        DEFAULT_BACKEND, v.text("a profile name or .toml path", v.nonempty), "Backend profile."
    )
    epochs: int = setting(50, v.integer(minimum=1), "Epochs (centralized).", flower=False)
    batch_size: int = setting(128, v.integer(minimum=1), "Batch size.")
    lr: float | None = setting(
        None,
        v.number(above=0),
        "Adam learning rate.",
        default_text=f"qt {PAPER_LR['qt']:g}, classical {PAPER_LR['classical']:g}",
    )
    weight_decay: float = setting(1e-5, v.number(minimum=0), "Adam weight decay.")
    adam_eps: float = setting(1e-6, v.number(above=0), "Adam epsilon.")
    plateau_patience: int = setting(5, v.integer(minimum=1), "ReduceLROnPlateau patience (epochs).")
    plateau_factor: float = setting(0.5, v.number(above=0, maximum=1), "ReduceLROnPlateau factor.")
    # "client" keeps each client's ReduceLROnPlateau tracker across rounds; "round" restarts its
    # best-loss/bad-epoch tracking (not the lr) when a round starts, because the aggregated
    # model's loss is not comparable with the client's own last best.
    plateau_scope: str = setting(
        "client",
        v.one_of(SCOPES),
        "Federated: client (keep the plateau tracker across rounds) or round (restart it).",
    )
    plateau_step: str = setting(
        "epoch",
        v.one_of(PLATEAU_STEPS),
        "Federated: step ReduceLROnPlateau after every local epoch, or once per round.",
    )
    # The paper does not say whether a client's Adam survives between rounds; "round" starts
    # fresh moments every round (the learning rate the scheduler reached is kept).
    optimizer_scope: str = setting(
        "client",
        v.one_of(SCOPES),
        "Federated: client (keep Adam's moments across rounds) or round (fresh each round).",
    )
    blocks: int = setting(16, v.integer(minimum=1), "Ansatz blocks L.")
    chunk_size: int = setting(1, v.integer(minimum=1), "Weights generated per basis state.")
    activation: str = setting(
        "none", v.one_of(ACTIVATIONS), "Target CNN activation: none (paper) or relu."
    )
    generator: str = setting(
        "qnn", v.one_of(GENERATORS), "QT: qnn, frozen-qnn or vector (classical baseline)."
    )
    mapping: str = setting(
        "mlp",
        v.text(MAPPING_HELP, _mapping_ok),
        "QT mapping model: mlp (paper), mlp:W1,W2,... (other hidden widths) or linear.",
    )
    mapping_activation: str = setting(
        "none", v.one_of(ACTIVATIONS), "QT mapping MLP activation: none (paper) or relu."
    )
    seed: int = setting(0, v.integer(minimum=0), "Random seed.")
    max_steps_per_epoch: int | None = setting(
        None, v.integer(minimum=1), "Stop each epoch after this many steps.", default_text="all"
    )
    data_dir: str | None = setting(
        None,
        v.text("a folder path", v.nonempty),
        "Folder with the FashionMNIST IDX files.",
        default_text="search",
    )
    out: str | None = setting(
        None,
        v.text("a folder path", v.nonempty),
        "Output folder.",
        default_text="runs/<model>-<backend>-<time>",
    )
    dtype: str = setting("float32", v.one_of(DTYPES), "Precision of the exact engines.")
    clients: int = setting(1, v.integer(minimum=1), "Federated clients (1: centralized).")
    rounds: int = setting(70, v.integer(minimum=1), "Federated rounds.")
    local_epochs: int = setting(10, v.integer(minimum=1), "Local epochs per round.")
    partition: str = setting("iid", _partition_rule(), "iid or dirichlet:ALPHA.")
    fraction_fit: float = setting(
        1.0, v.number(above=0, maximum=1), "Fraction of clients sampled per round."
    )
    min_clients: int = setting(
        1, v.integer(minimum=1), "Fewest valid client updates to accept a round."
    )
    round_timeout: float | None = setting(
        None, v.number(above=0), "Seconds a client may take per round.", default_text="none"
    )
    max_update_norm: float = setting(
        1e4, v.number(above=0), "Largest accepted L2 norm of a client's update."
    )
    dp_clip: float | None = setting(
        None, v.number(above=0), "DP-FedAvg: clip norm of client deltas.", default_text="off"
    )
    dp_noise: float = setting(0.0, v.number(minimum=0), "DP-FedAvg: noise multiplier sigma.")
    # FedAdam (Reddi et al., arXiv 2003.00295) moves the global model by an Adam step on the
    # averaged client delta; its moments are server state, checkpointed with the run.
    server_optimizer: str = setting(
        "fedavg",
        v.one_of(SERVER_OPTIMIZERS),
        "Federated: fedavg (the paper) or fedadam (an Adam step on the mean client delta).",
    )
    server_lr: float = setting(1e-2, v.number(above=0), "FedAdam: server learning rate eta.")
    server_beta1: float = setting(0.9, v.number(minimum=0, below=1), "FedAdam: beta1.")
    server_beta2: float = setting(0.99, v.number(minimum=0, below=1), "FedAdam: beta2.")
    server_tau: float = setting(
        1e-3, v.number(above=0), "FedAdam: tau, the adaptivity floor added to sqrt(v)."
    )
    runtime: str = setting(
        "embedded", v.one_of(RUNTIMES), "Federated runtime: embedded or flower.", flower=False
    )
    workers: int | None = setting(
        None,
        v.integer(minimum=1),
        "Processes that train a round's clients side by side (embedded runtime).",
        default_text="one per core, at most the clients per round",
        flower=False,
    )
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        problems = setting_problems({name: getattr(self, name) for name in SETTINGS})
        if problems:
            raise ConfigError("TrainConfig: " + "; ".join(problems))

    @property
    def learning_rate(self) -> float:
        """``lr`` if set, else the paper's rate for this model."""
        return self.lr if self.lr is not None else PAPER_LR[self.model]

    @property
    def clients_per_round(self) -> int:
        """How many clients each federated round samples (see :func:`clients_per_round`)."""
        return clients_per_round(
            self.clients, fraction=self.fraction_fit, min_clients=self.min_clients
        )

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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (as stored in summaries and checkpoints).

        Raises:
            TypeError: For a key that is not a setting (written by another version).
            ConfigError: For a value the settings refuse.
        """
        return cls(**{k: v for k, v in data.items() if k != "extra"})

    def fingerprint(self, *, ignore: tuple[str, ...] = ("out", "data_dir", "extra")) -> str:
        """Stable hash of the settings that define the result (for refusing a mismatched resume)."""
        data = {k: v for k, v in self.to_dict().items() if k not in ignore}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _declared() -> dict[str, Setting]:
    hints = typing.get_type_hints(TrainConfig)
    out: dict[str, Setting] = {}
    for f in fields(TrainConfig):
        spec = f.metadata.get("setting")
        if spec is None:
            continue
        args = typing.get_args(hints[f.name])
        base = (
            next((a for a in args if a is not type(None)), hints[f.name]) if args else hints[f.name]
        )
        out[f.name] = dataclasses.replace(
            spec,
            name=f.name,
            kind=base.__name__,
            optional=type(None) in args,
            default=f.default,
        )
    return out


SETTINGS: dict[str, Setting] = _declared()
"""Every setting of :class:`TrainConfig` by field name, in declaration order."""


def setting_problems(values: Mapping[str, Any]) -> list[str]:
    """Every problem of ``values`` (known settings by field name, the others take defaults):
    each value against its rule, then, if those pass, :func:`cross_field_problems`."""
    problems = [p for k, x in values.items() if (p := SETTINGS[k].problem(x)) is not None]
    if problems:
        return problems
    return cross_field_problems({**{k: s.default for k, s in SETTINGS.items()}, **values})


def cross_field_problems(values: Mapping[str, Any]) -> list[str]:
    """The rules that involve several settings (``values`` by field name, defaults filled in)."""
    problems = []
    clients, min_clients = values["clients"], values["min_clients"]
    if min_clients > clients:
        problems.append(f"min_clients={min_clients} (expected <= clients={clients})")
    if values["model"] != "qt":
        for key in ("generator", "mapping", "mapping_activation"):
            if values[key] != SETTINGS[key].default:
                problems.append(f"{key}={values[key]!r} needs model='qt' (got {values['model']!r})")
    if parse_mapping(values["mapping"]) == () and values["mapping_activation"] != "none":
        problems.append(
            f"mapping_activation={values['mapping_activation']!r} needs mapping='mlp' "
            "(a linear mapping has no hidden layers)"
        )
    if values["generator"] == "vector" and values["backend"] != DEFAULT_BACKEND:
        problems.append(
            f"backend={values['backend']!r} with generator='vector' (that baseline has no QNN "
            f"to run on a backend; expected {DEFAULT_BACKEND!r})"
        )
    if values["server_optimizer"] == "fedadam" and values["dp_clip"] is not None:
        problems.append(
            f"server_optimizer='fedadam' with dp_clip={values['dp_clip']} (DP-FedAvg averages "
            "the clipped deltas itself; use one of them)"
        )
    if values["server_optimizer"] == "fedavg":
        for key in ("server_lr", "server_beta1", "server_beta2", "server_tau"):
            if values[key] != SETTINGS[key].default:
                problems.append(f"{key}={values[key]!r} needs server_optimizer='fedadam'")
    if values["dp_noise"] > 0 and values["dp_clip"] is None:
        problems.append(f"dp_noise={values['dp_noise']} needs dp_clip (the clipping norm C)")
    return problems


def clients_per_round(num_clients: int, *, fraction: float, min_clients: int) -> int:
    """How many clients a round samples: ``max(min_clients, int(fraction * num_clients))``,
    at least 1 and at most all (all when ``fraction >= 1``)."""
    if fraction >= 1.0:
        return num_clients
    return min(num_clients, max(1, min_clients, int(fraction * num_clients)))


def normalise_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """Map flag-style keys (``batch-size``) to field names (``batch_size``)."""
    return {k.replace("-", "_"): v for k, v in values.items()}


def flatten_train_table(values: Mapping[str, Any]) -> dict[str, Any]:
    """Field-style keys of a config file, with the keys of a ``[train]`` table moved up."""
    flat = normalise_keys(values)
    table = flat.pop("train", None)
    if isinstance(table, dict):
        flat.update(normalise_keys(table))
    elif table is not None:
        flat["train"] = table
    return flat


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning a missing file or bad syntax into a one-line ConfigError."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder, expected a TOML config file") from None
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
    values = flatten_train_table(file_values or {})
    values.update({k: x for k, x in normalise_keys(overrides or {}).items() if x is not None})
    allowed = ", ".join(sorted(s.key for s in SETTINGS.values()))
    unknown = sorted(k for k in values if k not in SETTINGS)
    problems = [f"unknown key {k.replace('_', '-')!r} (allowed: {allowed})" for k in unknown]
    known = {k: x for k, x in values.items() if k in SETTINGS}
    for key, value in known.items():
        if SETTINGS[key].kind == "float" and v.is_int(value):
            known[key] = float(value)
    problems += setting_problems(dict(sorted(known.items())))
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return TrainConfig(**known)


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Load ``path`` (if given) and apply ``overrides``."""
    file_values = read_toml(path) if path is not None else {}
    return build_config(file_values, overrides, source=str(path) if path else "options")
