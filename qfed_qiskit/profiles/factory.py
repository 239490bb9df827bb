"""Engine factories, circuit statistics and cost estimates for backend profiles."""

from __future__ import annotations

import atexit
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qfed_qiskit.exceptions import CredentialsError, QFedInputError
from qfed_qiskit.profiles.loader import load_backend_profile
from qfed_qiskit.profiles.noise import aer_noise_model, depolarizing_noise, noise_backend
from qfed_qiskit.profiles.schema import LEAST_BUSY, BackendProfile

if TYPE_CHECKING:
    from qiskit.circuit import QuantumCircuit

    from qfed_qiskit.config import TrainConfig
    from qfed_qiskit.engines.base import QNNEngine

logger = logging.getLogger(__name__)

DENSITY_MATRIX_MAX_QUBITS = 10
"""Largest circuit the ``density-matrix`` kind accepts (a 10-qubit density matrix is 8 MiB in
float32, and autograd keeps about one per gate)."""

FASHION_MNIST_TRAIN = 60_000
"""Training images assumed by :func:`estimate_cost`."""

JOBS_PER_STEP = 2
"""Sampler jobs per training step: the forward PUB and one gradient job."""


def _as_profile(profile: BackendProfile | str | Path) -> BackendProfile:
    return profile if isinstance(profile, BackendProfile) else load_backend_profile(profile)


def _is_fake(device: str | None) -> bool:
    return device is not None and device.strip().lower().startswith("fake")


def _torch_dtype(name: str) -> Any:
    import torch

    dtypes = {"float32": torch.float32, "float64": torch.float64}
    if name not in dtypes:
        raise QFedInputError(f"dtype must be one of {', '.join(dtypes)}, got {name!r}")
    return dtypes[name]


def qt_num_qubits(config: TrainConfig) -> int:
    """Qubits of the QT circuit that ``config`` builds (paper CNN, ``chunk_size``, ``blocks``)."""
    from qfed_qiskit.circuits import qt_sizing
    from qfed_qiskit.models.cnn import TargetCNN, count_parameters

    target = count_parameters(TargetCNN(activation=config.activation))
    return qt_sizing(
        target_params=target, chunk_size=config.chunk_size, blocks=config.blocks
    ).num_qubits


def qt_circuit(config: TrainConfig) -> QuantumCircuit:
    """The QT circuit that ``config`` builds."""
    from qfed_qiskit.circuits import qt_ansatz

    return qt_ansatz(qt_num_qubits(config), config.blocks)


def _check_density_qubits(num_qubits: int, profile: BackendProfile) -> None:
    if num_qubits > DENSITY_MATRIX_MAX_QUBITS:
        raise QFedInputError(
            f"backend {profile.name!r} (density-matrix) supports at most "
            f"{DENSITY_MATRIX_MAX_QUBITS} qubits, the circuit has {num_qubits} (raise "
            "--chunk-size, e.g. 8 for the paper's CNN, or use another backend)"
        )


@dataclass
class _Shared:
    """What every engine of one run shares: the sampler, the device and its pass managers."""

    sampler: Any
    backend: Any | None  # the device whose ISA circuits run (None: logical circuits)
    pass_managers: dict[int, Any] = field(default_factory=dict)  # by circuit width

    @property
    def device(self) -> str | None:
        """The device's name."""
        return None if self.backend is None else str(self.backend.name)


