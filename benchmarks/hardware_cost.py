"""What the noise study means on hardware: shots and estimated QPU time per step and evaluation.

For the chunked model (7 qubits) and the paper's model (13 qubits), both L = 16, on a device
(default fake_torino, IBM Heron r1: its coupling map, gate durations and repetition delay): the
circuits and shots one training step submits with the one-PUB parameter-shift gradient
(`qfed_qiskit.profiles.circuits_per_step`), and the circuit's duration once transpiled to the
device (`QuantumCircuit.estimate_duration` on the device target). Estimated QPU time per shot =
the device's default repetition delay + the circuit's duration; this leaves out Qiskit Runtime's
per-job overhead (compilation, queueing), so it is a floor.

Usage: python benchmarks/hardware_cost.py [--device fake_torino] [--shots 4096]
       [--eval-shots 1e4 1e5 1e6] [--paper-rounds 20 --clients 4]
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.models.quantum_train import target_circuit
from qfed_qiskit.profiles import circuits_per_step, load_backend_profile, training_steps
from qfed_qiskit.quantum.devices import fake_backend
from qfed_qiskit.quantum.layout import device_pass_manager


def main() -> None:
    """Print the table and a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="fake_torino")
    parser.add_argument("--shots", type=int, default=4096, help="shots per circuit in training")
    parser.add_argument("--eval-shots", type=float, nargs="*", default=[1e4, 1e5, 1e6])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    backend = fake_backend(args.device)
    rep_delay = float(getattr(backend, "default_rep_delay", 250e-6))
    profile = load_backend_profile("aer-noisy")
    rows = {}
    for name, chunk in (("chunked (7 qubits)", 64), ("paper (13 qubits)", 1)):
        circuit = target_circuit(chunk_size=chunk, blocks=16)
        measured = circuit.copy()
        measured.measure_all()
        manager = device_pass_manager(
            backend, optimization_level=1, seed=0, layout="line", num_qubits=circuit.num_qubits
        )
        isa = manager.run(measured)
        duration = float(isa.estimate_duration(backend.target, unit="s"))
        per_shot = rep_delay + duration
        per_step = circuits_per_step(profile, circuit)
        config = TrainConfig(
            chunk_size=chunk, clients=args.clients, rounds=args.rounds, local_epochs=1
        )
        steps = training_steps(config)
        row = {
            "qubits": circuit.num_qubits,
            "circuit_duration_us": round(duration * 1e6, 2),
            "qpu_s_per_shot": per_shot,
            "circuits_per_step": per_step,
            "shots_per_step": per_step * args.shots,
            "qpu_s_per_step": round(per_step * args.shots * per_shot, 1),
            "federated_run_steps": steps,
            "federated_run_qpu_days": round(steps * per_step * args.shots * per_shot / 86400, 1),
            "qpu_s_per_evaluation": {
                f"{int(s):d}": round(s * per_shot, 2) for s in args.eval_shots
            },
        }
        rows[name] = row
        print(
            f"{name}: ISA circuit {duration * 1e6:.1f} us, {per_shot * 1e6:.0f} us per shot; "
            f"{per_step:,} circuits x {args.shots} shots per step = "
            f"{row['qpu_s_per_step']:,.0f} s of QPU per step; a {args.clients}-client, "
            f"{args.rounds}-round run ({steps:,} steps) = {row['federated_run_qpu_days']:,} QPU "
            f"days; one evaluation: "
            + ", ".join(f"{k} shots {v} s" for k, v in row["qpu_s_per_evaluation"].items())
        )
    print(json.dumps({"device": args.device, "rep_delay_s": rep_delay, **rows}))


if __name__ == "__main__":
    main()
