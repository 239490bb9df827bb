"""How far from chance each seed's *untrained* Quantum-Train model starts, next to how it ends.

For each seed, builds the default model exactly as ``qfed-qiskit train --seed S`` does (paper
settings: 13 qubits, L = 16, reference mapping-MLP initialisation) and evaluates it, untrained,
on the first ``--images`` test images: cross-entropy loss (chance: ln 10 = 2.30), standard
deviation of the logits and of the generated CNN weights. With ``--runs PATTERN`` (for example
``runs/qt-e5-s{seed}``) it adds the final test accuracy from each run's ``summary.json``, and
the Spearman rank correlation between initial loss and final accuracy.

Usage: python benchmarks/initial_loss.py [--seeds 0-29] [--images 2000] [--runs PATTERN]
       [--data-dir DIR]
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.data import load_fashion_mnist
from qfed_qiskit.data.fashion_mnist import to_tensor_dataset
from qfed_qiskit.models import QuantumTrainModel
from qfed_qiskit.training import build_model, seed_all


def parse_seeds(text: str) -> list[int]:
    """``"0-4,9"`` → ``[0, 1, 2, 3, 4, 9]``."""
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    return seeds


def ranks(values: list[float]) -> list[float]:
    """Ranks 0 … n-1 (ties get their mean rank)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation of two equally long lists."""
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / (va * vb) ** 0.5


def main() -> None:
    """Print one row per seed, then a JSON object with all rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-29")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--runs", default=None, help="run folder pattern with {seed}")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    data = load_fashion_mnist(args.data_dir)
    images, labels = to_tensor_dataset(
        data.test_images[: args.images], data.test_labels[: args.images]
    ).tensors
    rows = []
    for seed in parse_seeds(args.seeds):
        config = TrainConfig(seed=seed)
        seed_all(seed)  # as the trainer does, so the initial weights are those of --seed S
        model = build_model(config)
        assert isinstance(model, QuantumTrainModel)
        with torch.no_grad():
            logits = model(images)
            row: dict[str, float | int | None] = {
                "seed": seed,
                "initial_loss": round(float(torch.nn.functional.cross_entropy(logits, labels)), 3),
                "logit_std": round(float(logits.std()), 3),
                "weight_std": round(float(model.generate_flat().std()), 4),
            }
        if args.runs:
            summary = Path(args.runs.format(seed=seed)) / "summary.json"
            row["final_accuracy"] = (
                json.loads(summary.read_text())["test_accuracy"] if summary.exists() else None
            )
        rows.append(row)
        final = row.get("final_accuracy")
        print(
            f"seed {seed:3d}  initial loss {row['initial_loss']:8.2f}  logit std "
            f"{row['logit_std']:8.2f}  weight std {row['weight_std']:.4f}"
            + (f"  final acc {final:.2%}" if final is not None else "")
        )
    paired = [
        (float(r["initial_loss"] or 0), float(r["final_accuracy"]))
        for r in rows
        if r.get("final_accuracy") is not None
    ]
    result: dict[str, object] = {"images": args.images, "rows": rows}
    if len(paired) > 2:
        rho = spearman([loss for loss, _ in paired], [acc for _, acc in paired])
        result["spearman_initial_loss_vs_final_accuracy"] = round(rho, 3)
        print(f"Spearman rank correlation, initial loss vs final accuracy: {rho:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
