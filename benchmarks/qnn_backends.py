"""Time one QT training step per QNN backend, and our one-PUB gradient against the stock one.

Backends (same chunked QT model: chunk size 64, L = 2, 7 qubits, batch 128 random images):
exact statevector engine, density-matrix engine (depolarizing), Aer ideal exact, Aer ideal with
4096 shots (our sampler, and Aer's SamplerV2 "native"), Aer noisy (depolarizing) with 4096 shots,
and a fake IBM device (noise, coupling map, ISA circuits) with 4096 shots. Each step is
forward + backward + Adam; times are medians after one warm-up step (which includes
transpilation) and are printed with their ratio to the exact engine.

The gradient section runs, on the model's circuit at 4096 shots, with Aer's SamplerV2 ("native")
and with our default Aer sampler (exact distribution per parameter set, shots drawn from it): our
BatchedParamShiftSamplerGradient (one PUB), the stock ParamShiftSamplerGradient (one PUB per
shifted parameter set; its first call, which translates the circuit's gates, is timed apart),
and the raw execution of the circuits a training step submits (one
``sampler.run`` of the forward row plus every shifted row as one PUB). Goal: ours within 1.5x raw.

Usage: python benchmarks/qnn_backends.py [--quick] [--paper] [--device fake_torino]
The last line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from step_time import training_step  # the same training step (this folder is on sys.path)

from qfed_qiskit.engines.base import QNNEngine
from qfed_qiskit.engines.gradients import BatchedParamShiftSamplerGradient
from qfed_qiskit.engines.qiskit_sampler import QiskitSamplerEngine
from qfed_qiskit.engines.statevector import StatevectorEngine
from qfed_qiskit.models import QuantumTrainModel
from qfed_qiskit.quantum.devices import aer_sampler, fake_backend, fake_device_sampler
from qfed_qiskit.quantum.layout import device_pass_manager
from qfed_qiskit.quantum.transpile import isa_stats

Factory = Callable[[Any], QNNEngine]
P1, P2, READOUT = 1e-3, 1e-2, 1e-2  # the depolarizing preset used for the noisy backends


def _noise() -> tuple[Any, Any]:
    """(DepolarizingNoise or None, Aer NoiseModel) for the preset."""
    try:
        from qfed_qiskit.engines.density_matrix import DepolarizingNoise
    except ImportError:
        from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error

        model = NoiseModel()
        model.add_all_qubit_quantum_error(depolarizing_error(P1, 1), ["u"])
        model.add_all_qubit_quantum_error(depolarizing_error(P2, 2), ["cu"])
        model.add_all_qubit_readout_error(ReadoutError([[1 - READOUT, READOUT]] * 2))
        return None, model
    noise = DepolarizingNoise(p1=P1, p2=P2, readout=READOUT)
    return noise, noise.to_aer_noise_model()


def _factories(shots: int, device: str, seed: int) -> dict[str, Factory]:
    noise, noise_model = _noise()
    out: dict[str, Factory] = {"exact": lambda c: StatevectorEngine(circuit=c)}
    if noise is not None:
        from qfed_qiskit.engines.density_matrix import DensityMatrixEngine

        out["density-matrix"] = lambda c: DensityMatrixEngine(circuit=c, noise=noise)
    out["aer-ideal-exact"] = lambda c: QiskitSamplerEngine(
        circuit=c, sampler=aer_sampler(shots=None), shots=None
    )
    out[f"aer-ideal-{shots}"] = lambda c: QiskitSamplerEngine(
        circuit=c, sampler=aer_sampler(shots=shots, seed=seed), shots=shots
    )
    out[f"aer-ideal-{shots}-native"] = lambda c: QiskitSamplerEngine(
        circuit=c, sampler=aer_sampler(shots=shots, seed=seed, native=True), shots=shots
    )
    out[f"aer-noisy-{shots}"] = lambda c: QiskitSamplerEngine(
        circuit=c, sampler=aer_sampler(noise_model=noise_model, shots=shots, seed=seed), shots=shots
    )
    if device:
        backend = fake_backend(device)
        sampler = fake_device_sampler(backend, shots=shots, seed=seed)
        # as the fake-device profiles do: the circuit on a chain of n device qubits
        out[f"{device}-{shots}"] = lambda c: QiskitSamplerEngine(
            circuit=c,
            sampler=sampler,
            shots=shots,
            pass_manager=device_pass_manager(
                backend, layout="line", num_qubits=c.num_qubits, seed=seed
            ),
        )
    return out


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _time_steps(
    factories: dict[str, Factory], *, chunk: int, blocks: int, batch: int, repeats: int
) -> tuple[dict[str, float], dict[str, Any]]:
    steps: dict[str, float] = {}
    info: dict[str, Any] = {}
    for name, factory in factories.items():
        torch.manual_seed(0)
        start = time.perf_counter()
        model = QuantumTrainModel(blocks=blocks, chunk_size=chunk, engine_factory=factory)
        step = training_step(model, batch)
        step()  # warm-up: transpilation, noise models, numba caches
        warm = time.perf_counter() - start
        n = repeats if name != "exact" else max(repeats, 10)
        steps[name] = _median_s(step, n)
        engine: Any = model.engine
        entry: dict[str, Any] = {"first_step_s": round(warm, 3)}
        if isinstance(engine, QiskitSamplerEngine):
            entry["evaluations_per_step"] = engine.evaluations_per_step()
            entry["jobs_per_step"] = len(engine.job_ids) // (n + 1)
            transpiler = engine.sampler.transpiler
            if transpiler is not None:
                isa = transpiler(engine.qnn._circuit)
                stats = isa_stats(isa)
                entry["isa_depth"] = stats.depth
                entry["isa_two_qubit_gates"] = stats.two_qubit_gates
        info[name] = entry
        print(f"  {name:<22} {steps[name] * 1e3:10.1f} ms/step   (first step {warm:6.2f} s)")
    return steps, info


def _time_gradients(
    circuit: Any, *, shots: int, seed: int, stock_repeats: int
) -> dict[str, dict[str, float]]:
    """Ours, stock and raw times (s) with Aer's SamplerV2 ("native") and with our Aer sampler."""
    from qiskit_machine_learning.gradients import ParamShiftSamplerGradient

    measured = circuit.copy()
    measured.measure_all()
    theta = np.random.default_rng(seed).uniform(-np.pi, np.pi, circuit.num_parameters)
    out: dict[str, dict[str, float]] = {}
    for kind, native in (("native", True), ("ours", False)):
        sampler = aer_sampler(shots=shots, seed=seed, native=native)
        ours = BatchedParamShiftSamplerGradient(sampler)
        ours.run([measured], [theta]).result()  # warm-up
        plan = ours.plan(measured)
        rows = ours._shift_rows(plan, measured, theta, list(range(len(plan.slot_expr))))
        step_rows = np.concatenate([theta[None, :], rows])
        stock = ParamShiftSamplerGradient(sampler=sampler)
        # The stock gradient's first call translates the circuit's gates (Qiskit's basis
        # translator, erratic on u/cu: seconds to minutes) and caches it: timed apart.
        start = time.perf_counter()
        stock.run([measured], [theta]).result()
        stock_first = time.perf_counter() - start
        out[kind] = {
            "ours": _median_s(lambda o=ours: o.run([measured], [theta]).result(), 3),
            "raw_step_pub": _median_s(
                lambda s=sampler, r=step_rows: s.run([(measured, r)]).result(), 3
            ),
            "raw_gradient_pub": _median_s(
                lambda s=sampler, r=rows: s.run([(measured, r)]).result(), 3
            ),
            "stock": _median_s(lambda g=stock: g.run([measured], [theta]).result(), stock_repeats),
            "stock_first_call": stock_first,
            "rows": float(rows.shape[0]),
        }
    return out


