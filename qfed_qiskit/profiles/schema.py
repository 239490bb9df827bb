"""Backend and noise-model profile schema: frozen dataclasses and one-line TOML validation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qfed_qiskit import validation as v
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
"""Aer simulation methods (as :data:`qfed_qiskit.quantum.exact_aer.AER_METHODS`)."""

RUNTIME_MODES = ("job", "batch", "session")
"""Qiskit Runtime execution modes (as :data:`qfed_qiskit.quantum.ibm.RUNTIME_MODES`)."""

LAYOUTS = ("auto", "line")
"""Qubit placement on a device (as :data:`qfed_qiskit.quantum.layout.LAYOUTS`): Qiskit's own
layout and routing, or a chain of ``n`` coupled qubits routed on that chain only."""

LEAST_BUSY = "least-busy"
"""``device`` value of an ``ibm-runtime`` profile that picks the least busy operational device."""

EXACT_KINDS = ("statevector", "density-matrix")
"""Kinds that compute probabilities in torch (no circuits are submitted): exactly, unless they set
``shots`` (shot-aware training) or, for ``statevector``, a noise model (Pauli trajectories)."""

SAMPLER_KINDS = ("aer", "fake-device", "ibm-runtime")
"""Kinds that run ``SamplerQNN`` on a Qiskit V2 sampler."""

DEFAULT_SHOTS = 4096

_COMMON = ("schema", "name", "description", "kind")
_SAMPLER = (
    "shots",
    "gradient",
    "seed",
    "spsa_batch",
    "spsa_epsilon",
    "retries",
    "retry_backoff",
    "journal",
)

BACKEND_KEYS: dict[str, tuple[str, ...]] = {
    "statevector": (*_COMMON, "noise", "trajectories", "shots", "seed"),
    "density-matrix": (*_COMMON, "noise", "shots", "seed"),
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
        shots: Shots per parameter set; 0 means exact probabilities. For the torch kinds, ``S > 0``
            makes training shot-aware: the forward pass uses ``S``-shot frequencies, the backward
            pass the exact gradient (:class:`~qfed_qiskit.engines.trajectories.ShotNoiseEngine`).
        noise: Noise-model profile name or path (``statevector``: estimated with Pauli
            trajectories, ``density-matrix``: exact, ``aer``); None: noiseless.
        trajectories: Error trajectories per step of a noisy ``statevector`` profile (see
            :class:`~qfed_qiskit.engines.trajectories.PauliTrajectoryEngine`).
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
        retries: Further attempts of a failed sampler job (network, queue, closed session)
            before the run stops with a one-line error (resume it later).
        retry_backoff: Seconds before the first retry; each later wait is 4x longer.
        journal: Keep every sampler result of the round in progress in the run folder
            (``jobs/``), so that a resumed run does not submit it again.
        noise_profile: The resolved :attr:`noise` profile (filled by the loader).
        source: The file the profile was read from (not part of its identity).
    """

    schema: int = SCHEMA_VERSION
    name: str = ""
    description: str = ""
    kind: str = "statevector"
    shots: int = DEFAULT_SHOTS
    noise: str | None = None
    trajectories: int = 4
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
    retries: int = 2
    retry_backoff: float = 2.0
    journal: bool = True
    noise_profile: NoiseProfile | None = field(default=None, compare=False, repr=False)
    source: str | None = field(default=None, compare=False)

    @property
    def exact(self) -> bool:
        """Whether the QNN's probabilities are exact (no shots, and no trajectory estimate)."""
        if self.shots != 0:
            return False
        return not (self.kind == "statevector" and self.noise is not None)

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

BACKEND_SPECS: dict[str, v.Rule] = {
    "schema": v.Rule("int", str(SCHEMA_VERSION), lambda x: x == SCHEMA_VERSION),
    "name": v.text("a non-empty one-line string", v.nonempty),
    "description": v.text("a one-line string", v.one_line),
    "kind": v.one_of(BACKEND_KINDS),
    "shots": v.Rule("int", "an integer >= 0 (0: exact probabilities)", lambda x: x >= 0),
    "noise": v.text("a noise-model name or .toml path", v.nonempty),
    "trajectories": v.integer(minimum=1, maximum=10_000),
    "device": v.text("a device name", v.nonempty),
    "gradient": v.one_of(GRADIENTS),
    "optimization_level": v.integer(minimum=0, maximum=3),
    "seed": v.integer(minimum=0),
    "method": v.one_of(AER_METHODS),
    "layout": v.one_of(LAYOUTS),
    "spsa_batch": v.integer(minimum=1),
    "spsa_epsilon": v.number(above=0),
    "mode": v.one_of(RUNTIME_MODES),
    "dynamical_decoupling": v.boolean(),
    "twirling": v.boolean(),
    "max_shots_budget": v.integer(minimum=0),
    "retries": v.integer(minimum=0, maximum=10),
    "retry_backoff": v.number(minimum=0, maximum=3600),
    "journal": v.boolean(),
}

NOISE_SPECS: dict[str, v.Rule] = {
    "schema": BACKEND_SPECS["schema"],
    "name": BACKEND_SPECS["name"],
    "description": BACKEND_SPECS["description"],
    "kind": v.one_of(NOISE_KINDS),
    "p1": v.PROBABILITY,
    "p2": v.PROBABILITY,
    "readout": v.PROBABILITY,
    "backend": v.text("a fake device name such as fake_torino", v.nonempty),
}


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
    specs: Mapping[str, v.Rule],
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
        problem = v.problem(key, values[key], specs[key])
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
            if names[key].type in ("float", "float | None") and v.is_int(value):
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
    if kind == "ibm-runtime" and v.is_int(shots) and shots == 0:
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
        and kind in ("statevector", "density-matrix", "aer")
        and resolve_noise is not None
    ):
        key = parsed.spelled["noise"]
        try:
            noise_profile = resolve_noise(noise)
        except ProfileNotFoundError as exc:
            problems.append(v.describe(key, noise, exc.expected))
        else:
            if kind in EXACT_KINDS and noise_profile.kind != "depolarizing":
                problems.append(
                    v.describe(
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
        fields.setdefault("shots", 0)
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
    return v.describe(key, value, f"a fake device name such as {examples}")
