"""Evaluate a trained Quantum-Train model with its QNN executed on any backend.

The run's trained parameters (``model.pt`` of a finished run, else the global parameters of its
``checkpoint.pt``) go into a model built from the run's config. The backend measures the circuit's
``2**n`` probabilities at the trained angles, ``repeats`` times with fresh shots; each measurement
is mapped to CNN weights by the trained mapping MLP and the resulting CNN is evaluated on the test
set. Reported beside each accuracy: the total-variation distance between the backend's and the
exact probabilities and the relative L2 distance between the generated and the exact weights.

On sampler backends all repeats are one job: one PUB of the trained angles with ``shots x
repeats`` shots, split into ``repeats`` groups of ``shots`` (shots are independent draws, so this
is the same as ``repeats`` separate runs). Torch engines (trajectories, shot-aware) are called once
per repeat with a fresh seed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import TensorDataset

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.profiles.schema import BackendProfile
from qfed_qiskit.training.builders import qt_sizing

AER_DENSITY_MATRIX_MAX_QUBITS = 14
"""Largest circuit whose noisy probabilities are computed as an exact Aer density matrix here
(``2**(2n)`` complex128 amplitudes: 1 GiB at 13 qubits, 4 GiB at 14)."""
EVAL_FOLDER = "eval"


@dataclass(frozen=True)
class TrainedRun:
    """A run folder's config and trained parameters.

    Attributes:
        path: The run folder.
        config: The run's config.
        state: The model's state dict (its trainable parameters).
        source: Where the parameters came from (``model.pt``, or the checkpoint's round).
        test_accuracy: The run's own final test accuracy (None for a checkpoint).
    """

    path: Path
    config: TrainConfig
    state: dict[str, torch.Tensor]
    source: str
    test_accuracy: float | None


def _config_of(stored: Mapping[str, Any], where: Path) -> TrainConfig:
    try:
        return TrainConfig.from_dict(stored)
    except (TypeError, QFedInputError) as exc:
        raise QFedInputError(
            f"{where}: its config cannot be read by this version ({exc})"
        ) from None


def load_trained_run(run: str | Path) -> TrainedRun:
    """The config and trained parameters of the run in ``run`` (finished or checkpointed).

    Raises:
        QFedInputError: If the folder holds neither a finished run nor a checkpoint, or the
            run trained the classical CNN (nothing quantum to evaluate).
    """
    path = Path(run)
    summary_path, model_path = path / "summary.json", path / "model.pt"
    if summary_path.is_file() and model_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        config = _config_of(summary["config"], summary_path)
        state = torch.load(model_path, weights_only=True)
        source, accuracy = "model.pt", float(summary["test_accuracy"])
    elif (path / "checkpoint.pt").is_file():
        from qfed_qiskit.federated.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        config = _config_of(ckpt.config, path / "checkpoint.pt")
        state = {k: torch.from_numpy(v) for k, v in ckpt.global_arrays.items()}
        source, accuracy = f"checkpoint.pt (round {ckpt.round})", None
    else:
        raise QFedInputError(
            f"--run {path}: no trained parameters (model.pt with summary.json, or checkpoint.pt); "
            "point --run at a folder written by `qfed-qiskit train`"
        )
    if config.model != "qt" or config.generator == "vector":
        what = f"model={config.model!r}" if config.model != "qt" else "generator='vector'"
        raise QFedInputError(f"--run {path} trained {what}: there is no QNN to run on a backend")
    return TrainedRun(path, config, state, source, accuracy)


SHOT_TRAJECTORIES_FROM_QUBITS = 11
"""From this many qubits, shots on a noisy ``aer`` profile are drawn by Aer's per-shot noisy
trajectories (method ``statevector``) instead of from the exact density matrix: the same
distribution of counts, and 4096 shots of the 13-qubit model take 35 s here instead of 196 s."""


def fast_sampling(profile: BackendProfile, num_qubits: int) -> BackendProfile:
    """``profile``, with Aer's per-shot trajectories where they are much faster (see
    :data:`SHOT_TRAJECTORIES_FROM_QUBITS`); exact probabilities keep the density matrix."""
    noisy = profile.noise_profile is not None and profile.noise_profile.kind == "depolarizing"
    if (
        profile.kind == "aer"
        and noisy
        and profile.shots > 0
        and profile.method == "automatic"
        and num_qubits >= SHOT_TRAJECTORIES_FROM_QUBITS
    ):
        return dataclasses.replace(profile, method="statevector")
    return profile


def simulation_method(profile: BackendProfile, num_qubits: int) -> str:
    """How ``profile`` computes the probabilities of an ``num_qubits``-qubit circuit, in words.

    Raises:
        QFedInputError: If the method cannot simulate that many qubits here (with the limit and
            an alternative).
    """
    from qfed_qiskit.profiles.factory import DENSITY_MATRIX_MAX_QUBITS

    shots = f", {profile.shots}-shot frequencies" if profile.shots else ""
    noisy = profile.noise_profile is not None
    if profile.kind == "statevector":
        if noisy:
            return (
                f"Pauli trajectories: the error-free circuit exactly plus {profile.trajectories} "
                f"error trajectories (unbiased estimate, not exact){shots}"
            )
        return f"exact statevector (torch){shots}"
    if profile.kind == "density-matrix":
        if num_qubits > DENSITY_MATRIX_MAX_QUBITS:
            raise QFedInputError(
                f"backend {profile.name!r} (torch density matrix) simulates at most "
                f"{DENSITY_MATRIX_MAX_QUBITS} qubits, this model has {num_qubits}: use aer-noisy "
                f"(Aer's exact density matrix, up to {AER_DENSITY_MATRIX_MAX_QUBITS} qubits) or "
                "trajectories (any size)"
            )
        return f"exact density matrix (torch){shots}"
    if profile.kind in ("aer", "fake-device"):
        device_noise = profile.kind == "fake-device" or (
            profile.noise_profile is not None and profile.noise_profile.kind == "from-backend"
        )
        if not (noisy or device_noise):
            return "exact statevector (Aer)" + (shots or ", exact probabilities")
        if profile.method == "statevector":
            return f"Aer noisy trajectories, one per shot (samples of the noisy state){shots}"
        if num_qubits > AER_DENSITY_MATRIX_MAX_QUBITS:
            raise QFedInputError(
                f"backend {profile.name!r}: an exact noisy {num_qubits}-qubit density matrix "
                f"needs {2 ** (2 * num_qubits) * 16 / 2**30:.0f} GiB; the limit here is "
                f"{AER_DENSITY_MATRIX_MAX_QUBITS} qubits: use trajectories (any size)"
            )
        gib = 2 ** (2 * num_qubits) * 16 / 2**30
        where = "device noise model on the qubits the circuit uses" if device_noise else "noise"
        return f"exact density matrix (Aer density_matrix method, {where}, {gib:.3g} GiB)" + (
            shots or ", exact probabilities"
        )
    if profile.device is not None and profile.device.lower().startswith("fake"):
        return f"IBM Runtime local testing mode on {profile.device} (Aer){shots}"
    return f"IBM Quantum hardware ({profile.device}){shots}"


def _split_shots(result: Any, groups: int) -> NDArray[np.float64]:
    """``groups`` frequency vectors from one PUB result (exact results repeat themselves)."""
    from qiskit.primitives.containers import BitArray

    from qfed_qiskit.quantum.results import ProbabilityArray, bitarray_probabilities

    fields = list(result.data)
    bits = result.data[fields[0]] if len(fields) == 1 else result.join_data()
    if isinstance(bits, ProbabilityArray):
        probs = bits.probabilities.reshape(-1, bits.probabilities.shape[-1])[0]
        return np.repeat(probs[None, :], groups, axis=0)
    raw = np.asarray(bits.array).reshape(-1, np.asarray(bits.array).shape[-1])
    chunks = np.split(raw, groups, axis=0)
    return np.concatenate([bitarray_probabilities(BitArray(c, bits.num_bits)) for c in chunks])


def backend_probabilities(
    profile: BackendProfile,
    circuit: Any,
    theta: torch.Tensor,
    *,
    repeats: int,
    seed: int,
) -> tuple[NDArray[np.float64], list[str]]:
    """``repeats`` probability vectors of ``circuit`` at ``theta`` measured on ``profile``.

    Returns:
        Array ``(repeats, 2**n)`` and the ids of the jobs submitted.
    """
    from qfed_qiskit.profiles.factory import ProfileEngineFactory

    if profile.uses_sampler:
        factory = ProfileEngineFactory(profile, dtype="float64", seed=seed)
        try:
            engine: Any = factory(circuit)
            shots = profile.shots or None
            total = shots * repeats if shots else None
            pub = (engine.measured_circuit, theta.detach().numpy().astype(np.float64)[None, :])
            result = engine.sampler.run([pub], shots=total).result()
            probs = _split_shots(result[0], repeats if shots else 1)
        finally:
            factory.close()
        if not shots:
            probs = np.repeat(probs[:1], repeats, axis=0)
        return probs, list(factory.job_ids)
    if profile.kind == "statevector" and profile.noise is None and not profile.shots:
        from qfed_qiskit.engines.statevector import StatevectorEngine

        exact = StatevectorEngine(circuit=circuit, dtype=torch.float64)(theta.double())
        return np.repeat(exact.detach().numpy()[None, :], repeats, axis=0), []
    rows = []
    for k in range(repeats):  # torch engines are seeded by content: a new seed per repeat
        factory = ProfileEngineFactory(profile, dtype="float64", seed=seed * 1000 + k)
        with torch.no_grad():
            rows.append(factory(circuit)(theta.double()).numpy())
    return np.stack(rows), []


def check_repeats(repeats: int) -> int:
    """``repeats`` if it is an integer >= 1.

    Raises:
        QFedInputError: Otherwise.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise QFedInputError(f"--repeats {repeats!r} (expected an integer >= 1)")
    return repeats


