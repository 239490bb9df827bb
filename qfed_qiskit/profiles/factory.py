"""Engine factories of backend profiles: the QNN engine each profile builds for a circuit."""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.profiles.cost import as_profile, is_fake
from qfed_qiskit.profiles.noise import aer_noise_model, depolarizing_noise, noise_backend
from qfed_qiskit.profiles.schema import EXACT_KINDS, LEAST_BUSY, BackendProfile
from qfed_qiskit.quantum.managed import RetryPolicy

if TYPE_CHECKING:
    from qiskit.circuit import QuantumCircuit

    from qfed_qiskit.config import TrainConfig
    from qfed_qiskit.engines.base import QNNEngine
    from qfed_qiskit.quantum.journal import JobJournal

logger = logging.getLogger(__name__)

DENSITY_MATRIX_MAX_QUBITS = 10
"""Largest circuit the ``density-matrix`` kind accepts (a 10-qubit density matrix is 8 MiB in
float32, and autograd keeps about one per gate)."""


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
        self.profile = profile
        self.dtype = dtype
        from qfed_qiskit.engines.base import torch_dtype

        self._torch_dtype = torch_dtype(dtype)
        self.seed = profile.seed if profile.seed is not None else seed
        self.job_ids: list[str] = []
        self._service = service
        self._lock = threading.Lock()
        self._shared: _Shared | None = None
        self._closers: list[Callable[[], None]] = []
        self._engines = 0
        self.journal: JobJournal | None = None
        """The run's job journal (see :meth:`use_journal`); engines built later use it."""
        if profile.kind == "ibm-runtime" and not is_fake(profile.device) and service is None:
            from qfed_qiskit.quantum.ibm import connect_service, credentials_source

            credentials_source()  # fails fast, without network, when there is no account
            self._service = connect_service()

    def use_journal(self, folder: str | Path) -> None:
        """Keep sampler results in ``folder`` (``<run>/jobs``), if the profile says to.

        Call it before the engines are built; the federated server clears the journal after each
        checkpoint. Profiles that submit no jobs (density-matrix) keep none.
        """
        if self.profile.uses_sampler and self.profile.journal:
            from qfed_qiskit.quantum.journal import JobJournal

            self.journal = JobJournal(folder)

    @property
    def engines_built(self) -> int:
        """Number of engines built so far."""
        return self._engines

    def __call__(self, circuit: QuantumCircuit) -> QNNEngine:
        """The profile's engine for ``circuit`` (parameters in ``circuit.parameters`` order)."""
        profile = self.profile
        engine: QNNEngine
        if profile.kind == "statevector":
            engine = self._statevector_engine(circuit)
        elif profile.kind == "density-matrix":
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
                journal=self.journal,
                retry=RetryPolicy(retries=profile.retries, backoff_s=profile.retry_backoff),
                reconnect=self._reconnect if profile.kind == "ibm-runtime" else None,
                retrieve=self._retrieve_job(),
            )
        if profile.kind in EXACT_KINDS and profile.shots:
            from qfed_qiskit.engines.trajectories import ShotNoiseEngine

            engine = ShotNoiseEngine(engine=engine, shots=profile.shots, seed=self._seed_or_zero)
        self._engines += 1
        return engine

    @property
    def _seed_or_zero(self) -> int:
        return self.seed if self.seed is not None else 0

    def _statevector_engine(self, circuit: QuantumCircuit) -> QNNEngine:
        """The exact engine, or Pauli trajectories on it when the profile names a noise model."""
        noise = depolarizing_noise(self.profile.noise_profile)
        if noise is None or noise.is_noiseless:
            from qfed_qiskit.engines.statevector import StatevectorEngine

            return StatevectorEngine(circuit=circuit, dtype=self._torch_dtype)
        from qfed_qiskit.engines.trajectories import PauliTrajectoryEngine

        return PauliTrajectoryEngine(
            circuit=circuit,
            noise=noise,
            trajectories=self.profile.trajectories,
            seed=self._seed_or_zero,
            dtype=self._torch_dtype,
        )

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
        from qfed_qiskit.quantum.layout import device_pass_manager

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
        from qfed_qiskit.quantum.devices import aer_sampler, fake_backend, fake_device_sampler

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

    def _reconnect(self, failed: Any) -> Any:
        """A working IBM Runtime sampler after ``failed``'s batch or session closed.

        The first engine to notice opens a new batch/session on the same device; the others get
        that one.
        """
        with self._lock:
            old = self._shared
            assert old is not None and old.backend is not None
            if old.sampler is not failed:
                return old.sampler
            self.close()
            from qfed_qiskit.quantum.ibm import runtime_sampler

            runtime = runtime_sampler(
                backend_name=str(old.backend.name),
                mode=self.profile.mode,
                shots=self.profile.shots,
                dynamical_decoupling=self.profile.dynamical_decoupling,
                twirling=self.profile.twirling,
                service=self._service,
                seed=self.seed,
            )
            self._closers.append(runtime.close)
            old.sampler = runtime.sampler
            return runtime.sampler

    def _retrieve_job(self) -> Callable[[str], Any] | None:
        """``service.job`` on IBM hardware: jobs of a previous process are fetched, not redone."""
        if self.profile.kind != "ibm-runtime" or self._service is None:
            return None
        service: Any = self._service
        return lambda job_id: service.job(job_id)

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

    @property
    def remote(self) -> bool:
        """Whether the engines submit their jobs to IBM Quantum (not a local or fake device)."""
        return self.profile.kind == "ibm-runtime" and not is_fake(self.profile.device)

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
        None for a plain ``statevector`` profile (the default exact engine, built in
        ``config.dtype`` by
        :func:`~qfed_qiskit.training.builders.build_model`), else a
        :class:`ProfileEngineFactory`.

    Raises:
        ConfigError: Unknown or invalid profile.
        QFedInputError: A circuit too large for the density-matrix engine.
        CredentialsError: ``ibm-runtime`` on hardware without IBM credentials.
    """
    profile = as_profile(name_or_path)
    if profile.kind == "statevector" and profile.noise is None and not profile.shots:
        return None
    if config is not None and profile.kind == "density-matrix":
        from qfed_qiskit.training.builders import qt_sizing

        _check_density_qubits(qt_sizing(config).num_qubits, profile)
    return ProfileEngineFactory(
        profile,
        dtype=config.dtype if config is not None else "float32",
        seed=config.seed if config is not None else None,
        service=service,
    )
