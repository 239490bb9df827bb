"""Seconds per federated round with the clients one after another (1 worker) and side by side.

The same QT run (default: the paper's model, 4 IID clients, 1 local epoch per round, batch 128)
is trained once per worker count in this one process, on the same data and shards, and the
per-round wall time (client training + aggregation + test evaluation) is read from each run's
``metrics.jsonl``; round 1 (worker start-up, numba cache loading) is left out of the median. The
runs must end with bit-identical parameters, which is checked and printed. Uses the real
FashionMNIST when ``qfed_qiskit.data.load_fashion_mnist`` finds it, else synthetic images.

Usage: python benchmarks/parallel_clients.py [--workers 1,2] [--clients 4] [--rounds 3]
       [--max-steps N] [--blocks 16] [--chunk-size 1]
The last line printed is one JSON object (``ratio``: seconds per round of the last worker count
over the first's; goal for 2 workers on a 2-core CPU: <= 0.6).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.federated.embedded import run_federated
from qfed_qiskit.training import RunDirectory

sys.path.insert(0, str(Path(__file__).resolve().parent))
from federated_round import load_data


def measure(
    workers: int,
    args: argparse.Namespace,
    train: TensorDataset,
    test: TensorDataset,
    root: Path,
) -> dict[str, Any]:
    """Train the benchmark run with ``workers`` processes; its timings and final parameters."""
    out = root / f"workers-{workers}"
    config = TrainConfig(
        model="qt",
        clients=args.clients,
        rounds=args.rounds,
        local_epochs=args.local_epochs,
        batch_size=args.batch_size,
        max_steps_per_epoch=args.max_steps,
        blocks=args.blocks,
        chunk_size=args.chunk_size,
        lr=args.lr,
        seed=args.seed,
        workers=workers,
        out=str(out),
    )
    summary = run_federated(config, train=train, test=test, run_dir=RunDirectory(out))
    lines = RunDirectory(out).read_metrics()
    timed = lines[1:] if len(lines) > 1 else lines
    params: dict[str, torch.Tensor] = torch.load(out / "model.pt", weights_only=True)
    return {
        "workers": summary["workers"],
        "seconds_per_round": statistics.median(r["wall_time_s"] for r in timed),
        "seconds_first_round": lines[0]["wall_time_s"],
        "steps_per_round": statistics.mean(r["steps"] for r in lines),
        "test_accuracy": summary["test_accuracy"],
        "params": params,
    }


def main() -> None:
    """Run the benchmark and print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="Worker counts to compare, in order.")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None, help="Local steps per epoch bound.")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--synthetic", action="store_true", help="Do not look for real data.")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]

    train, test, source = load_data(args.data_dir, synthetic=args.synthetic)
    with tempfile.TemporaryDirectory(prefix="qfed-bench-") as tmp:
        runs = [measure(w, args, train, test, Path(tmp)) for w in counts]
    first = runs[0]
    identical = all(
        all(torch.equal(first["params"][k], r["params"][k]) for k in first["params"])
        for r in runs[1:]
    )
    ratio = runs[-1]["seconds_per_round"] / first["seconds_per_round"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"machine: {platform.processor() or platform.machine()}, {cores} cores, data: {source}, "
        f"{args.clients} clients x {args.local_epochs} local epoch(s)"
        f"{f' of <= {args.max_steps} steps' if args.max_steps else ''}, batch {args.batch_size}, "
        f"blocks {args.blocks}, chunk {args.chunk_size}, {args.rounds} rounds, seed {args.seed}"
    )
    for r in runs:
        print(
            f"workers {r['workers']}: {r['seconds_per_round']:.2f} s/round (median of rounds 2+; "
            f"round 1 {r['seconds_first_round']:.2f} s), {r['steps_per_round']:.0f} steps/round, "
            f"test accuracy {r['test_accuracy']:.4f}"
        )
    print(
        f"ratio workers {runs[-1]['workers']} / {first['workers']} = {ratio:.3f} (goal <= 0.6); "
        f"final parameters bit-identical: {identical}"
    )
    print(
        json.dumps(
            {
                "benchmark": "parallel_clients",
                "data": source,
                "cores": cores,
                "clients": args.clients,
                "rounds": args.rounds,
                "local_epochs": args.local_epochs,
                "max_steps": args.max_steps,
                "batch_size": args.batch_size,
                "blocks": args.blocks,
                "chunk_size": args.chunk_size,
                "seed": args.seed,
                "runs": [{k: v for k, v in r.items() if k != "params"} for r in runs],
                "ratio": ratio,
                "bit_identical": identical,
            },
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
