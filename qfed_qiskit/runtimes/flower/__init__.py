"""Flower runtime: a Message-API ServerApp and ClientApp around the federated core.

``flwr run . local-simulation`` (see ``docs/flower.md``) loads ``server_app:app`` and
``client_app:app``; ``qfed-qiskit train --runtime flower`` calls :func:`run_flower_simulation`.
The submodules that need ``flwr`` are imported only when one of their names is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qfed_qiskit.runtimes.flower.client_app import build_client_app
    from qfed_qiskit.runtimes.flower.connections import ensure_connections
    from qfed_qiskit.runtimes.flower.server_app import build_server_app, run_server
    from qfed_qiskit.runtimes.flower.simulation import run_flower_simulation
    from qfed_qiskit.runtimes.flower.task import (
        AppSettings,
        run_config_from_settings,
        settings_from_run_config,
    )

_LAZY = {
    "AppSettings": "task",
    "build_client_app": "client_app",
    "build_server_app": "server_app",
    "ensure_connections": "connections",
    "run_config_from_settings": "task",
    "run_flower_simulation": "simulation",
    "run_server": "server_app",
    "settings_from_run_config": "task",
}

__all__ = [
    "AppSettings",
    "build_client_app",
    "build_server_app",
    "ensure_connections",
    "run_config_from_settings",
    "run_flower_simulation",
    "run_server",
    "settings_from_run_config",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
