"""``qfed-qiskit backends``: list the backend (or noise-model) profiles."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from qfed_qiskit.cli.errors import handle_errors


def backends(
    noise: Annotated[
        bool, typer.Option("--noise", help="List the noise-model profiles instead.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
) -> None:
    """List the profiles usable with --backend NAME: name, kind and a one-line description."""
    with handle_errors():
        from qfed_qiskit.profiles import list_backend_profiles, list_noise_profiles

        rows = [p.to_dict() for p in (list_noise_profiles() if noise else list_backend_profiles())]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table(title="Noise models" if noise else "Backend profiles")
    for column in ("name", "kind", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(str(row["name"]), str(row["kind"]), str(row["description"]))
    Console().print(table)
