"""Turn noise-model profiles into engine noise settings and Aer ``NoiseModel`` objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.profiles.schema import NoiseProfile

if TYPE_CHECKING:
    from qfed_qiskit.engines.density_matrix import DepolarizingNoise


def depolarizing_noise(profile: NoiseProfile | None) -> DepolarizingNoise | None:
    """The :class:`~qfed_qiskit.engines.density_matrix.DepolarizingNoise` of a profile.

    Args:
        profile: A ``depolarizing`` noise profile, or None (noiseless).

    Returns:
        The noise settings, or None for ``profile=None``.

    Raises:
        QFedInputError: For a ``from-backend`` profile (not a depolarizing model).
    """
    if profile is None:
        return None
    if profile.kind != "depolarizing":
        raise QFedInputError(
            f"noise model {profile.name!r} has kind {profile.kind!r}; expected 'depolarizing'"
        )
    from qfed_qiskit.engines.density_matrix import DepolarizingNoise

    return DepolarizingNoise(p1=profile.p1, p2=profile.p2, readout=profile.readout)


def noise_backend(profile: NoiseProfile | None) -> Any | None:
    """The fake device of a ``from-backend`` profile (None for other kinds or no profile)."""
    if profile is None or profile.kind != "from-backend" or profile.backend is None:
        return None
    from qfed_qiskit.quantum.devices import fake_backend

    return fake_backend(profile.backend)


def aer_noise_model(profile: NoiseProfile | None, *, backend: Any | None = None) -> Any | None:
    """The Aer ``NoiseModel`` of a profile.

    ``depolarizing``: errors on the logical circuit's gates, as
    :meth:`~qfed_qiskit.engines.density_matrix.DepolarizingNoise.to_aer_noise_model` builds them
    (so Aer agrees with the density-matrix engine). ``from-backend``: Aer's
    ``NoiseModel.from_backend`` of the device (gate errors, thermal relaxation, readout), which
    applies to circuits transpiled to that device's ISA.

    Args:
        profile: The noise profile, or None (no noise).
        backend: The device of a ``from-backend`` profile if already built (else built here).

    Returns:
        The noise model, or None for ``profile=None``.
    """
    if profile is None:
        return None
    if profile.kind == "depolarizing":
        noise = depolarizing_noise(profile)
        assert noise is not None
        return noise.to_aer_noise_model()
    from qfed_qiskit.quantum.devices import noise_model_from_backend

    device = backend if backend is not None else noise_backend(profile)
    return noise_model_from_backend(device)
