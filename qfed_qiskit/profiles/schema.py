"""Backend and noise-model profile schema: frozen dataclasses and one-line TOML validation."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qfed_qiskit.exceptions import ConfigError

SCHEMA_VERSION = 1
"""The only ``schema`` value profiles may have."""

BACKEND_KINDS = ("statevector", "density-matrix", "aer", "fake-device", "ibm-runtime")
"""``kind`` of a backend profile: exact torch engine, torch density matrix, Qiskit Aer, a fake IBM
device simulated by Aer, or IBM Quantum hardware through Qiskit Runtime."""

NOISE_KINDS = ("depolarizing", "from-backend")
"""``kind`` of a noise-model profile."""

GRADIENTS = ("batched-param-shift", "param-shift", "spsa")
"""Sampler gradients (same names as :data:`qfed_qiskit.engines.gradients.GRADIENT_METHODS`)."""

AER_METHODS = ("automatic", "statevector", "density_matrix")
"""Aer simulation methods (as :data:`qfed_qiskit.quantum.samplers.AER_METHODS`)."""

RUNTIME_MODES = ("job", "batch", "session")
"""Qiskit Runtime execution modes (as :data:`qfed_qiskit.quantum.ibm.RUNTIME_MODES`)."""

LAYOUTS = ("auto", "line")
"""Qubit placement on a device (as :data:`qfed_qiskit.profiles.passes.LAYOUTS`): Qiskit's own
layout and routing, or a chain of ``n`` coupled qubits routed on that chain only."""

LEAST_BUSY = "least-busy"
"""``device`` value of an ``ibm-runtime`` profile that picks the least busy operational device."""

EXACT_KINDS = ("statevector", "density-matrix")
"""Kinds that compute exact probabilities in torch (no circuits are submitted)."""

SAMPLER_KINDS = ("aer", "fake-device", "ibm-runtime")
"""Kinds that run ``SamplerQNN`` on a Qiskit V2 sampler."""

DEFAULT_SHOTS = 4096

_COMMON = ("schema", "name", "description", "kind")
_SAMPLER = ("shots", "gradient", "seed", "spsa_batch", "spsa_epsilon")

BACKEND_KEYS: dict[str, tuple[str, ...]] = {
    "statevector": _COMMON,
    "density-matrix": (*_COMMON, "noise"),
    "aer": (*_COMMON, *_SAMPLER, "noise", "method", "optimization_level", "layout"),
    "fake-device": (*_COMMON, *_SAMPLER, "device", "method", "optimization_level", "layout"),
    "ibm-runtime": (
        *_COMMON,
        *_SAMPLER,
        "device",
        "optimization_level",
        "layout",
        "mode",
        "dynamical_decoupling",
        "twirling",
        "max_shots_budget",
    ),
}
"""Keys each backend kind reads; others are ignored with a warning."""

NOISE_KEYS: dict[str, tuple[str, ...]] = {
    "depolarizing": (*_COMMON, "p1", "p2", "readout"),
    "from-backend": (*_COMMON, "backend"),
}
"""Keys each noise kind reads; others are ignored with a warning."""

_REQUIRED_BACKEND = {"fake-device": ("device",), "ibm-runtime": ("device",)}
_REQUIRED_NOISE = {"from-backend": ("backend",)}


@dataclass(frozen=True)
class NoiseProfile:
    """A noise model for the density-matrix engine or an Aer simulator (``noise_models/*.toml``).

    Attributes:
        schema: Profile schema version (1).
        name: Profile name (the file name without ``.toml``).
        description: One line shown by ``qfed-qiskit backends --noise``.
        kind: ``"depolarizing"`` (``p1``, ``p2``, ``readout``) or ``"from-backend"`` (Aer's
            ``NoiseModel.from_backend`` of the fake device ``backend``).
        p1: Depolarizing probability after every single-qubit gate, in ``[0, 1]``.
        p2: Two-qubit depolarizing probability after every two-qubit gate, in ``[0, 1]``.
        readout: Probability that a measured bit is flipped, in ``[0, 1]``.
        backend: Fake device whose noise is used (``kind = "from-backend"``), e.g.
            ``"fake_torino"``.
        source: The file the profile was read from (not part of its identity).
    """

    schema: int = SCHEMA_VERSION
    name: str = ""
    description: str = ""
    kind: str = "depolarizing"
    p1: float = 0.0
    p2: float = 0.0
    readout: float = 0.0
    backend: str | None = None
    source: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the keys its kind uses, plus ``path`` (the source file)."""
        keys = NOISE_KEYS.get(self.kind, _COMMON)
        data: dict[str, Any] = {k: getattr(self, k) for k in keys}
        data["path"] = self.source
        return data


@dataclass(frozen=True)
class BackendProfile:
    """Where the QNN runs (``backends/*.toml``), selected with ``--backend NAME`` or a path.

    Attributes:
        schema: Profile schema version (1).
        name: Profile name (the file name without ``.toml``).
        description: One line shown by ``qfed-qiskit backends``.
        kind: One of :data:`BACKEND_KINDS`.
        shots: Shots per parameter set; 0 means exact probabilities (``aer``, ``fake-device``).
        noise: Noise-model profile name or path (``density-matrix``, ``aer``); None: noiseless.
        device: Fake device name (``fake-device``; ``ibm-runtime`` in local testing mode) or IBM
            backend name or ``"least-busy"`` (``ibm-runtime``).
        gradient: One of :data:`GRADIENTS`.
        optimization_level: Preset pass manager level 0..3 for device ISA circuits.
        layout: Qubit placement on a device (:data:`LAYOUTS`): ``"line"`` (default for
            simulated devices: the circuit touches exactly its ``n`` qubits, so Aer simulates
            ``n`` qubits) or ``"auto"`` (Qiskit's; default for ``ibm-runtime``).
        seed: Seed of shot sampling, transpiler and SPSA; None: the run's ``seed``.
        method: Aer simulation method (:data:`AER_METHODS`).
        spsa_batch: SPSA directions averaged per gradient.
        spsa_epsilon: SPSA perturbation size.
        mode: Qiskit Runtime mode (:data:`RUNTIME_MODES`).
        dynamical_decoupling: Enable dynamical decoupling on IBM hardware.
        twirling: Enable gate and measurement twirling on IBM hardware.
        max_shots_budget: Shots a run may use on IBM hardware without ``--yes``; None: every
            hardware run needs ``--yes``.
        noise_profile: The resolved :attr:`noise` profile (filled by the loader).
        source: The file the profile was read from (not part of its identity).
    """

    schema: int = SCHEMA_VERSION
    name: str = ""
    description: str = ""
    kind: str = "statevector"
    shots: int = DEFAULT_SHOTS
    noise: str | None = None
    device: str | None = None
    gradient: str = "batched-param-shift"
    optimization_level: int = 1
    layout: str = "line"
    seed: int | None = None
    method: str = "automatic"
    spsa_batch: int = 1
    spsa_epsilon: float = 0.01
    mode: str = "batch"
    dynamical_decoupling: bool = False
    twirling: bool = False
    max_shots_budget: int | None = None
    noise_profile: NoiseProfile | None = field(default=None, compare=False, repr=False)
    source: str | None = field(default=None, compare=False)

    @property
    def exact(self) -> bool:
        """Whether the QNN's probabilities are exact (torch engines, or ``shots = 0``)."""
        return self.kind in EXACT_KINDS or self.shots == 0

    @property
    def uses_sampler(self) -> bool:
        """Whether the QNN runs on a Qiskit V2 sampler (``SamplerQNN``)."""
        return self.kind in SAMPLER_KINDS

    @property
    def device_like(self) -> bool:
        """Whether circuits are transpiled to a device's ISA (fake device, IBM, device noise)."""
        if self.kind in ("fake-device", "ibm-runtime"):
            return True
        return (
            self.kind == "aer"
            and self.noise_profile is not None
            and self.noise_profile.kind == "from-backend"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the keys its kind uses, plus ``path`` (the source file)."""
        keys = BACKEND_KEYS.get(self.kind, _COMMON)
        data: dict[str, Any] = {k: getattr(self, k) for k in keys}
        data["path"] = self.source
        return data


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

Check = Callable[[Any], bool]


@dataclass(frozen=True)
class _Spec:
    """How one key is checked: its Python type and an allowed-values predicate."""

    type: str  # "int", "float", "bool", "str"
    expected: str
    allowed: Check | None = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(
        value
    )


def _one_of(choices: tuple[str, ...]) -> _Spec:
    return _Spec("str", "one of " + ", ".join(choices), lambda v: v in choices)


def _one_line(value: Any) -> bool:
    return "\n" not in value and "\r" not in value


def _nonempty(value: Any) -> bool:
    return bool(value.strip()) and _one_line(value)


_PROBABILITY = _Spec("float", "a number in [0, 1]", lambda v: 0.0 <= v <= 1.0)

BACKEND_SPECS: dict[str, _Spec] = {
    "schema": _Spec("int", str(SCHEMA_VERSION), lambda v: v == SCHEMA_VERSION),
    "name": _Spec("str", "a non-empty one-line string", _nonempty),
    "description": _Spec("str", "a one-line string", _one_line),
    "kind": _one_of(BACKEND_KINDS),
    "shots": _Spec("int", "an integer >= 0 (0: exact probabilities)", lambda v: v >= 0),
    "noise": _Spec("str", "a noise-model name or .toml path", _nonempty),
    "device": _Spec("str", "a device name", _nonempty),
    "gradient": _one_of(GRADIENTS),
    "optimization_level": _Spec("int", "an integer in 0..3", lambda v: 0 <= v <= 3),
    "seed": _Spec("int", "an integer >= 0", lambda v: v >= 0),
    "method": _one_of(AER_METHODS),
    "layout": _one_of(LAYOUTS),
    "spsa_batch": _Spec("int", "an integer >= 1", lambda v: v >= 1),
    "spsa_epsilon": _Spec("float", "a number > 0", lambda v: v > 0),
    "mode": _one_of(RUNTIME_MODES),
    "dynamical_decoupling": _Spec("bool", "true or false"),
    "twirling": _Spec("bool", "true or false"),
    "max_shots_budget": _Spec("int", "an integer >= 0", lambda v: v >= 0),
}

NOISE_SPECS: dict[str, _Spec] = {
    "schema": BACKEND_SPECS["schema"],
    "name": BACKEND_SPECS["name"],
    "description": BACKEND_SPECS["description"],
    "kind": _one_of(NOISE_KINDS),
    "p1": _PROBABILITY,
    "p2": _PROBABILITY,
    "readout": _PROBABILITY,
    "backend": _Spec("str", "a fake device name such as fake_torino", _nonempty),
}

_TYPE_OK: dict[str, Check] = {
    "int": _is_int,
    "float": _is_number,
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
}


def _problem(key: str, value: Any, expected: str) -> str:
    return f"{key}={value!r} (expected {expected})"


def _check(specs: Mapping[str, _Spec], key: str, value: Any) -> str | None:
    spec = specs[key]
    if not _TYPE_OK[spec.type](value):
        return _problem(key, value, spec.expected)
    if spec.allowed is not None and not spec.allowed(value):
        return _problem(key, value, spec.expected)
    return None


@dataclass
class _Parsed:
    """Values, problems and warnings of one profile file, common to both profile types."""

    values: dict[str, Any]
    problems: list[str]
    warnings: list[str]
    spelled: dict[str, str]


def _parse_common(
    data: Mapping[str, Any],
    *,
    specs: Mapping[str, _Spec],
    kind_keys: Mapping[str, tuple[str, ...]],
    required: Mapping[str, tuple[str, ...]],
    what: str,
    stem: str | None,
) -> _Parsed:
    """Check keys, types and ranges; collect problems (errors) and warnings (ignored keys)."""
    spelled = {str(k).replace("-", "_"): str(k) for k in data}
    values = {str(k).replace("-", "_"): v for k, v in data.items()}
    problems: list[str] = []
    warnings: list[str] = []
    kind = values.get("kind")
    kinds = tuple(kind_keys)
    if "kind" not in values:
        problems.append(f"kind missing (expected one of {', '.join(kinds)})")
    if "schema" not in values:
        problems.append(f"schema missing (expected schema = {SCHEMA_VERSION})")
    valid_kind = isinstance(kind, str) and kind in kind_keys
    used = kind_keys[str(kind)] if valid_kind else tuple(specs)
    for key in sorted(values):
        name = spelled[key]
        if key not in specs:
            scope = f"for kind {kind!r}" if valid_kind else f"in a {what} profile"
            allowed = ", ".join(used)
            problems.append(f"unknown key {name!r} (allowed {scope}: {allowed})")
            continue
        problem = _check(specs, key, values[key])
        if problem is not None:
            problems.append(problem.replace(key, name, 1))
        elif valid_kind and key not in used:
            warnings.append(f"key {name!r} is not used by kind {kind!r}; ignored")
    if valid_kind:
        for key in required.get(str(kind), ()):
            if key not in values:
                problems.append(f"{key} missing (kind {kind!r} needs {specs[key].expected})")
    if stem is not None and isinstance(values.get("name"), str) and values["name"] != stem:
        problems.append(f"name={values['name']!r} (expected the file name {stem!r})")
    return _Parsed(values, problems, warnings, spelled)


def _fail(source: str, problems: list[str]) -> ConfigError:
    return ConfigError(f"{source}: " + "; ".join(problems))


def _fields_of(cls: type[Any], values: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    names = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key in keys:
        if key in values and key in names:
            value = values[key]
            if names[key].type in ("float", "float | None") and _is_int(value):
                value = float(value)
            out[key] = value
    return out


def parse_noise_profile(
    data: Mapping[str, Any],
    *,
    source: str,
    stem: str | None = None,
    device_names: tuple[str, ...] | None = None,
) -> tuple[NoiseProfile, list[str]]:
    """Validate a noise-model profile table.

    Args:
        data: The parsed TOML table.
        source: File name for messages.
        stem: Expected ``name`` (the file name without ``.toml``); also the default name.
        device_names: Known fake device names to check ``backend`` against (None: not checked).

    Returns:
        The profile and warnings about keys its kind ignores.

    Raises:
        ConfigError: One line listing every unknown key, wrong type and out-of-range value.
    """
    parsed = _parse_common(
        data,
        specs=NOISE_SPECS,
        kind_keys=NOISE_KEYS,
        required=_REQUIRED_NOISE,
        what="noise-model",
        stem=stem,
    )
    values, problems = parsed.values, parsed.problems
    backend = values.get("backend")
    if (
        values.get("kind") == "from-backend"
        and device_names
        and isinstance(backend, str)
        and _device_key(backend) not in device_names
    ):
        problems.append(_unknown_device(parsed.spelled.get("backend", "backend"), backend))
    if problems:
        raise _fail(source, problems)
    kind = str(values["kind"])
    fields = _fields_of(NoiseProfile, values, NOISE_KEYS[kind])
    fields.setdefault("name", stem or "")
    if kind == "from-backend":
        fields["backend"] = _device_key(str(fields["backend"]))
    return NoiseProfile(**fields, source=source), parsed.warnings


NoiseResolver = Callable[[str], NoiseProfile]
"""Loads a noise profile by name or path; raises :class:`ProfileNotFoundError` if there is none."""


class ProfileNotFoundError(ConfigError):
    """No profile of that name (the message lists the available ones)."""

    def __init__(self, message: str, *, expected: str) -> None:
        super().__init__(message)
        self.expected = expected


def parse_backend_profile(
    data: Mapping[str, Any],
    *,
    source: str,
    stem: str | None = None,
    resolve_noise: NoiseResolver | None = None,
    device_names: tuple[str, ...] | None = None,
) -> tuple[BackendProfile, list[str]]:
    """Validate a backend profile table.

    Args:
        data: The parsed TOML table.
        source: File name for messages.
        stem: Expected ``name`` (the file name without ``.toml``); also the default name.
        resolve_noise: Loads the ``noise`` profile (None: ``noise`` is not resolved).
        device_names: Known fake device names, to check ``device`` of ``fake-device`` profiles
            (and ``fake_*`` devices of ``ibm-runtime`` ones); None: not checked.

    Returns:
        The profile and warnings about keys its kind ignores.

    Raises:
        ConfigError: One line listing every unknown key, wrong type and out-of-range value
            (including an unknown noise model or device, and a noise kind the backend cannot
            use). An invalid noise-model file raises its own one-line error.
    """
    parsed = _parse_common(
        data,
        specs=BACKEND_SPECS,
        kind_keys=BACKEND_KEYS,
        required=_REQUIRED_BACKEND,
        what="backend",
        stem=stem,
    )
    values, problems, warnings = parsed.values, parsed.problems, parsed.warnings
    kind = values.get("kind")
    shots = values.get("shots")
    if kind == "ibm-runtime" and _is_int(shots) and shots == 0:
        problems.append(f"{parsed.spelled['shots']}=0 (expected an integer >= 1 on IBM hardware)")
    device = values.get("device")
    if isinstance(device, str) and device_names:
        fake_wanted = kind == "fake-device" or device.strip().lower().startswith("fake")
        known = _device_key(device) in device_names
        if kind in ("fake-device", "ibm-runtime") and fake_wanted and not known:
            problems.append(_unknown_device(parsed.spelled["device"], device))
    noise_profile: NoiseProfile | None = None
    noise = values.get("noise")
    if (
        isinstance(noise, str)
        and noise.strip()
        and kind in ("density-matrix", "aer")
        and resolve_noise is not None
    ):
        key = parsed.spelled["noise"]
        try:
            noise_profile = resolve_noise(noise)
        except ProfileNotFoundError as exc:
            problems.append(_problem(key, noise, exc.expected))
        else:
            if kind == "density-matrix" and noise_profile.kind != "depolarizing":
                problems.append(
                    _problem(
                        key,
                        noise,
                        f"a depolarizing noise model: {noise_profile.name!r} has kind "
                        f"{noise_profile.kind!r}",
                    )
                )
    if kind == "aer" and (noise_profile is None or noise_profile.kind != "from-backend"):
        warnings.extend(
            f"key {parsed.spelled[k]!r} is only used with a from-backend noise model; ignored"
            for k in ("optimization_level", "layout")
            if k in values
        )
    if problems:
        raise _fail(source, problems)
    fields = _fields_of(BackendProfile, values, BACKEND_KEYS[str(kind)])
    fields.setdefault("name", stem or "")
    if kind in EXACT_KINDS:
        fields["shots"] = 0
    if kind == "ibm-runtime":
        fields.setdefault("layout", "auto")
    if kind == "fake-device":
        fields["device"] = _device_key(str(fields["device"]))
    profile = BackendProfile(**fields, noise_profile=noise_profile, source=source)
    return profile, warnings


def _device_key(name: str) -> str:
    """``fake_torino`` for ``FakeTorino``, ``fake-torino``, ``FakeTorinoV2`` or ``torino``."""
    wanted = name.strip().lower().replace("-", "_")
    wanted = "fake_" + wanted.removeprefix("fake").lstrip("_")
    return wanted.removesuffix("v2").rstrip("_")


def _unknown_device(key: str, value: str) -> str:
    examples = (
        "fake_torino, fake_brisbane, fake_kyiv, fake_manila (qiskit_ibm_runtime.fake_provider)"
    )
    return _problem(key, value, f"a fake device name such as {examples}")
