"""What a run submits to a backend: circuits and shots per step, totals, and the budget check."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qfed_qiskit.exceptions import CredentialsError, QFedInputError
from qfed_qiskit.profiles.loader import load_backend_profile
from qfed_qiskit.profiles.noise import noise_backend
from qfed_qiskit.profiles.schema import LEAST_BUSY, BackendProfile

if TYPE_CHECKING:
    from qiskit.circuit import QuantumCircuit

    from qfed_qiskit.config import TrainConfig

logger = logging.getLogger(__name__)

FASHION_MNIST_TRAIN = 60_000
"""Training images assumed by :func:`estimate_cost`."""

JOBS_PER_STEP = 2
"""Sampler jobs per training step: the forward PUB and one gradient job."""


def as_profile(profile: BackendProfile | str | Path) -> BackendProfile:
    """``profile`` itself, or the profile of that name or path."""
    return profile if isinstance(profile, BackendProfile) else load_backend_profile(profile)


def is_fake(device: str | None) -> bool:
    """Whether ``device`` names a fake (local testing mode) device."""
    return device is not None and device.strip().lower().startswith("fake")


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
    prof = as_profile(profile)
    if not prof.uses_sampler:
        return 0
    return 1 + gradient_evaluations(prof, circuit)


def _device_for_stats(profile: BackendProfile, num_qubits: int, service: Any | None) -> Any | None:
    """The device whose ISA circuits run (None for ibm-runtime without credentials)."""
    if profile.kind == "aer":
        return noise_backend(profile.noise_profile)
    from qfed_qiskit.quantum.devices import fake_backend

    if is_fake(profile.device):
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
    from qfed_qiskit.quantum.layout import device_pass_manager
    from qfed_qiskit.quantum.transpile import isa_stats

    prof = as_profile(profile)
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

    from qfed_qiskit.training.loop import steps_per_epoch

    def per_epoch(samples: int) -> int:
        return steps_per_epoch(samples, config.batch_size, config.max_steps_per_epoch)

    if not config.federated:
        return config.epochs * per_epoch(train_size)
    per_round = config.clients_per_round
    shard = math.ceil(train_size / config.clients)
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
    prof = as_profile(profile)
    qt = config.model == "qt"
    per_step = 0
    if qt and prof.uses_sampler:
        if circuit is None:
            from qfed_qiskit.circuits import qt_ansatz
            from qfed_qiskit.training.builders import qt_sizing

            circuit = qt_ansatz(qt_sizing(config).num_qubits, config.blocks)
        per_step = circuits_per_step(prof, circuit)
    shots = prof.shots if prof.uses_sampler else 0
    steps = training_steps(config, train_size=train_size)
    evaluations = config.rounds if config.federated else config.epochs
    forward = 1 if per_step else 0
    total_circuits = steps * per_step + evaluations * forward
    total_shots = total_circuits * shots
    hardware = prof.kind == "ibm-runtime" and not is_fake(prof.device)
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
        "pass --yes (yes=True in Python) to run it"
    )


def guard_cost(cost: dict[str, Any], *, yes: bool, show: Callable[[str], None]) -> None:
    """On IBM Runtime, ``show`` what will be submitted, then :func:`check_budget`.

    The guard of every command and API call that may submit to IBM hardware.
    """
    if cost.get("kind") != "ibm-runtime":
        return
    show(format_cost(cost))
    check_budget(cost, yes=yes)


def training_cost(config: TrainConfig) -> dict[str, Any] | None:
    """:func:`estimate_cost` of a run on IBM Runtime; None for other backends and models."""
    if config.model != "qt":
        return None
    profile = load_backend_profile(config.backend)
    return estimate_cost(profile, None, config) if profile.kind == "ibm-runtime" else None


def evaluation_cost(profile: BackendProfile | str | Path, *, repeats: int) -> dict[str, Any]:
    """What ``qfed-qiskit evaluate`` submits: one circuit, ``shots x repeats`` shots, one job.

    Returns:
        The keys of :func:`estimate_cost` that :func:`format_cost` and :func:`check_budget` read.
    """
    prof = as_profile(profile)
    shots = prof.shots * repeats if prof.uses_sampler else 0
    hardware = prof.kind == "ibm-runtime" and not is_fake(prof.device)
    budget = prof.max_shots_budget if prof.kind == "ibm-runtime" else None
    jobs = 1 if prof.uses_sampler else 0
    return {
        "backend": prof.name,
        "kind": prof.kind,
        "circuits_per_step": jobs,
        "shots_per_step": shots,
        "steps": 0,
        "evaluations": jobs,
        "total_circuits": jobs,
        "total_shots": shots,
        "total_jobs": jobs,
        "max_shots_budget": budget,
        "needs_confirmation": hardware and (budget is None or shots > budget),
    }
