"""SuperLink connections for ``flwr run . local-simulation`` / ``local-deployment`` in config.toml.

Flower 1.42 reads SuperLink connections from ``$FLWR_HOME/config.toml`` (default ``~/.flwr``),
not from ``pyproject.toml``: a ``[tool.flwr.federations]`` table there is migrated once by
``flwr run`` and then commented out in place, which would rewrite this repository's
``pyproject.toml``. So the app ships no federations table; :func:`ensure_connections` adds the two
named connections to the Flower config instead (``python -m qfed_qiskit.runtimes.flower``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOCAL_SIMULATION = "local-simulation"
LOCAL_DEPLOYMENT = "local-deployment"
DEFAULT_DEPLOYMENT_ADDRESS = "127.0.0.1:8000"
"""Where ``flower-superlink --insecure`` serves its Control API by default (flwr 1.42)."""

_FALLBACK_DEFAULT = '[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = ":local:"\n'


def _flower_default_config() -> str:
    """The config.toml Flower itself writes on first use (a minimal one without flwr)."""
    try:
        from flwr.cli.constant import DEFAULT_FLOWER_CONFIG_TOML
    except ImportError:  # pragma: no cover - flwr is needed to use the connections anyway
        return _FALLBACK_DEFAULT
    return str(DEFAULT_FLOWER_CONFIG_TOML)


def flwr_home() -> Path:
    """Flower's home folder: ``$FLWR_HOME``, else ``~/.flwr``."""
    return Path(os.environ.get("FLWR_HOME") or Path.home() / ".flwr")


def connection_tables(*, deployment_address: str = DEFAULT_DEPLOYMENT_ADDRESS) -> dict[str, str]:
    """The TOML text of each connection this app documents, by name.

    ``local-simulation`` uses Flower's managed local SuperLink (``address = ":local:"``; 2
    simulated SuperNodes unless ``flwr run`` gets ``--federation-config 'num-supernodes=N'``).
    ``local-deployment`` points at a ``flower-superlink --insecure`` you started.
    """
    return {
        LOCAL_SIMULATION: f'[superlink.{LOCAL_SIMULATION}]\naddress = ":local:"\n',
        LOCAL_DEPLOYMENT: (
            f'[superlink.{LOCAL_DEPLOYMENT}]\naddress = "{deployment_address}"\ninsecure = true\n'
        ),
    }


def ensure_connections(
    home: str | Path | None = None, *, deployment_address: str = DEFAULT_DEPLOYMENT_ADDRESS
) -> list[str]:
    """Append the missing connections to ``<home>/config.toml`` (existing ones are kept as is).

    Args:
        home: Flower's home folder (default :func:`flwr_home`).
        deployment_address: Control API address for ``local-deployment``.

    Returns:
        The names of the connections that were added.
    """
    path = Path(home or flwr_home()) / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.exists() else _flower_default_config()
    existing = tomllib.loads(text).get("superlink", {})
    tables = connection_tables(deployment_address=deployment_address)
    added = [name for name in tables if name not in existing]
    for name in added:
        text = text.rstrip("\n") + "\n\n" + tables[name]
    if added or not path.exists():
        path.write_text(text, encoding="utf-8")
    return added