def main() -> None:
    """Run the benchmark and print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 qubits, L=1, batch 32, 1 repeat")
    parser.add_argument("--paper", action="store_true", help="also the 13-qubit, L=16 config")
    parser.add_argument("--device", default="fake_torino", help="fake device ('' to skip)")
    parser.add_argument("--shots", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    chunk, blocks, batch, repeats = (256, 1, 32, 1) if args.quick else (64, 2, 128, args.repeats)
    torch.manual_seed(0)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch threads "
        f"{torch.get_num_threads()}; QT chunk {chunk}, L={blocks}, batch {batch}, "
        f"{args.shots} shots; medians of {repeats} steps after a warm-up step"
    )
    factories = _factories(args.shots, args.device, args.seed)
    steps, info = _time_steps(factories, chunk=chunk, blocks=blocks, batch=batch, repeats=repeats)
    base = steps["exact"]
    print("ratio to the exact engine:")
    for name, seconds in steps.items():
        print(f"  {name:<22} {seconds / base:10.1f}x")

    circuit = QuantumTrainModel(blocks=blocks, chunk_size=chunk).circuit
    print(f"gradient of the {circuit.num_qubits}-qubit, L={blocks} circuit, {args.shots} shots:")
    grads = _time_gradients(circuit, shots=args.shots, seed=args.seed, stock_repeats=3)
    for kind, label in (("native", "Aer SamplerV2"), ("ours", "our Aer sampler")):
        g = grads[kind]
        print(
            f"  [{label}] ours (one PUB, {int(g['rows'])} rows) {g['ours'] * 1e3:9.1f} ms; "
            f"stock ParamShiftSamplerGradient {g['stock'] * 1e3:9.1f} ms "
            f"({g['stock'] / g['ours']:.1f}x ours; its first call "
            f"{g['stock_first_call']:.1f} s); raw run of the step's PUB "
            f"{g['raw_step_pub'] * 1e3:9.1f} ms (ours / raw = {g['ours'] / g['raw_step_pub']:.2f},"
            " goal <= 1.5)"
        )

    paper: dict[str, float] = {}
    if args.paper:
        print("paper config (13 qubits, L=16, chunk 1):")
        paper_factories = {k: v for k, v in factories.items() if k in ("exact", "aer-ideal-exact")}
        paper, _ = _time_steps(paper_factories, chunk=1, blocks=16, batch=batch, repeats=1)

    result = {
        "qubits": circuit.num_qubits,
        "blocks": blocks,
        "chunk_size": chunk,
        "batch": batch,
        "shots": args.shots,
        "torch_threads": torch.get_num_threads(),
        "step_ms": {k: round(v * 1e3, 2) for k, v in steps.items()},
        "ratio_to_exact": {k: round(v / base, 2) for k, v in steps.items()},
        "backend_info": info,
        "gradient_ms": {
            kind: {k: round(v * 1e3, 2) for k, v in g.items() if k != "rows"}
            for kind, g in grads.items()
        },
        "gradient_rows": int(grads["ours"]["rows"]),
        "stock_over_ours": {k: round(g["stock"] / g["ours"], 2) for k, g in grads.items()},
        "ours_over_raw": {k: round(g["ours"] / g["raw_step_pub"], 3) for k, g in grads.items()},
        "paper_step_ms": {k: round(v * 1e3, 2) for k, v in paper.items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
