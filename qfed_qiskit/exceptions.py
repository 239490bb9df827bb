"""Exceptions raised by qfed-qiskit.

Every error the package raises on purpose derives from :class:`QFedError`, so callers (and the
CLI) can catch them in one place. Errors about bad user input also derive from :class:`ValueError`.
"""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class QFedError(Exception):
    """Root of all qfed-qiskit errors."""


class QFedInputError(QFedError, ValueError):
    """An argument, option or config value is not allowed."""


class ConfigError(QFedInputError):
    """A TOML config or profile file is invalid (unknown key, wrong type, out-of-range value)."""


class DataError(QFedError):
    """A data set file is missing, truncated, corrupt or inconsistent."""


class CircuitError(QFedInputError):
    """A circuit cannot be compiled by an engine (unsupported gate, non-affine parameter, ...)."""


class BackendError(QFedError):
    """A quantum backend failed, or is not reachable with the given settings."""


class BackendUnavailableError(BackendError):
    """A backend job kept failing after its retries (the run stops; resume it later)."""


class CredentialsError(BackendError):
    """IBM Quantum credentials are missing or invalid."""


class MissingOptionalDependencyError(QFedError, ImportError):
    """An optional dependency is needed for the requested feature and is not installed."""


def find_cause(exc: BaseException, kind: type[E]) -> E | None:
    """``exc`` or the first exception of type ``kind`` it was raised from (``__cause__``, then
    ``__context__``); libraries such as qiskit-machine-learning wrap the errors they see."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