def with_shots(profile: BackendProfile, shots: int | None) -> BackendProfile:
    """``profile`` measuring ``shots`` per repeat (None: its own).

    Raises:
        QFedInputError: For a shot count below 0, or 0 on IBM hardware.
    """
    if shots is None:
        return profile
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 0:
        raise QFedInputError(f"--shots {shots!r} (expected an integer >= 1, or 0 for exact)")
    if shots == 0 and profile.kind == "ibm-runtime":
        raise QFedInputError("--shots 0: IBM hardware returns shots, not exact probabilities")
    return dataclasses.replace(profile, shots=shots)


def _accuracy(model: Any, probabilities: torch.Tensor | None, test: TensorDataset) -> float:
    from qfed_qiskit.training.loop import evaluate

    with torch.no_grad():
        cnn = model.to_classical(probabilities)
    return evaluate(cnn, test).accuracy


def trained_model(trained: TrainedRun) -> Any:
    """The run's QT model with its trained parameters, on the exact engine, in eval mode."""
    from qfed_qiskit.training.builders import build_model

    model: Any = build_model(trained.config)
    model.load_state_dict(trained.state)
    return model.eval()


def score_probabilities(
    model: Any, rows: NDArray[np.float64], test: TensorDataset
) -> dict[str, Any]:
    """Test accuracy of the CNN each probability vector in ``rows`` generates, and its distance
    from the exact model: ``accuracy_mean``, ``accuracy_std`` (over rows), ``accuracies``,
    ``exact_accuracy``, ``tv_distance_mean`` and ``weight_rel_l2_mean``."""
    with torch.no_grad():
        exact_probs = model.engine(model.qnn_weights.detach())
        exact_weights = model.generate_flat(exact_probs)
    exact64 = exact_probs.double().numpy()
    accuracies, tv, l2 = [], [], []
    for row in rows:
        p = torch.from_numpy(np.asarray(row, dtype=np.float64)).to(exact_probs.dtype)
        with torch.no_grad():
            weights = model.generate_flat(p)
        accuracies.append(_accuracy(model, p, test))
        tv.append(0.5 * float(np.abs(row - exact64).sum()))
        l2.append(float((weights - exact_weights).norm() / exact_weights.norm()))
    return {
        "accuracy_mean": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0,
        "accuracies": accuracies,
        "exact_accuracy": _accuracy(model, exact_probs, test),
        "tv_distance_mean": float(np.mean(tv)),
        "weight_rel_l2_mean": float(np.mean(l2)),
    }


