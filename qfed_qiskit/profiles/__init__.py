"""Backend and noise-model profiles (TOML), resolved by name or path."""

from __future__ import annotations

from typing import Any

from qfed_qiskit.exceptions import ConfigError
from qfed_qiskit.models.quantum_train import EngineFactory

BUILTIN_BACKENDS = ("statevector",)


def engine_factory_for(name: str, **_: Any) -> EngineFactory | None:
    """The engine factory of backend profile ``name`` (None: the default exact engine)."""
    if name == "statevector":
        return None
    raise ConfigError(
        f"backend {name!r}: unknown backend profile (available: {', '.join(BUILTIN_BACKENDS)})"
    )