class ProfileEngineFactory:
    """Builds the QNN engine of a backend profile for each circuit (``circuit -> QNNEngine``).

    Expensive pieces are built once per factory, i.e. once per run, on the first call: the noise
    model, the fake device or IBM backend, the preset pass manager and the sampler (an IBM
    Runtime batch or session is opened once). Each engine then transpiles its circuit once
    (see :class:`~qfed_qiskit.quantum.transpile.IsaTranspiler`). For ``ibm-runtime`` profiles on
    real hardware, credentials are checked (and the service connected) when the factory is
    created, before any data is loaded.

    Args:
        profile: A ``density-matrix``, ``aer``, ``fake-device`` or ``ibm-runtime`` profile.
        dtype: ``"float32"`` or ``"float64"`` (the engine's output precision).
        seed: Seed used when the profile sets none (shot sampling, transpiler, SPSA).
        service: A ``QiskitRuntimeService`` to use instead of connecting (``ibm-runtime``).

    Raises:
        QFedInputError: For a ``statevector`` profile (the default engine needs no factory).
        CredentialsError: For ``ibm-runtime`` on hardware without usable IBM credentials.
    """

    def __init__(
        self,
        profile: BackendProfile,
        *,
        dtype: str = "float32",
        seed: int | None = None,
        service: Any | None = None,
    ) -> None:
        if profile.kind == "statevector":
            raise QFedInputError(
                "the statevector profile uses the default engine; engine_factory_for returns None"
            )
        self.profile = profile
        self.dtype = dtype
        self._torch_dtype = _torch_dtype(dtype)
        self.seed = profile.seed if profile.seed is not None else seed
        self.job_ids: list[str] = []
        self._service = service
        self._lock = threading.Lock()
        self._shared: _Shared | None = None
        self._closers: list[Callable[[], None]] = []
        self._engines = 0
        if profile.kind == "ibm-runtime" and not _is_fake(profile.device) and service is None:
            from qfed_qiskit.quantum.ibm import connect_service, credentials_source

            credentials_source()  # fails fast, without network, when there is no account
            self._service = connect_service()

    @property
    def engines_built(self) -> int:
        """Number of engines built so far."""
        return self._engines

    def __call__(self, circuit: QuantumCircuit) -> QNNEngine:
        """The profile's engine for ``circuit`` (parameters in ``circuit.parameters`` order)."""
        profile = self.profile
        engine: QNNEngine
        if profile.kind == "density-matrix":
            from qfed_qiskit.engines.density_matrix import DensityMatrixEngine

            _check_density_qubits(circuit.num_qubits, profile)
            engine = DensityMatrixEngine(
                circuit=circuit,
                noise=depolarizing_noise(profile.noise_profile),
                dtype=self._torch_dtype,
            )
        else:
            from qfed_qiskit.engines.qiskit_sampler import QiskitSamplerEngine

            shared = self.shared(circuit.num_qubits)
            engine = QiskitSamplerEngine(
                circuit=circuit,
                sampler=shared.sampler,
                shots=profile.shots or None,
                gradient=profile.gradient,
                pass_manager=self.pass_manager(circuit.num_qubits),
                seed=self.seed,
                spsa_batch=profile.spsa_batch,
                spsa_epsilon=profile.spsa_epsilon,
                record_jobs=self.job_ids,
                dtype=self._torch_dtype,
            )
        self._engines += 1
        return engine

    def shared(self, num_qubits: int = 1) -> _Shared:
        """The sampler and pass manager of this run (built on first use, thread-safe).

        Args:
            num_qubits: Qubits the circuits need (used to pick the least busy IBM device).
        """
        with self._lock:
            if self._shared is None:
                self._shared = self._build_shared(num_qubits)
            return self._shared

    def pass_manager(self, num_qubits: int) -> Any | None:
        """The device pass manager for circuits of ``num_qubits`` (None: no transpilation).

        Built once per circuit width (the ``line`` layout depends on it), then reused.
        """
        from qfed_qiskit.profiles.passes import device_pass_manager

        shared = self.shared(num_qubits)
        if shared.backend is None:
            return None
        with self._lock:
            manager = shared.pass_managers.get(num_qubits)
            if manager is None:
                manager = device_pass_manager(
                    shared.backend,
                    optimization_level=self.profile.optimization_level,
                    seed=self.seed,
                    layout=self.profile.layout,
                    num_qubits=num_qubits,
                )
                shared.pass_managers[num_qubits] = manager
            return manager

    def _build_shared(self, num_qubits: int) -> _Shared:
        from qfed_qiskit.quantum.samplers import aer_sampler, fake_backend, fake_device_sampler

        profile = self.profile
        shots = profile.shots or None
        if profile.kind == "aer":
            device = noise_backend(profile.noise_profile)
            sampler = aer_sampler(
                noise_model=aer_noise_model(profile.noise_profile, backend=device),
                shots=shots,
                seed=self.seed,
                method=profile.method,
            )
            return _Shared(sampler, device)
        if profile.kind == "fake-device":
            assert profile.device is not None
            backend = fake_backend(profile.device)
            sampler = fake_device_sampler(
                backend, shots=shots, seed=self.seed, method=profile.method
            )
            return _Shared(sampler, backend)
        if profile.kind == "ibm-runtime":
            from qfed_qiskit.quantum.ibm import runtime_sampler

            name = self._ibm_backend_name(num_qubits)
            runtime = runtime_sampler(
                backend_name=name,
                mode=profile.mode,
                shots=profile.shots,
                dynamical_decoupling=profile.dynamical_decoupling,
                twirling=profile.twirling,
                service=self._service,
                seed=self.seed,
            )
            self._closers.append(runtime.close)
            if profile.mode != "job":
                atexit.register(self.close)
            return _Shared(runtime.sampler, runtime.backend)
        raise QFedInputError(f"backend kind {profile.kind!r} has no sampler")  # pragma: no cover

    def _ibm_backend_name(self, num_qubits: int) -> str:
        device = self.profile.device or LEAST_BUSY
        if device != LEAST_BUSY:
            return device
        from qfed_qiskit.exceptions import BackendError

        service: Any = self._service
        try:
            backend = service.least_busy(
                min_num_qubits=num_qubits, operational=True, simulator=False
            )
        except Exception as exc:
            from qfed_qiskit.quantum.ibm import redact

            raise BackendError(
                f"no operational IBM device with >= {num_qubits} qubits: "
                f"{type(exc).__name__}: {redact(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
        logger.info("least busy IBM device: %s", backend.name)
        return str(backend.name)

    def close(self) -> None:
        """Close the IBM Runtime batch or session, if one was opened (idempotent)."""
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception as exc:  # closing must never mask the run's own outcome
                logger.warning("closing the runtime sampler failed: %s", type(exc).__name__)

    def describe(self) -> dict[str, object]:
        """JSON-able description for summaries: profile, device, shots, gradient, job count."""
        device = self._shared.device if self._shared is not None else self.profile.device
        return {
            "backend": self.profile.name,
            "kind": self.profile.kind,
            "device": device,
            "noise": self.profile.noise,
            "shots": self.profile.shots if self.profile.uses_sampler else 0,
            "gradient": self.profile.gradient if self.profile.uses_sampler else None,
            "jobs": len(self.job_ids),
        }


def engine_factory_for(
    name_or_path: BackendProfile | str | Path,
    *,
    config: TrainConfig | None = None,
    service: Any | None = None,
) -> ProfileEngineFactory | None:
    """The engine factory of a backend profile, for :class:`QuantumTrainModel`.

    Args:
        name_or_path: Profile name (``"aer-noisy"``), TOML path, or a loaded profile.
        config: The run's config: ``dtype`` and ``seed`` (when the profile sets no seed), and the
            circuit size, checked here against the density-matrix limit.
        service: A ``QiskitRuntimeService`` for ``ibm-runtime`` (default: connect).

    Returns:
        None for ``statevector`` (the default exact engine, built in ``config.dtype`` by
        :func:`~qfed_qiskit.training.builders.build_model`), else a
        :class:`ProfileEngineFactory`.

    Raises:
        ConfigError: Unknown or invalid profile.
        QFedInputError: A circuit too large for the density-matrix engine.
        CredentialsError: ``ibm-runtime`` on hardware without IBM credentials.
    """
    profile = _as_profile(name_or_path)
    if profile.kind == "statevector":
        return None
    if config is not None and profile.kind == "density-matrix":
        _check_density_qubits(qt_num_qubits(config), profile)
    return ProfileEngineFactory(
        profile,
        dtype=config.dtype if config is not None else "float32",
        seed=config.seed if config is not None else None,
        service=service,
    )


# --------------------------------------------------------------------------------------------
# What a step submits
# --------------------------------------------------------------------------------------------


def _measured(circuit: QuantumCircuit) -> QuantumCircuit:
    measured = circuit.copy()
    if not measured.num_clbits:
        measured.measure_all()
    return measured


def gradient_evaluations(profile: BackendProfile, circuit: QuantumCircuit) -> int:
    """Parameter sets (circuits) one gradient of ``circuit`` submits with the profile's gradient.

    ``batched-param-shift``: the shift rule rows of every gate angle (2 per ``U`` angle and per
    ``CU`` phase, 4 per ``CU`` θ) in one PUB; ``param-shift``: 2 per angle after the stock
    translation into Pauli rotations; ``spsa``: 2 per direction.
    """
    if not profile.uses_sampler:
        return 0
    if profile.gradient == "spsa":
        return 2 * profile.spsa_batch
    measured = _measured(circuit)
    if profile.gradient == "batched-param-shift":
        from qfed_qiskit.engines.gradients import build_shift_plan

        plan = build_shift_plan(measured)
        return plan.rows_for(range(len(plan.slot_expr)))
    import numpy as np
    from qiskit.primitives import StatevectorSampler
    from qiskit_machine_learning.gradients import ParamShiftSamplerGradient

    stock = ParamShiftSamplerGradient(sampler=StatevectorSampler())
    _, _, g_params = stock._preprocess(
        [measured],
        [list(np.zeros(measured.num_parameters))],
        [list(measured.parameters)],
        ParamShiftSamplerGradient.SUPPORTED_GATES,
    )
    return 2 * len(g_params[0])


def circuits_per_step(profile: BackendProfile | str | Path, circuit: QuantumCircuit) -> int:
    """Circuits (parameter sets) one training step submits: 1 forward + the gradient's.

    Zero for the torch engines (``statevector``, ``density-matrix``), which submit nothing.
    """
    prof = _as_profile(profile)
    if not prof.uses_sampler:
        return 0
    return 1 + gradient_evaluations(prof, circuit)


def _device_for_stats(profile: BackendProfile, num_qubits: int, service: Any | None) -> Any | None:
    """The device whose ISA circuits run (None for ibm-runtime without credentials)."""
    if profile.kind == "aer":
        return noise_backend(profile.noise_profile)
    from qfed_qiskit.quantum.samplers import fake_backend

    if _is_fake(profile.device):
        assert profile.device is not None
        return fake_backend(profile.device)
    from qfed_qiskit.quantum.ibm import connect_service, credentials_source

    if service is None:
        try:
            credentials_source()
        except CredentialsError:
            logger.info("no IBM credentials: ISA statistics of %s not available", profile.name)
            return None
        service = connect_service()
    if profile.device in (None, LEAST_BUSY):
        return service.least_busy(min_num_qubits=num_qubits, operational=True, simulator=False)
    return service.backend(profile.device)


def describe_backend(
    profile: BackendProfile | str | Path,
    circuit: QuantumCircuit,
    *,
    seed: int | None = None,
    service: Any | None = None,
) -> dict[str, Any]:
    """What ``qfed-qiskit inspect --backend`` adds: circuit size on the backend and step cost.

    Args:
        profile: A profile, or its name or path.
        circuit: The logical QT circuit (no measurements).
        seed: Transpiler seed when the profile sets none.
        service: A ``QiskitRuntimeService`` for ``ibm-runtime`` (default: connect if credentials
            exist; without them the ISA keys are None).

    Returns:
        ``backend``, ``backend_kind``, ``exact``, ``shots`` (per circuit, 0 when exact),
        ``gradient`` (None for the torch engines), ``isa_depth`` and ``isa_two_qubit_gates`` (of
        the circuit the backend runs: the logical circuit, or the device ISA circuit transpiled
        with the profile's optimization level), ``circuits_per_step`` (0 for the torch engines)
        and ``shots_per_step`` (``circuits_per_step * shots``; 0 when exact).
    """
    from qfed_qiskit.profiles.passes import device_pass_manager
    from qfed_qiskit.quantum.transpile import isa_stats

    prof = _as_profile(profile)
    isa_depth: int | None
    isa_two: int | None
    if prof.device_like:
        device = _device_for_stats(prof, circuit.num_qubits, service)
        if device is None:
            isa_depth = isa_two = None
        else:
            manager = device_pass_manager(
                device,
                optimization_level=prof.optimization_level,
                seed=prof.seed if prof.seed is not None else seed,
                layout=prof.layout,
                num_qubits=circuit.num_qubits,
            )
            stats = isa_stats(manager.run(_measured(circuit)))
            isa_depth, isa_two = stats.depth, stats.two_qubit_gates
    else:
        stats = isa_stats(circuit)
        isa_depth, isa_two = stats.depth, stats.two_qubit_gates
    circuits = circuits_per_step(prof, circuit)
    shots = prof.shots if prof.uses_sampler else 0
    return {
        "backend": prof.name,
        "backend_kind": prof.kind,
        "exact": prof.exact,
        "shots": shots,
        "gradient": prof.gradient if prof.uses_sampler else None,
        "isa_depth": isa_depth,
        "isa_two_qubit_gates": isa_two,
        "circuits_per_step": circuits,
        "shots_per_step": circuits * shots,
    }


# --------------------------------------------------------------------------------------------
# Cost of a run
# --------------------------------------------------------------------------------------------


def training_steps(config: TrainConfig, *, train_size: int = FASHION_MNIST_TRAIN) -> int:
    """Optimizer steps of a run (centralized epochs, or federated rounds x clients x epochs).

    Federated shards are taken as equal (``ceil(train_size / clients)``), and each round trains
    the clients :func:`~qfed_qiskit.federated.core.sample_clients` would pick.
    """

    def per_epoch(samples: int) -> int:
        steps = -(-samples // config.batch_size)
        if config.max_steps_per_epoch is not None:
            steps = min(steps, config.max_steps_per_epoch)
        return steps

    if not config.federated:
        return config.epochs * per_epoch(train_size)
    clients = config.clients
    if config.fraction_fit >= 1.0:
        per_round = clients
    else:
        per_round = min(clients, max(1, config.min_clients, int(config.fraction_fit * clients)))
    shard = math.ceil(train_size / clients)
    return config.rounds * per_round * config.local_epochs * per_epoch(shard)


def estimate_cost(
    profile: BackendProfile | str | Path,
    circuit: QuantumCircuit | None,
    config: TrainConfig,
    *,
    train_size: int = FASHION_MNIST_TRAIN,
) -> dict[str, Any]:
    """Circuits, shots and jobs a training run submits on a backend (before running it).

    A step submits :func:`circuits_per_step` circuits in :data:`JOBS_PER_STEP` jobs; each
    evaluation (one per epoch, or per federated round) runs the forward circuit once.

    Args:
        profile: A profile, or its name or path.
        circuit: The QT circuit (None: built from ``config``).
        config: The run's config (epochs or rounds, clients, batch size, step cap).
        train_size: Training images (FashionMNIST: 60,000).

    Returns:
        ``backend``, ``kind``, ``circuits_per_step``, ``shots_per_step``, ``steps``,
        ``evaluations``, ``total_circuits``, ``total_shots``, ``total_jobs``,
        ``max_shots_budget`` (None unless ``ibm-runtime``) and ``needs_confirmation`` (an IBM
        hardware run whose shots exceed the budget, or with no budget set).
    """
    prof = _as_profile(profile)
    qt = config.model == "qt"
    per_step = 0
    if qt and prof.uses_sampler:
        per_step = circuits_per_step(prof, circuit if circuit is not None else qt_circuit(config))
    shots = prof.shots if prof.uses_sampler else 0
    steps = training_steps(config, train_size=train_size)
    evaluations = config.rounds if config.federated else config.epochs
    forward = 1 if per_step else 0
    total_circuits = steps * per_step + evaluations * forward
    total_shots = total_circuits * shots
    hardware = prof.kind == "ibm-runtime" and not _is_fake(prof.device)
    budget = prof.max_shots_budget if prof.kind == "ibm-runtime" else None
    needs = hardware and qt and (budget is None or total_shots > budget)
    return {
        "backend": prof.name,
        "kind": prof.kind,
        "circuits_per_step": per_step,
        "shots_per_step": per_step * shots,
        "steps": steps,
        "evaluations": evaluations,
        "total_circuits": total_circuits,
        "total_shots": total_shots,
        "total_jobs": (steps * JOBS_PER_STEP + evaluations) if per_step else 0,
        "max_shots_budget": budget,
        "needs_confirmation": needs,
    }


def format_cost(cost: dict[str, Any]) -> str:
    """One line for the CLI: circuits and shots per step, and the run's totals and budget."""
    budget = cost.get("max_shots_budget")
    limit = "no budget set" if budget is None else f"budget {budget:,} shots"
    return (
        f"{cost['backend']}: {cost['circuits_per_step']:,} circuits, "
        f"{cost['shots_per_step']:,} shots per step; {cost['steps']:,} steps + "
        f"{cost['evaluations']:,} evaluations = {cost['total_circuits']:,} circuits, "
        f"{cost['total_shots']:,} shots, {cost['total_jobs']:,} jobs in total ({limit})"
    )


def check_budget(cost: dict[str, Any], *, yes: bool) -> None:
    """Refuse a hardware run over its profile's shot budget unless ``yes`` (the ``--yes`` flag).

    Raises:
        QFedInputError: If ``cost["needs_confirmation"]`` and not ``yes``.
    """
    if not cost.get("needs_confirmation") or yes:
        return
    budget = cost.get("max_shots_budget")
    over = (
        "the profile sets no max-shots-budget"
        if budget is None
        else f"over the profile's max-shots-budget of {budget:,}"
    )
    raise QFedInputError(
        f"this run submits {cost['total_shots']:,} shots to IBM hardware ({over}); "
        "pass --yes to run it"
    )
