"""Seconds and bytes per FedAvg round, Quantum-Train vs the classical CNN, at 4 clients.

Both models are trained with the embedded engine in this one process, on the same data and
shards. The per-round wall time (client training + aggregation + test evaluation) and the bytes
sent down and up (the real serialized size, ``qfed_qiskit.federated.core.serialized_size``) are
read from each run's ``metrics.jsonl``. Bytes per round should be close to 1,497 / 6,690 of the
classical ones (per-array ``.npy`` headers add a little). Uses the real FashionMNIST when
``qfed_qiskit.data.load_fashion_mnist`` finds it, else synthetic images (``--synthetic`` forces
them).

Usage: python benchmarks/federated_round.py [--clients 4] [--rounds 3] [--max-steps 10]
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.federated.embedded import run_federated
from qfed_qiskit.training import RunDirectory


def synthetic_dataset(n: int, seed: int) -> TensorDataset:
    """Class-template images plus noise, normalised like the real data (mean 0.5, std 0.5)."""
    templates = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = (templates[labels] + 0.3 * torch.randn(n, 1, 28, 28, generator=g)).clamp(0, 1)
    return TensorDataset((images - 0.5) / 0.5, labels)


def load_data(data_dir: str | None, *, synthetic: bool) -> tuple[TensorDataset, TensorDataset, str]:
    """FashionMNIST if it can be found (and ``synthetic`` is False), else synthetic images;
    and which it is."""
    if not synthetic:
        try:
            from qfed_qiskit.data import load_fashion_mnist, to_tensor_dataset

            data = load_fashion_mnist(data_dir)
            train = to_tensor_dataset(data.train_images, data.train_labels)
            test = to_tensor_dataset(data.test_images, data.test_labels)
            return train, test, f"FashionMNIST ({data.source})"
        except Exception as exc:  # no data here: fall back, and say so
            print(f"real data unavailable ({type(exc).__name__}: {exc}); using synthetic images")
    return synthetic_dataset(60000, 1), synthetic_dataset(10000, 2), "synthetic"


def _measure(
    model: str, args: argparse.Namespace, train: TensorDataset, test: TensorDataset, root: Path
) -> dict[str, Any]:
    config = TrainConfig(
        model=model,
        clients=args.clients,
        rounds=args.rounds,
        local_epochs=args.local_epochs,
        batch_size=args.batch_size,
        max_steps_per_epoch=args.max_steps,
        blocks=args.blocks,
        chunk_size=args.chunk_size,
        seed=args.seed,
        out=str(root / model),
    )
    summary = run_federated(config, train=train, test=test, run_dir=RunDirectory(root / model))
    lines = RunDirectory(root / model).read_metrics()
    timed = lines[1:] if len(lines) > 1 else lines  # round 1 includes one-off warm-up
    return {
        "seconds_per_round": statistics.median(r["wall_time_s"] for r in timed),
        "seconds_first_round": lines[0]["wall_time_s"],
        "bytes_per_round": statistics.mean(r["bytes_down"] + r["bytes_up"] for r in lines),
        "bytes_per_model": summary["bytes_per_model"],
        "trainable_params": summary["trainable_params"],
        "steps_per_round": statistics.mean(r["steps"] for r in lines),
        "test_accuracy": summary["test_accuracy"],
    }


def main() -> None:
    """Run the benchmark and print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=10, help="Local steps per epoch bound.")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--synthetic", action="store_true", help="Do not look for real data.")
    args = parser.parse_args()

    train, test, source = load_data(args.data_dir, synthetic=args.synthetic)
    with tempfile.TemporaryDirectory(prefix="qfed-bench-") as tmp:
        results = {m: _measure(m, args, train, test, Path(tmp)) for m in ("qt", "classical")}
    qt, cnn = results["qt"], results["classical"]
    bytes_ratio = qt["bytes_per_round"] / cnn["bytes_per_round"]
    time_ratio = qt["seconds_per_round"] / cnn["seconds_per_round"]
    param_ratio = qt["trainable_params"] / cnn["trainable_params"]
    print(
        f"machine: {platform.processor() or platform.machine()}, torch threads "
        f"{torch.get_num_threads()}, data: {source}, {args.clients} clients, "
        f"{args.local_epochs} local epoch(s) of <= {args.max_steps} steps, batch {args.batch_size}"
    )
    for name, r in results.items():
        print(
            f"{name:9s}: {r['seconds_per_round']:.3f} s/round (first {r['seconds_first_round']:.3f}"
            f" s), {r['bytes_per_round']:,.0f} bytes/round, {r['trainable_params']:,} params"
        )
    print(
        f"ratios QT/classical: bytes {bytes_ratio:.4f} (params {param_ratio:.4f} = "
        f"{qt['trainable_params']}/{cnn['trainable_params']}), time {time_ratio:.2f}"
    )
    print(
        json.dumps(
            {
                "benchmark": "federated_round",
                "data": source,
                "clients": args.clients,
                "rounds": args.rounds,
                "local_epochs": args.local_epochs,
                "max_steps": args.max_steps,
                "batch_size": args.batch_size,
                "blocks": args.blocks,
                "chunk_size": args.chunk_size,
                "torch_threads": torch.get_num_threads(),
                "qt": qt,
                "classical": cnn,
                "bytes_ratio": bytes_ratio,
                "param_ratio": param_ratio,
                "time_ratio": time_ratio,
            },
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
