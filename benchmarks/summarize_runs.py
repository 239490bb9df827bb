"""Print a table of finished runs (their summary.json and per-epoch/round test accuracy).

Usage: python benchmarks/summarize_runs.py RUN_DIR [RUN_DIR ...]
The last line printed is one JSON object: a list of the runs' key figures.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def accuracy_curve(run: Path) -> list[float]:
    """Test accuracy after each epoch/round of the run in ``run`` (from its metrics.jsonl)."""
    return [
        round(json.loads(line)["test_accuracy"], 4)
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]


def main() -> None:
    """Read each run directory and print its figures."""
    rows = []
    for arg in sys.argv[1:]:
        run = Path(arg)
        if not (run / "summary.json").is_file():
            sys.exit(f"error: {run / 'summary.json'}: not found (is {run} a finished run?)")
        summary = json.loads((run / "summary.json").read_text())
        curve = accuracy_curve(run)
        rows.append(
            {
                "run": str(run),
                "seed": summary["config"]["seed"],
                "test_accuracy": round(summary["test_accuracy"], 4),
                "curve": curve,
                "wall_time_s": round(summary["wall_time_s"], 1),
            }
        )
        print(
            f"{run}: seed {rows[-1]['seed']}  final {summary['test_accuracy']:.2%}  "
            f"curve {', '.join(f'{a:.1%}' for a in curve)}"
        )
    finals = [r["test_accuracy"] for r in rows]
    if len(finals) > 1:
        print(
            f"mean {statistics.mean(finals):.2%}  median {statistics.median(finals):.2%}  "
            f"min {min(finals):.2%}  max {max(finals):.2%}  over {len(finals)} runs"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
