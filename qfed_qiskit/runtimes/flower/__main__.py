"""``python -m qfed_qiskit.runtimes.flower``: add the app's SuperLink connections to config.toml."""

from __future__ import annotations

import argparse

from qfed_qiskit.runtimes.flower.connections import (
    DEFAULT_DEPLOYMENT_ADDRESS,
    ensure_connections,
    flwr_home,
)


def main(argv: list[str] | None = None) -> int:
    """Write ``local-simulation`` and ``local-deployment`` into ``$FLWR_HOME/config.toml``."""
    parser = argparse.ArgumentParser(
        prog="python -m qfed_qiskit.runtimes.flower",
        description="Add the 'local-simulation' and 'local-deployment' SuperLink connections "
        "used by `flwr run . <connection>` to Flower's config.toml (existing ones are kept).",
    )
    parser.add_argument("--flwr-home", default=None, help="Flower home [$FLWR_HOME or ~/.flwr]")
    parser.add_argument(
        "--deployment-address",
        default=DEFAULT_DEPLOYMENT_ADDRESS,
        help=f"Control API of your flower-superlink [{DEFAULT_DEPLOYMENT_ADDRESS}]",
    )
    args = parser.parse_args(argv)
    home = args.flwr_home or flwr_home()
    added = ensure_connections(home, deployment_address=args.deployment_address)
    print(f"{home}/config.toml: " + (f"added {', '.join(added)}" if added else "already set up"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
