"""``qfed-qiskit report``: PNGs and report.md of a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qfed_qiskit.cli.errors import handle_errors


def report(
    run: Annotated[Path, typer.Option("--run", help="Run folder (finished or still going).")],
) -> None:
    """Plot accuracy, loss, bytes, rejected clients and learning rates; write report.md."""
    with handle_errors():
        from qfed_qiskit.study.report import write_report

        path = write_report(run)
    typer.echo(f"report: {path}")