def sample_frequencies(
    probabilities: NDArray[np.float64], shots: int, repeats: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """``repeats`` frequency vectors of ``shots`` draws from one exact distribution."""
    from qfed_qiskit.quantum.results import as_distribution

    counts = rng.multinomial(shots, as_distribution(probabilities), size=repeats)
    out: NDArray[np.float64] = counts / shots
    return out


def eval_path(run: Path, profile: BackendProfile, shots: int) -> Path:
    """``<run>/eval/<backend>[-<shots>].json``."""
    name = profile.name or "backend"
    return run / EVAL_FOLDER / (f"{name}-{shots}.json" if shots else f"{name}.json")


def _git_commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def evaluate_on_backend(
    trained: TrainedRun,
    profile: BackendProfile,
    *,
    test: TensorDataset,
    shots: int | None = None,
    repeats: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Test accuracy of ``trained`` with its QNN on ``profile`` (see the module docstring).

    Args:
        trained: The run (:func:`load_trained_run`).
        profile: The backend.
        test: The test set.
        shots: Shots per repeat (None: the profile's; 0: exact probabilities where the backend
            can give them).
        repeats: Measurements with fresh shots (>= 1).
        seed: Seed of the shots and of the torch engines' draws.

    Returns:
        The report (also what ``qfed-qiskit evaluate --json`` prints).

    Raises:
        QFedInputError: For a bad shot count or repeats, or a model too large for the method.
    """
    check_repeats(repeats)
    model = trained_model(trained)
    profile = fast_sampling(with_shots(profile, shots), model.sizing.num_qubits)
    method = simulation_method(profile, model.sizing.num_qubits)
    start = time.perf_counter()
    probs, job_ids = backend_probabilities(
        profile, model.circuit, model.qnn_weights.detach(), repeats=repeats, seed=seed
    )
    scores = score_probabilities(model, probs, test)
    report: dict[str, Any] = {
        "run": str(trained.path),
        "parameters": trained.source,
        "backend": profile.name,
        "backend_kind": profile.kind,
        "noise": profile.noise,
        "shots": profile.shots,
        "repeats": repeats,
        "seed": seed,
        "method": method,
        "qubits": model.sizing.num_qubits,
        "test_samples": len(test),
        **scores,
        "run_test_accuracy": trained.test_accuracy,
        "job_ids": job_ids,
        "wall_time_s": time.perf_counter() - start,
        "git_commit": _git_commit(),
    }
    return report


def load_test_set(config: TrainConfig, data_dir: str | None = None) -> TensorDataset:
    """The FashionMNIST test set the run was evaluated on (``data_dir`` overrides the run's)."""
    from qfed_qiskit.data import load_fashion_mnist, to_tensor_dataset

    data = load_fashion_mnist(data_dir or config.data_dir)
    return to_tensor_dataset(data.test_images, data.test_labels)


def run_evaluation(
    run: str | Path,
    profile: BackendProfile,
    *,
    repeats: int = 1,
    seed: int = 0,
    data_dir: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """:func:`evaluate_on_backend` for the run folder ``run``; writes and returns the report.

    ``profile`` measures the shots it names (see :func:`with_shots`). The report goes to
    ``<run>/eval/<backend>[-<shots>].json`` (atomically).
    """
    from qfed_qiskit.files import atomic_write_bytes

    trained = load_trained_run(run)
    check_repeats(repeats)
    # Size problems before loading data.
    simulation_method(profile, qt_sizing(trained.config).num_qubits)
    test = load_test_set(trained.config, data_dir)
    report = evaluate_on_backend(trained, profile, test=test, repeats=repeats, seed=seed)
    path = eval_path(trained.path, profile, profile.shots)
    atomic_write_bytes(path, (json.dumps(report, indent=2, sort_keys=True) + "\n").encode())
    return report, path


def describe_report(report: Mapping[str, Any]) -> str:
    """One line of an evaluation report: backend, shots, accuracy beside the exact one."""
    spread = f" ± {report['accuracy_std']:.2%}" if report["repeats"] > 1 else ""
    measured = "exact probabilities" if not report["shots"] else f"{report['shots']:,} shots"
    times = f" × {report['repeats']}" if report["repeats"] > 1 else ""
    return (
        f"{report['backend']}, {measured}{times}: test accuracy "
        f"{report['accuracy_mean']:.2%}{spread} (exact {report['exact_accuracy']:.2%}); "
        f"TV distance {report['tv_distance_mean']:.3f}, weight error "
        f"{report['weight_rel_l2_mean']:.0%}; {report['method']}"
    )
