"""Samplers and devices by name: Aer (ideal or noisy, exact or with shots), fake IBM devices."""

from __future__ import annotations

from typing import Any

import numpy as np
from qiskit.primitives import BaseSamplerV2
from qiskit.primitives.containers.sampler_pub import SamplerPub

from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.quantum.exact_aer import AER_METHODS, ExactAerSampler
from qfed_qiskit.quantum.journal import key_seed, pub_key
from qfed_qiskit.quantum.results import check_shots

_FAKE_SKIP = {"Fake", "FakeBackendV2", "FakeProviderForBackendV2", "FakeFractionalBackend"}


def _seeded_aer_sampler_class() -> Any:
    from qiskit_aer.primitives import SamplerV2 as AerSamplerV2

    class SeededAerSampler(AerSamplerV2):  # type: ignore[misc,valid-type]
        """Aer ``SamplerV2`` with a simulator seed per ``run`` from ``seed`` and the PUBs.

        Aer's ``SamplerV2(seed=s)`` reuses seed ``s`` for every call, so repeated evaluations
        (the forward pass, then the gradient PUB) would reuse the same random stream. Here each
        call's seed comes from ``seed`` and the content of its PUBs
        (:func:`~qfed_qiskit.quantum.journal.pub_key`): runs are reproducible, different calls are
        independent, and a resumed run draws what the uninterrupted one drew.
        """

        def __init__(self, *, seed: int | None = None, **kwargs: Any) -> None:
            super().__init__(seed=None, **kwargs)
            self._base_seed = seed

        def _run(self, pubs: list[SamplerPub]) -> Any:
            if self._base_seed is not None:
                described = [
                    (
                        p.circuit,
                        p.parameter_values.as_array(list(p.circuit.parameters))
                        if p.circuit.parameters
                        else None,
                        p.shots,
                    )
                    for p in pubs
                ]
                seeds = [self._base_seed, *key_seed(pub_key(described, None))]
                self._seed = int(np.random.default_rng(seeds).integers(0, 2**31 - 1))
            return super()._run(pubs)

    return SeededAerSampler


def aer_sampler(
    *,
    noise_model: Any | None = None,
    shots: int | None,
    seed: int | None = None,
    method: str = "automatic",
    native: bool = False,
) -> BaseSamplerV2:
    """An Aer V2 sampler, ideal or noisy, with shots or exact.

    By default this is an :class:`ExactAerSampler`: each parameter set is simulated once
    (statevector, or density matrix with noise) and ``shots`` outcomes are drawn from the exact
    distribution, which is how Aer itself samples circuits whose measurements are all at the end,
    so the counts have the same distribution. It is much faster than Aer's ``SamplerV2``, which
    returns every shot as a hex string (7 qubits, 197 parameter sets, 4096 shots: 0.12 s against
    several seconds) and, for noise on gates its density-matrix method lacks (``cu``), simulates
    one noisy trajectory per shot. ``native=True`` gives Aer's ``SamplerV2`` (with a fresh
    simulator seed per call drawn from ``seed``).

    Args:
        noise_model: An Aer ``NoiseModel``, or None for an ideal simulator.
        shots: Shots per parameter set; ``None`` or ``0`` for exact probabilities.
        seed: Seed of the shot sampling.
        method: Aer simulation method: ``"automatic"``, ``"statevector"``, ``"density_matrix"``.
            ``"statevector"`` with a noise model and shots means Aer's ``SamplerV2`` (noisy
            trajectories, one per shot).
        native: Use Aer's ``SamplerV2`` (needs ``shots``).

    Returns:
        A ``BaseSamplerV2``.

    Raises:
        QFedInputError: For bad shots or method, or ``native`` without shots.
    """
    if method not in AER_METHODS:
        raise QFedInputError(f"method must be one of {AER_METHODS}, got {method!r}")
    checked = check_shots(shots)
    noisy = noise_model is not None and not noise_model.is_ideal()
    if noisy and method == "statevector" and checked is not None:
        native = True  # noisy statevector = Aer's per-shot trajectories
    if not native:
        return ExactAerSampler(noise_model=noise_model, method=method, shots=checked, seed=seed)
    if checked is None:
        raise QFedInputError("native=True (Aer's SamplerV2) needs shots >= 1")
    backend_options: dict[str, Any] = {"method": method}
    if noise_model is not None:
        backend_options["noise_model"] = noise_model
    sampler: BaseSamplerV2 = _seeded_aer_sampler_class()(
        default_shots=checked, seed=seed, options={"backend_options": backend_options}
    )
    return sampler


