"""Find and load backend and noise-model profiles by name (shipped data) or by TOML path."""

from __future__ import annotations

import functools
import importlib.util
import logging
import warnings
from pathlib import Path
from typing import Literal

from qfed_qiskit.config import read_toml
from qfed_qiskit.profiles.schema import (
    BackendProfile,
    NoiseProfile,
    ProfileNotFoundError,
    parse_backend_profile,
    parse_noise_profile,
)

logger = logging.getLogger(__name__)

ProfileFolder = Literal["backends", "noise_models"]

PROFILE_FOLDERS: tuple[ProfileFolder, ...] = ("backends", "noise_models")
"""Folders of the shipped profiles: top-level in a source checkout, ``_data/`` in a wheel."""

_PACKAGE_DATA = Path(__file__).resolve().parent / "_data"
_CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


class ProfileWarning(UserWarning):
    """A profile sets a key that its kind does not use (the key is ignored)."""


def is_profile_path(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` is a path (ends with ``.toml`` or contains a separator)."""
    text = str(name_or_path)
    return isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text or "\\" in text


def profile_dirs(folder: ProfileFolder) -> list[Path]:
    """Folders searched for profiles by name, in order.

    In a source checkout (or an editable install) that is the top-level ``backends/`` or
    ``noise_models/`` folder next to ``pyproject.toml``; in an installed wheel it is
    ``qfed_qiskit/profiles/_data/<folder>``, which the build copies there (see
    ``qfed_qiskit/profiles/_build.py``).
    """
    dirs: list[Path] = []
    checkout = _CHECKOUT_ROOT / folder
    if (_CHECKOUT_ROOT / "pyproject.toml").is_file() and checkout.is_dir():
        dirs.append(checkout)
    packaged = _PACKAGE_DATA / folder
    if packaged.is_dir():
        dirs.append(packaged)
    return dirs


def profile_names(folder: ProfileFolder) -> list[str]:
    """Names of the shipped profiles in ``folder``, sorted (the first folder wins on clashes)."""
    names: set[str] = set()
    for directory in profile_dirs(folder):
        names.update(p.stem for p in directory.glob("*.toml") if p.is_file())
    return sorted(names)


def find_profile(folder: ProfileFolder, name_or_path: str | Path) -> Path:
    """The file of a profile given by name (searched in :func:`profile_dirs`) or by path.

    Raises:
        ProfileNotFoundError: If there is no such profile (the message lists the names).
    """
    what = "backend" if folder == "backends" else "noise model"
    available = ", ".join(profile_names(folder)) or "none found"
    expected = f"a {what} profile name ({available}) or a path to a .toml file"
    if is_profile_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ProfileNotFoundError(
                f"{what} profile {str(name_or_path)!r}: file not found", expected=expected
            )
        return path
    for directory in profile_dirs(folder):
        candidate = directory / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    raise ProfileNotFoundError(
        f"{what} {str(name_or_path)!r}: unknown {what} profile (expected {expected})",
        expected=expected,
    )


@functools.lru_cache(maxsize=1)
def fake_device_names() -> tuple[str, ...]:
    """Names of qiskit-ibm-runtime's fake devices (``fake_torino``, ...), without importing it.

    Read from the folders of ``qiskit_ibm_runtime/fake_provider/backends``; empty (no check) if
    that package is not found.
    """
    try:
        spec = importlib.util.find_spec("qiskit_ibm_runtime")
    except (ImportError, ValueError):  # pragma: no cover - broken installs
        return ()
    if spec is None or not spec.submodule_search_locations:
        return ()
    root = Path(next(iter(spec.submodule_search_locations))) / "fake_provider" / "backends"
    if not root.is_dir():
        return ()
    return tuple(
        sorted(
            "fake_" + p.name
            for p in root.iterdir()
            if p.is_dir() and not p.name.startswith("_") and (p / "__init__.py").is_file()
        )
    )


def _emit(warnings_: list[str], source: str) -> None:
    for text in warnings_:
        warnings.warn(f"{source}: {text}", ProfileWarning, stacklevel=3)


def load_noise_profile(
    name_or_path: str | Path, *, relative_to: Path | None = None
) -> NoiseProfile:
    """Load and validate a noise-model profile.

    Args:
        name_or_path: A shipped name (``"depolarizing-1e-3"``) or a TOML path.
        relative_to: Folder that relative paths are tried against first (the folder of the
            backend profile that names this noise model).

    Returns:
        The profile. Keys its kind ignores give a :class:`ProfileWarning`.

    Raises:
        ConfigError: Unknown name, unreadable file, or any invalid key (one line).
    """
    if relative_to is not None and is_profile_path(name_or_path):
        candidate = relative_to / Path(name_or_path).expanduser()
        if not Path(name_or_path).is_absolute() and candidate.is_file():
            name_or_path = candidate
    path = find_profile("noise_models", name_or_path)
    data = read_toml(path)
    profile, warnings_ = parse_noise_profile(
        data, source=str(path), stem=path.stem, device_names=fake_device_names()
    )
    _emit(warnings_, str(path))
    return profile


def load_backend_profile(name_or_path: str | Path) -> BackendProfile:
    """Load and validate a backend profile, including the noise model it names.

    Args:
        name_or_path: A shipped name (``"aer-noisy"``) or a TOML path.

    Returns:
        The profile (with :attr:`BackendProfile.noise_profile` resolved). Keys its kind ignores
        give a :class:`ProfileWarning`.

    Raises:
        ConfigError: Unknown name, unreadable file, or any invalid key or value (one line naming
            the file, the key, the value and the allowed values).
    """
    path = find_profile("backends", name_or_path)
    data = read_toml(path)

    def resolve(noise: str) -> NoiseProfile:
        return load_noise_profile(noise, relative_to=path.parent)

    profile, warnings_ = parse_backend_profile(
        data,
        source=str(path),
        stem=path.stem,
        resolve_noise=resolve,
        device_names=fake_device_names(),
    )
    _emit(warnings_, str(path))
    logger.debug("loaded backend profile %s from %s", profile.name, path)
    return profile


def list_backend_profiles() -> list[BackendProfile]:
    """Every shipped backend profile, sorted by name."""
    return [load_backend_profile(name) for name in profile_names("backends")]


def list_noise_profiles() -> list[NoiseProfile]:
    """Every shipped noise-model profile, sorted by name."""
    return [load_noise_profile(name) for name in profile_names("noise_models")]


__all__ = [
    "PROFILE_FOLDERS",
    "ProfileWarning",
    "fake_device_names",
    "find_profile",
    "is_profile_path",
    "list_backend_profiles",
    "list_noise_profiles",
    "load_backend_profile",
    "load_noise_profile",
    "profile_dirs",
    "profile_names",
]
