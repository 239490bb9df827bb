"""Merge the cells of several noise-sweep folders into one sweep.csv, sweep.md and sweep.png.

The paper model's study is three sweeps (ideal training over all levels, noise-aware training at
1e-3, shot-aware training) that share their test set and evaluation methods; this puts their
finished cells into one table and one figure.

Usage: python benchmarks/combine_sweeps.py SWEEP_DIR [SWEEP_DIR ...] --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qfed_qiskit.study.sweep import write_results


def main() -> None:
    """Read every cells/*.json and write the merged results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    for folder in args.sweeps:
        cells = sorted((folder / "cells").glob("*.json"))
        if not cells:
            raise SystemExit(f"{folder}: no finished cells")
        rows += [json.loads(p.read_text(encoding="utf-8")) for p in cells]
    args.out.mkdir(parents=True, exist_ok=True)
    write_results(args.out, rows)
    print(f"{len(rows)} cells from {len(args.sweeps)} sweeps: {args.out / 'sweep.md'}")


if __name__ == "__main__":
    main()
