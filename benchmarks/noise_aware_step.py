"""Cost of noise-aware and shot-aware training steps next to the exact step, in one process.

Times one QT training step (forward + backward + Adam, batch 128) of the paper's 13-qubit, L = 16
model on: the exact engine; Pauli trajectories of depolarizing-1e-3 noise with M = 1, 2, 4, 8
error trajectories per step (the `trajectories` profile uses M = 4); and shot-aware 4096-shot
forward passes. Interleaved repeats, medians. Goal: the noise-aware step <= 5x the exact step.

Usage: python benchmarks/noise_aware_step.py [--blocks 16] [--chunk-size 1] [--repeats 15]
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_time import time_ms, training_step

from qfed_qiskit.engines.density_matrix import DepolarizingNoise
from qfed_qiskit.engines.statevector import StatevectorEngine
from qfed_qiskit.engines.trajectories import PauliTrajectoryEngine, ShotNoiseEngine
from qfed_qiskit.models import QuantumTrainModel

NOISE = DepolarizingNoise(p1=1e-3, p2=1e-2, readout=1e-2)  # noise_models/depolarizing-1e-3.toml


def main() -> None:
    """Run the benchmark and print the table and a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    def model(factory: Callable[..., object]) -> QuantumTrainModel:
        torch.manual_seed(0)
        return QuantumTrainModel(
            blocks=args.blocks,
            chunk_size=args.chunk_size,
            engine_factory=factory,  # type: ignore[arg-type]
        )

    variants: dict[str, QuantumTrainModel] = {
        "exact": model(lambda c: StatevectorEngine(circuit=c)),
    }
    for m in (1, 2, 4, 8):
        variants[f"trajectories M={m}"] = model(
            lambda c, m=m: PauliTrajectoryEngine(circuit=c, noise=NOISE, trajectories=m)
        )
    variants["shot-aware 4096"] = model(
        lambda c: ShotNoiseEngine(engine=StatevectorEngine(circuit=c), shots=4096)
    )
    steps = {name: training_step(m, args.batch) for name, m in variants.items()}
    for fn in steps.values():
        for _ in range(args.warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.repeats):
        for name, fn in steps.items():
            samples[name].append(time_ms(fn))
    med = {k: statistics.median(v) for k, v in samples.items()}
    exact = med["exact"]
    engine = variants["trajectories M=4"].engine
    assert isinstance(engine, PauliTrajectoryEngine)
    print(
        f"qubits {engine.num_qubits}, blocks {args.blocks}, batch {args.batch}, depolarizing "
        f"p1 {NOISE.p1:g} p2 {NOISE.p2:g}: error-free weight P0 = {engine.p0:.3f}; "
        f"{args.repeats} interleaved repeats (medians)"
    )
    for name, value in med.items():
        print(f"{name:20s} {value:8.1f} ms   {value / exact:5.2f}x the exact step")
    print(
        json.dumps(
            {
                "exact_step_ms": round(exact, 2),
                **{f"{k} ratio": round(v / exact, 3) for k, v in med.items() if k != "exact"},
                "p_error_free": round(engine.p0, 4),
                "qubits": engine.num_qubits,
                "blocks": args.blocks,
                "batch": args.batch,
            }
        )
    )


if __name__ == "__main__":
    main()
