"""Per-client accuracy of a finished federated run: what the final global model gives each client.

For client ``c`` with label distribution ``p_c`` (the labels of its training shard, rebuilt from the
run's partition and seed), its accuracy is ``sum_k p_c(k) * acc(k)``, where ``acc(k)`` is the final
CNN's accuracy on the test images of class ``k``: the expected accuracy on test data drawn from the
client's own distribution. Under IID shards every client gets about the test accuracy; under a
Dirichlet partition the spread says how unevenly the one global model serves them.

    python benchmarks/client_accuracy.py runs/short-qt-n5-dirichlet-0.1 [--out FILE]

writes ``client_accuracy.json`` (into the run folder unless ``--out``) and prints one line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import qfed_qiskit as qf
from qfed_qiskit.config import TrainConfig
from qfed_qiskit.data import load_fashion_mnist, to_tensor_dataset
from qfed_qiskit.data.partition import client_partition

NUM_CLASSES = 10


def client_accuracies(run_dir: str | Path, data_dir: str | None = None) -> dict[str, Any]:
    """Per-client expected accuracy of the run's final CNN (see the module docstring)."""
    run = qf.load_run(run_dir)
    if run.summary is None:
        raise SystemExit(f"error: {run_dir}: unfinished run (no summary.json)")
    config = TrainConfig.from_dict(run.summary["config"])
    if not config.federated:
        raise SystemExit(f"error: {run_dir}: not a federated run (clients = {config.clients})")
    # The run checked its data set when it trained; this reads the same files, whatever size.
    data = load_fashion_mnist(data_dir or config.data_dir, expected_sizes=None)
    test = to_tensor_dataset(data.test_images, data.test_labels)
    images, labels = test.tensors
    with torch.no_grad():
        predicted = run.cnn()(images).argmax(1)
    per_class = [float((predicted[labels == k] == k).float().mean()) for k in range(NUM_CLASSES)]
    train_labels = np.asarray(data.train_labels)
    shards = client_partition(config.partition, train_labels, config.clients, seed=config.seed)
    clients = []
    for cid, shard in enumerate(shards):
        counts = np.bincount(train_labels[shard], minlength=NUM_CLASSES)
        share = counts / counts.sum()
        clients.append(
            {
                "client": cid,
                "samples": int(counts.sum()),
                "label_share": [round(float(s), 4) for s in share],
                "accuracy": float(np.dot(share, per_class)),
            }
        )
    accuracies = [c["accuracy"] for c in clients]
    return {
        "run": str(run_dir),
        "partition": config.partition,
        "seed": config.seed,
        "test_accuracy": run.test_accuracy,
        "per_class_accuracy": per_class,
        "clients": clients,
        "client_accuracy_min": min(accuracies),
        "client_accuracy_max": max(accuracies),
        "client_accuracy_std": statistics.pstdev(accuracies),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished federated run folder")
    parser.add_argument("--out", type=Path, help="JSON file [RUN/client_accuracy.json]")
    parser.add_argument("--data-dir", default=None, help="FashionMNIST folder [the run's]")
    args = parser.parse_args(argv)
    result = client_accuracies(args.run, args.data_dir)
    out = args.out or args.run / "client_accuracy.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"{args.run}: {result['partition']}, test accuracy {result['test_accuracy']:.2%}; per "
        f"client {result['client_accuracy_min']:.2%} to {result['client_accuracy_max']:.2%} "
        f"(std {result['client_accuracy_std']:.2%}) -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