def fake_backend_names() -> list[str]:
    """Names accepted by :func:`fake_backend` (``fake_<device>``), sorted."""
    from qiskit_ibm_runtime import fake_provider

    names = {
        _fake_key(name)
        for name in dir(fake_provider)
        if name.startswith("Fake") and name not in _FAKE_SKIP
    }
    return sorted(names)


def _fake_key(class_name: str) -> str:
    return "fake_" + class_name.removeprefix("Fake").removesuffix("V2").lower()


def fake_backend(name: str) -> Any:
    """A fake IBM device from ``qiskit_ibm_runtime.fake_provider`` by name.

    Args:
        name: ``"fake_torino"``, ``"fake_brisbane"``, ``"fake_manila"`` ... (case-insensitive; the
            ``fake_`` prefix and a ``V2`` suffix are optional, ``"FakeManilaV2"`` also works).

    Returns:
        A new ``FakeBackendV2`` instance.

    Raises:
        QFedInputError: For an unknown name (the message lists a few valid ones).
    """
    from qiskit_ibm_runtime import fake_provider

    wanted = name.strip().lower().replace("-", "_")
    wanted = "fake_" + wanted.removeprefix("fake").lstrip("_")
    wanted = wanted.removesuffix("v2").rstrip("_")
    for attr in dir(fake_provider):
        if attr.startswith("Fake") and attr not in _FAKE_SKIP and _fake_key(attr) == wanted:
            return getattr(fake_provider, attr)()
    examples = ", ".join(["fake_manila", "fake_lagos", "fake_brisbane", "fake_torino"])
    raise QFedInputError(
        f"unknown fake backend {name!r} (valid names look like: {examples}; "
        f"{len(fake_backend_names())} available)"
    )


def noise_model_from_backend(backend: Any) -> Any:
    """Aer ``NoiseModel.from_backend(backend)``: gate errors, thermal relaxation and readout."""
    from qiskit_aer.noise import NoiseModel

    return NoiseModel.from_backend(backend)


def fake_device_sampler(
    backend: Any,
    *,
    shots: int | None,
    seed: int | None = None,
    method: str = "automatic",
    native: bool = False,
) -> Any:
    """An Aer sampler that simulates ``backend`` (noise model, coupling map, basis gates).

    Circuits must be ISA circuits for ``backend`` (see
    :class:`~qfed_qiskit.quantum.transpile.IsaTranspiler`). By default the noisy state of the
    qubits a circuit uses is simulated exactly (density matrix, the device noise model restricted
    to those qubits, readout errors applied) and shots are drawn from it (:class:`ExactAerSampler`);
    ``native=True`` (or ``method="statevector"``: noisy trajectories) uses Aer's
    ``SamplerV2.from_backend`` instead, which reloads the whole device noise model on every call
    (about 2 s for FakeTorino).

    Args:
        backend: A backend (e.g. from :func:`fake_backend`).
        shots: Shots per parameter set; ``None`` or ``0`` for exact noisy probabilities.
        seed: Seed of the shot sampling.
        method: ``"automatic"`` or ``"density_matrix"`` (exact state, shots drawn from it), or
            ``"statevector"`` (Aer's ``SamplerV2``, one noisy trajectory per shot).
        native: Use Aer's ``SamplerV2`` (needs ``shots``).

    Returns:
        A ``BaseSamplerV2``.
    """
    from qiskit_aer import AerSimulator

    if method not in AER_METHODS:
        raise QFedInputError(f"method must be one of {AER_METHODS}, got {method!r}")
    checked = check_shots(shots)
    if not native and (method != "statevector" or checked is None):
        return ExactAerSampler(
            simulator=AerSimulator.from_backend(backend),
            method="density_matrix" if method == "statevector" else method,
            shots=checked,
            seed=seed,
        )
    if checked is None:
        raise QFedInputError("native=True (Aer's SamplerV2) needs shots >= 1")
    sampler = _seeded_aer_sampler_class().from_backend(backend, default_shots=checked, seed=seed)
    if method != "automatic":
        sampler._backend.set_options(method=method)
    return sampler
