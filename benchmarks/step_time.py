"""Time one training step (forward + backward + Adam, batch 128) of the CNN and of the QT model.

Both are measured in this one process, interleaved, and reported as medians; the ratio QT/CNN is
the figure of merit (goal: <= 1.5 for the default 13-qubit, L = 16 model on a 2-core CPU). The QNN's
own forward + backward on the exact engine is timed as well.

Usage: python benchmarks/step_time.py [--blocks 16] [--chunk-size 1] [--repeats 40] [--batch 128]
       [--torch-threads N]
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from qfed_qiskit.models import QuantumTrainModel, TargetCNN


def training_step(model: nn.Module, batch: int) -> Callable[[], None]:
    """One paper-settings Adam step (forward, backward, update) on a fixed random batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5, eps=1e-6)
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def _qnn_fn(model: QuantumTrainModel) -> Callable[[], None]:
    weights = torch.randn(2**model.sizing.num_qubits)
    theta = model.qnn_weights.detach().clone().requires_grad_(True)

    def step() -> None:
        (model.engine(theta) * weights).sum().backward()

    return step


def time_ms(fn: Callable[[], None]) -> float:
    """Milliseconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    """Run the benchmark and print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: torch's choice)",
    )
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    torch.manual_seed(0)
    cnn = TargetCNN()
    qt = QuantumTrainModel(blocks=args.blocks, chunk_size=args.chunk_size)
    fns = {
        "cnn": training_step(cnn, args.batch),
        "qt": training_step(qt, args.batch),
        "qnn": _qnn_fn(qt),
    }
    for fn in fns.values():  # warm-up: numba compilation/caching, allocator, oneDNN kernels
        for _ in range(args.warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.repeats):  # interleaved, so machine noise hits all alike
        for name, fn in fns.items():
            samples[name].append(time_ms(fn))
    med = {k: statistics.median(v) for k, v in samples.items()}
    ratio = med["qt"] / med["cnn"]
    print(
        f"machine: {platform.processor() or platform.machine()}, torch threads "
        f"{torch.get_num_threads()}, qubits {qt.sizing.num_qubits}, blocks {args.blocks}, "
        f"batch {args.batch}, {args.repeats} interleaved repeats (medians)"
    )
    print(f"classical CNN step      {med['cnn']:8.2f} ms")
    print(f"QT step (exact engine)  {med['qt']:8.2f} ms   ratio QT/CNN = {ratio:.2f} (goal <= 1.5)")
    print(f"QNN forward + backward  {med['qnn']:8.2f} ms")
    print(
        json.dumps(
            {
                "cnn_step_ms": round(med["cnn"], 3),
                "qt_step_ms": round(med["qt"], 3),
                "ratio": round(ratio, 3),
                "qnn_fwd_bwd_ms": round(med["qnn"], 3),
                "qubits": qt.sizing.num_qubits,
                "blocks": args.blocks,
                "batch": args.batch,
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
