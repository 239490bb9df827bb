"""Experiment: start every seed near chance by rescaling the mapping MLP's last layer.

Trains centralized QT exactly as ``qfed-qiskit train --model qt --epochs E --seed S`` does, except
that after initialisation the last linear layer of the mapping MLP is scaled so that the generated
CNN weights have standard deviation ``--weight-std`` (the reference initialisation gives 0.03 to
0.2, and with it initial losses up to ~240; see ``benchmarks/initial_loss.py``). This is an
experiment, not a package option. Runs go to ``runs/rescaled-init-W-sS``.

Usage: python benchmarks/rescaled_init.py [--weight-std 0.03] [--seeds 15,19,23,0,18] [--epochs 5]
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from summarize_runs import accuracy_curve  # this folder is on sys.path

import qfed_qiskit.training.centralized as centralized
from qfed_qiskit.config import TrainConfig
from qfed_qiskit.models import QuantumTrainModel
from qfed_qiskit.runner import run_training


def main() -> None:
    """Train each seed with the rescaled initialisation and print its per-epoch accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weight-std", type=float, default=0.03)
    parser.add_argument("--seeds", default="15,19,23,0,18")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    build = centralized.build_model

    def build_rescaled(config: TrainConfig, **kwargs: Any) -> torch.nn.Module:
        model = build(config, **kwargs)
        assert isinstance(model, QuantumTrainModel)
        last = model.mapping.net[-1]
        assert isinstance(last, torch.nn.Linear)
        with torch.no_grad():  # outputs are mean-centred, so only the weight scale matters
            last.weight.mul_(args.weight_std / model.generate_flat().std())
        return model

    centralized.build_model = build_rescaled  # type: ignore[assignment]
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        out = Path(f"runs/rescaled-init-{args.weight_std}-s{seed}")
        run_training(TrainConfig(epochs=args.epochs, seed=seed, out=str(out)))
        curve = accuracy_curve(out)
        rows.append({"seed": seed, "curve": curve, "test_accuracy": curve[-1]})
        print(f"seed {seed}: " + ", ".join(f"{a:.1%}" for a in curve), flush=True)
    print(json.dumps({"weight_std": args.weight_std, "epochs": args.epochs, "runs": rows}))


if __name__ == "__main__":
    main()
