"""``qfed-qiskit noise-sweep``: train and evaluate across noise levels, shots and devices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from qfed_qiskit.cli.errors import handle_errors
from qfed_qiskit.cli.progress import RichProgress


def noise_sweep(
    config: Annotated[Path, typer.Option("--config", help="TOML training config (qt model).")],
    out: Annotated[Path, typer.Option("--out", help="Sweep folder (resumed if it exists).")],
    levels: Annotated[
        str, typer.Option(help="Depolarizing levels l (p1 = l, p2 = readout = 10 l).")
    ] = "0,1e-4,1e-3,3e-3,1e-2",
    shots: Annotated[
        str, typer.Option(help="Shots per evaluation; 'exact' for exact probabilities.")
    ] = "1e3,1e4,1e5,1e6,exact",
    devices: Annotated[str, typer.Option(help="Fake-device profiles, e.g. fake-torino.")] = "",
    modes: Annotated[str, typer.Option(help="ideal-train, noise-aware, shot-aware.")] = (
        "ideal-train,noise-aware"
    ),
    repeats: Annotated[int, typer.Option(help="Shot draws per cell.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the shot draws.")] = 0,
    data_dir: Annotated[str | None, typer.Option(help="FashionMNIST folder.")] = None,
) -> None:
    """Train in the same loop and evaluate every cell; writes sweep.csv, sweep.md, sweep.png.

    A finished cell is never redone: run the same command again to continue.
    """
    console = Console()
    with handle_errors():
        from qfed_qiskit.study.sweep import Sweep, SweepPlan

        plan = SweepPlan.from_options(
            config,
            levels=levels,
            shots=shots,
            modes=modes,
            devices=devices,
            repeats=repeats,
            seed=seed,
        )
        with RichProgress(console=console) as progress:
            rows = Sweep(plan, out, callback=progress, data_dir=data_dir).run()
    console.print(f"{len(rows)} cells; results: {out / 'sweep.md'}, {out / 'sweep.png'}")
