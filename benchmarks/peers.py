"""Our QNN engine against every peer engine, side by side, on the same Quantum-Train circuit.

Every engine runs the same circuit, ``qt_ansatz(qubits, blocks)`` (13 qubits and L = 16 blocks by
default: 1,248 angles; each block is U3 on every qubit then a ring of CU3), translated gate by gate
from the Qiskit circuit. Timed per engine, as medians over ``--repeats`` repeats after
``--warmup`` untimed ones (an engine cheap enough is repeated until its repeats take
``--min-seconds``, so its median rests on many samples; the QNN and the QT step are timed in
separate loops):

* forward: the angles -> the ``2**n`` basis-state probabilities (with autograd tracking);
* backward: the vector-Jacobian product of the probabilities with one fixed random upstream
  vector ``g`` (what a training step back-propagates into the QNN);
* the whole QT training step (``benchmarks/step_time.py``'s ``training_step``: batch 128,
  forward + backward + Adam) of ``QuantumTrainModel`` with the engine swapped in through
  ``engine_factory``, where the peer can be wrapped as an engine.

Engines (``--only`` names):

* ``ours`` / ``ours-f64``: :class:`~qfed_qiskit.engines.statevector.StatevectorEngine` in float32
  (default) / float64. ``ours`` always runs: it is the denominator of every ratio.
* ``pl-lightning``: PennyLane ``lightning.qubit``, ``diff_method="adjoint"``. Its adjoint refuses
  ``qml.probs``, so the VJP with ``g`` is taken as the adjoint gradient of
  ``expval(diag(g))`` (a ``qml.SparseHamiltonian``): the forward is the ``probs`` QNode, the
  backward that gradient (which runs its own forward sweep).
* ``pl-default``: PennyLane ``default.qubit`` with torch backprop on ``qml.probs``.
* ``qiskit-ml``: qiskit-machine-learning ``SamplerQNN`` + ``TorchConnector`` with the stock
  ``ParamShiftSamplerGradient`` on Aer's ``SamplerV2`` (``--sml-shots`` shots: Aer's SamplerV2
  has no exact mode). Too slow for L = 16: it is timed at ``--sml-blocks`` (default L = 1, 2) and
  extrapolated **linearly in L** to ``--blocks``. That is a lower bound: parameter shift runs
  ``2 P`` circuits (``P`` ∝ L) of depth ∝ L, so the true cost grows between ∝ L and ∝ L². The
  circuit is handed to ``SamplerQNN`` already in the gradient's gate set
  (``TranslateParameterizedGates``) with its global phase dropped, which changes no probability:
  left to itself, the gradient substitutes into a global-phase expression of every angle once per
  circuit, which alone took minutes at 7 qubits, L = 2 (qiskit 2.6, qiskit-machine-learning 0.9).
* ``torchquantum``: TorchQuantum 0.1.8 (the QT paper authors' engine; ``tq.QuantumDevice``,
  ``tqf.u3`` / ``tqf.cu3``, probabilities ``|get_states_1d()|**2``, torch autograd). It pins
  qiskit < 1, so it gets its own virtualenv (``--torchquantum-venv``, created with pip on first
  use) and runs as a subprocess that prints one JSON line. No QT step: our model needs qiskit 2.

Before timing, each peer's probabilities and VJP at random angles are compared with ours in
float64 (``Δp``, ``Δvjp`` = max abs difference; ``ok`` when ``Δp <= 1e-5`` and ``Δvjp <= 1e-4``
relative to ``max |vjp|``). A peer that is not installed is a row that says so, not a crash.

Goals on this CPU (QNN forward + backward): ours >= 30x faster than TorchQuantum and >= 150x
faster than PennyLane's best engine; the script says whether each is met.

Usage:
    python benchmarks/peers.py [--repeats 5] [--warmup 1] [--min-seconds 2] [--torch-threads N]
        [--qubits 13] [--blocks 16]
        [--only ours,ours-f64,pl-lightning,pl-default,qiskit-ml,torchquantum]
        [--skip-torchquantum] [--sml-blocks 1,2] [--sml-shots 1024] [--sml-repeats N]
        [--batch 128] [--seed 0]
        [--torchquantum-venv .venv-peers/torchquantum]

Peers: ``pip install -e '.[peers]'`` (PennyLane); qiskit-machine-learning and Aer are default
dependencies; TorchQuantum installs itself into its own virtualenv. The last line printed is one
JSON object with every number and the ratios peer/ours.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from qiskit.circuit import QuantumCircuit
from step_time import time_ms, training_step  # this folder is on sys.path when run as a script
from torch.autograd.function import once_differentiable

from qfed_qiskit.circuits import qt_ansatz
from qfed_qiskit.engines.base import QNNEngine
from qfed_qiskit.engines.statevector import StatevectorEngine
from qfed_qiskit.models import QuantumTrainModel
from qfed_qiskit.models.cnn import TargetCNN, count_parameters

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("ours", "ours-f64", "pl-lightning", "pl-default", "qiskit-ml", "torchquantum")
"""Engine names accepted by ``--only``, in table order."""
NOT_INSTALLED = "not installed (pip install -e '.[peers]')"
PROBS_TOL = 1e-5
"""Largest max-abs difference of probabilities from ours (float64) that counts as agreement."""
VJP_RTOL = 1e-4
"""Largest max-abs VJP difference, relative to ``max |vjp|``, that counts as agreement."""
TQ_VERSION = "0.1.8"
GOALS = {"torchquantum": 30.0, "pennylane": 150.0}
"""Goals for peer/ours QNN forward + backward on this CPU."""

Gate = tuple[str, tuple[int, ...], tuple[int, int, int]]
"""One gate of the circuit: ``("u" | "cu", qubits, indices of its (θ, φ, λ) in theta)``."""
FloatArray = NDArray[np.float64]


@dataclass
class Result:
    """One row of the table (times in ms, ``None`` where not measured).

    Attributes:
        engine: Engine name (one of :data:`ENGINES`).
        timed: What is timed, in words.
        status: ``"ok"``, ``"extrapolated"``, ``"not installed"``, ``"skipped"`` or ``"failed"``.
        fwd_ms: Median forward time.
        bwd_ms: Median backward (VJP) time.
        total_ms: Median of forward + backward per repeat.
        step_ms: Median QT training-step time.
        dp: Max abs difference of the probabilities from ours (float64).
        dvjp: Max abs difference of the VJP from ours (float64).
        vjp_scale: ``max |vjp|`` of ours, the scale of ``dvjp``.
        notes: Free text for the table.
        extra: More JSON-able numbers (measured points of an extrapolation, shot noise, ...).
    """

    engine: str
    timed: str
    status: str = "ok"
    fwd_ms: float | None = None
    bwd_ms: float | None = None
    total_ms: float | None = None
    step_ms: float | None = None
    dp: float | None = None
    dvjp: float | None = None
    vjp_scale: float | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def agrees(self) -> bool | None:
        """Whether probabilities and VJP agree with ours (``None`` when not compared)."""
        if self.dp is None:
            return None
        vjp_ok = self.dvjp is None or self.dvjp <= VJP_RTOL * max(1.0, self.vjp_scale or 0.0)
        return self.dp <= PROBS_TOL and vjp_ok


@dataclass(frozen=True)
class Reference:
    """Our float64 probabilities and VJP at the check angles, for one circuit.

    Attributes:
        theta: The random check angles.
        g: The fixed upstream vector (also the one every timing uses).
        probs: Probabilities, Qiskit little-endian order.
        vjp: ``g`` times the Jacobian of ``probs``.
    """

    theta: FloatArray
    g: FloatArray
    probs: FloatArray
    vjp: FloatArray


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------


def gate_list(circuit: QuantumCircuit) -> list[Gate]:
    """The circuit's gates as plain tuples that every peer builder translates.

    Args:
        circuit: A circuit of ``u`` and ``cu`` gates (``cu`` with zero global phase ``γ``) whose
            angles are plain parameters, as :func:`~qfed_qiskit.circuits.qt_ansatz` builds.

    Returns:
        The gates in order, angles as indices into ``circuit.parameters``.

    Raises:
        ValueError: For another gate, a non-zero ``γ`` or an angle that is an expression.
    """
    index = {p: i for i, p in enumerate(circuit.parameters)}
    gates: list[Gate] = []
    for instruction in circuit.data:
        op = instruction.operation
        qubits = tuple(circuit.find_bit(q).index for q in instruction.qubits)
        if op.name == "u":
            angles = list(op.params)
        elif op.name == "cu":
            angles = list(op.params[:3])
            if float(op.params[3]) != 0.0:
                raise ValueError("cu with a non-zero global phase γ")
        else:
            raise ValueError(f"unexpected gate {op.name!r}")
        if any(a not in index for a in angles):
            raise ValueError(f"{op.name} has an angle that is not a plain parameter")
        i, j, k = (index[a] for a in angles)
        gates.append((op.name, qubits, (i, j, k)))
    return gates


def bit_reversal(num_qubits: int) -> NDArray[np.int64]:
    """Index map between Qiskit's little-endian order and big-endian (wire 0 = top bit) order.

    ``big[bit_reversal(n)]`` is ``big`` in little-endian order, and the other way round.
    """
    k = np.arange(1 << num_qubits)
    out = np.zeros_like(k)
    for q in range(num_qubits):
        out |= ((k >> q) & 1) << (num_qubits - 1 - q)
    return out


def reference(circuit: QuantumCircuit, seed: int) -> Reference:
    """Our float64 engine's probabilities and VJP at random angles (seeded)."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-math.pi, math.pi, circuit.num_parameters)
    g = rng.standard_normal(1 << circuit.num_qubits)
    engine = StatevectorEngine(circuit=circuit, dtype=torch.float64)
    t = torch.tensor(theta, requires_grad=True)
    probs = engine(t)
    probs.backward(torch.from_numpy(g))
    assert t.grad is not None
    return Reference(theta, g, probs.detach().numpy().copy(), t.grad.numpy().copy())


def compare(row: Result, ref: Reference, probs: FloatArray, vjp: FloatArray) -> None:
    """Store the max abs differences of a peer's probabilities and VJP from ours in ``row``."""
    row.dp = float(np.max(np.abs(np.asarray(probs, dtype=np.float64) - ref.probs)))
    row.dvjp = float(np.max(np.abs(np.asarray(vjp, dtype=np.float64) - ref.vjp)))
    row.vjp_scale = float(np.max(np.abs(ref.vjp)))


def engine_probs_vjp(engine: QNNEngine, ref: Reference) -> tuple[FloatArray, FloatArray]:
    """An engine's probabilities and VJP with ``ref.g`` at ``ref.theta``, in float64."""
    t = torch.tensor(ref.theta, dtype=torch.float64, requires_grad=True)
    probs = engine(t)
    probs.backward(torch.from_numpy(ref.g).to(probs.dtype))
    assert t.grad is not None
    return probs.detach().double().numpy(), t.grad.double().numpy()


def model_chunk_size(num_qubits: int) -> int:
    """The chunk size whose QT model of :class:`TargetCNN` has ``num_qubits`` qubits (1 at 13)."""
    return max(1, math.ceil(count_parameters(TargetCNN()) / (1 << num_qubits)))


class _TorchFnEngine(QNNEngine):
    """A QNN engine around a differentiable torch function ``theta -> probabilities``."""

    def __init__(
        self, fn: Callable[[torch.Tensor], torch.Tensor], num_qubits: int, num_parameters: int
    ) -> None:
        super().__init__()
        self.fn = fn
        self.num_qubits = num_qubits
        self.num_parameters = num_parameters

    def _forward(self, theta: torch.Tensor) -> torch.Tensor:
        return self.fn(theta)


class _VJPFunction(torch.autograd.Function):
    """``theta -> probabilities`` from a NumPy forward and a NumPy VJP."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, theta: torch.Tensor, engine: _NumpyVJPEngine
    ) -> torch.Tensor:
        theta_np = theta.detach().cpu().double().numpy()
        ctx.engine = engine
        ctx.theta_np = theta_np
        return torch.from_numpy(engine.probs_fn(theta_np)).to(theta.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_probs: torch.Tensor) -> tuple[torch.Tensor, None]:
        g = grad_probs.detach().cpu().double().numpy()
        grad = ctx.engine.vjp_fn(ctx.theta_np, g)
        return torch.from_numpy(np.asarray(grad)).to(grad_probs.dtype), None


class _NumpyVJPEngine(QNNEngine):
    """A QNN engine from ``probs_fn(theta)`` and ``vjp_fn(theta, g)`` on NumPy float64 arrays."""

    def __init__(
        self,
        probs_fn: Callable[[FloatArray], FloatArray],
        vjp_fn: Callable[[FloatArray, FloatArray], FloatArray],
        num_qubits: int,
        num_parameters: int,
    ) -> None:
        super().__init__()
        self.probs_fn = probs_fn
        self.vjp_fn = vjp_fn
        self.num_qubits = num_qubits
        self.num_parameters = num_parameters

    def _forward(self, theta: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = _VJPFunction.apply(theta, self)
        return out


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


MAX_REPEATS = 1000
"""Cap on the repeats ``--min-seconds`` adds to a cheap engine."""


def sample_ms(
    fns: Sequence[Callable[[], None]], *, repeats: int, warmup: int, min_seconds: float
) -> list[list[float]]:
    """Times in ms of calling ``fns`` in turn, repeat after repeat.

    Args:
        fns: Functions run one after the other in every repeat (e.g. forward, then backward).
        repeats: Least number of timed repeats.
        warmup: Untimed repeats first (compilation, caches, thread pools).
        min_seconds: Keep repeating (up to :data:`MAX_REPEATS`) until the timed repeats have
            taken this long, so a cheap engine's median rests on many samples.

    Returns:
        One list of times per function.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    out: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    while len(out[0]) < repeats or (
        time.perf_counter() - start < min_seconds and len(out[0]) < MAX_REPEATS
    ):
        for times, fn in zip(out, fns, strict=True):
            times.append(time_ms(fn))
    return out


def time_engine(
    engine: QNNEngine,
    g: FloatArray,
    *,
    repeats: int,
    warmup: int,
    min_seconds: float,
    dtype: torch.dtype,
    step: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Median forward, backward, forward + backward (and QT step) times of an engine, in ms.

    The QNN (forward, then its backward with ``g``, repeat after repeat) and the QT step are
    timed in two separate loops, so neither perturbs the other's caches and thread pools.

    Args:
        engine: The engine.
        g: Upstream vector of the backward.
        repeats: Least number of timed repeats (see :func:`sample_ms`).
        warmup: Untimed repeats first.
        min_seconds: Least time each loop's timed repeats take (see :func:`sample_ms`).
        dtype: Dtype of the angles fed to the engine.
        step: One QT training step with this engine, or None.

    Returns:
        ``fwd_ms``, ``bwd_ms``, ``total_ms``, ``qnn_repeats`` and, with ``step``, ``step_ms``
        and ``step_repeats``.
    """
    theta = torch.empty(engine.num_parameters, dtype=dtype).uniform_(-math.pi, math.pi)
    theta.requires_grad_(True)
    upstream = torch.from_numpy(g)
    box: dict[str, torch.Tensor] = {}

    def forward() -> None:
        box["probs"] = engine(theta)

    def backward() -> None:
        probs = box.pop("probs")
        torch.autograd.backward(probs, upstream.to(probs.dtype))
        theta.grad = None

    def sample(fns: Sequence[Callable[[], None]]) -> list[list[float]]:
        return sample_ms(fns, repeats=repeats, warmup=warmup, min_seconds=min_seconds)

    fwd, bwd = sample([forward, backward])
    out = {
        "fwd_ms": _median(fwd),
        "bwd_ms": _median(bwd),
        "total_ms": _median([a + b for a, b in zip(fwd, bwd, strict=True)]),
        "qnn_repeats": float(len(fwd)),
    }
    if step is not None:
        (steps,) = sample([step])
        out["step_ms"] = _median(steps)
        out["step_repeats"] = float(len(steps))
    return out


def qt_step(
    factory: Callable[[QuantumCircuit], QNNEngine], num_qubits: int, blocks: int, batch: int
) -> Callable[[], None] | None:
    """One QT training step with the engine ``factory`` builds, or None if no model fits.

    The model is ``QuantumTrainModel(blocks=blocks, chunk_size=c)`` with the chunk size ``c``
    that makes it ``num_qubits`` wide (``c = 1`` at 13 qubits, the paper's model).
    """
    model = QuantumTrainModel(
        blocks=blocks, chunk_size=model_chunk_size(num_qubits), engine_factory=factory
    )
    if model.sizing.num_qubits != num_qubits:
        return None
    return training_step(model, batch)


def _fill(row: Result, times: dict[str, float]) -> None:
    row.fwd_ms = times["fwd_ms"]
    row.bwd_ms = times["bwd_ms"]
    row.total_ms = times["total_ms"]
    row.step_ms = times.get("step_ms")
    for key in ("qnn_repeats", "step_repeats"):
        if key in times:
            row.extra[key] = int(times[key])


def _check_and_time(
    row: Result,
    engine: QNNEngine,
    factory: Callable[[QuantumCircuit], QNNEngine],
    ref: Reference,
    args: argparse.Namespace,
    dtype: torch.dtype,
    num_qubits: int,
) -> None:
    """Compare ``engine`` with the reference, then time its QNN and its QT step into ``row``."""
    compare(row, ref, *engine_probs_vjp(engine, ref))
    step = qt_step(factory, num_qubits, args.blocks, args.batch)
    times = time_engine(
        engine,
        ref.g,
        repeats=args.repeats,
        warmup=args.warmup,
        min_seconds=args.min_seconds,
        dtype=dtype,
        step=step,
    )
    _fill(row, times)


def _import(name: str) -> Any:
    """The module ``name``; raises ImportError when it is not installed."""
    return importlib.import_module(name)


# ----------------------------------------------------------------------------------------------
# Engines
# ----------------------------------------------------------------------------------------------


def run_ours(
    name: str, circuit: QuantumCircuit, ref: Reference, args: argparse.Namespace
) -> Result:
    """Our exact statevector engine (float32 for ``ours``, float64 for ``ours-f64``)."""
    dtype = torch.float64 if name == "ours-f64" else torch.float32
    label = str(dtype).removeprefix("torch.")
    row = Result(name, f"StatevectorEngine {label}, adjoint VJP")
    engine = StatevectorEngine(circuit=circuit, dtype=dtype)

    def factory(c: QuantumCircuit) -> QNNEngine:
        return StatevectorEngine(circuit=c, dtype=dtype)

    _check_and_time(row, engine, factory, ref, args, dtype, circuit.num_qubits)
    row.notes.append(f"{engine.threads} thread(s)")
    return row


def _pl_apply(qml: Any, gates: list[Gate], angles: Any) -> None:
    """Apply the gates in PennyLane; ``angles[k]`` holds gate ``k``'s ``(θ, φ, λ)``."""
    for k, (name, qubits, _) in enumerate(gates):
        a = angles[k]
        if name == "u":
            qml.U3(a[0], a[1], a[2], wires=qubits[0])
        else:
            qml.ctrl(qml.U3, control=qubits[0])(a[0], a[1], a[2], wires=qubits[1])


def lightning_engine(circuit: QuantumCircuit) -> QNNEngine:
    """PennyLane ``lightning.qubit``: probs forward, adjoint VJP through ``expval(diag(g))``."""
    qml = _import("pennylane")
    sparse = _import("scipy.sparse")
    pnp = _import("pennylane.numpy")
    n = circuit.num_qubits
    gates = gate_list(circuit)
    idx = np.array([gate[2] for gate in gates])
    rev = bit_reversal(n)
    dev = qml.device("lightning.qubit", wires=n)
    little_endian = list(reversed(range(n)))  # probs over wires n-1 … 0 = Qiskit's order

    @qml.qnode(dev)  # type: ignore[untyped-decorator]
    def probs_node(theta: Any) -> Any:
        _pl_apply(qml, gates, theta[idx])
        return qml.probs(wires=little_endian)

    def probs_fn(theta: FloatArray) -> FloatArray:
        return np.asarray(probs_node(pnp.array(theta, requires_grad=False)), dtype=np.float64)

    def vjp_fn(theta: FloatArray, g: FloatArray) -> FloatArray:
        # diag(g) in PennyLane's big-endian order over wires 0 … n-1.
        ham = qml.SparseHamiltonian(sparse.diags(g[rev], format="csr"), wires=range(n))

        @qml.qnode(dev, diff_method="adjoint")  # type: ignore[untyped-decorator]
        def expval_node(t: Any) -> Any:
            _pl_apply(qml, gates, t[idx])
            return qml.expval(ham)

        grad = qml.grad(expval_node)(pnp.array(theta, requires_grad=True))
        return np.asarray(grad, dtype=np.float64)

    return _NumpyVJPEngine(probs_fn, vjp_fn, n, circuit.num_parameters)


def default_qubit_engine(circuit: QuantumCircuit) -> QNNEngine:
    """PennyLane ``default.qubit`` with torch backprop through ``qml.probs``."""
    qml = _import("pennylane")
    n = circuit.num_qubits
    gates = gate_list(circuit)
    idx = torch.tensor([gate[2] for gate in gates])
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch", diff_method="backprop")  # type: ignore[untyped-decorator]
    def node(theta: torch.Tensor) -> Any:
        _pl_apply(qml, gates, theta[idx])
        return qml.probs(wires=list(reversed(range(n))))

    def fn(theta: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = node(theta)
        return out

    return _TorchFnEngine(fn, n, circuit.num_parameters)


def run_pennylane(
    name: str, circuit: QuantumCircuit, ref: Reference, args: argparse.Namespace
) -> Result:
    """PennyLane ``lightning.qubit`` (adjoint) or ``default.qubit`` (torch backprop)."""
    lightning = name == "pl-lightning"
    timed = (
        "lightning.qubit: probs fwd; adjoint grad of <diag(g)> (SparseHamiltonian)"
        if lightning
        else "default.qubit, interface=torch, backprop through qml.probs"
    )
    row = Result(name, timed)
    try:
        qml = _import("pennylane")
        factory = lightning_engine if lightning else default_qubit_engine
        engine = factory(circuit)
    except ImportError:
        row.status, row.notes = "not installed", [NOT_INSTALLED]
        return row
    row.extra["version"] = qml.__version__
    _check_and_time(row, engine, factory, ref, args, torch.float64, circuit.num_qubits)
    row.notes.append(f"PennyLane {qml.__version__}, float64")
    if lightning:
        row.notes.append("bwd includes the adjoint's own forward")
    return row


def sml_circuit(circuit: QuantumCircuit) -> QuantumCircuit:
    """The circuit as handed to ``SamplerQNN``: in the parameter-shift gradient's gate set.

    ``TranslateParameterizedGates`` with ``ParamShiftSamplerGradient.SUPPORTED_GATES`` is what the
    stock gradient runs on its input; doing it here and dropping the global phase (irrelevant to
    probabilities) spares the gradient a substitution into a global phase of every angle.
    """
    gradients = _import("qiskit_machine_learning.gradients")
    from qiskit.transpiler.passes import TranslateParameterizedGates

    translated: QuantumCircuit = TranslateParameterizedGates(
        gradients.ParamShiftSamplerGradient.SUPPORTED_GATES
    )(circuit)
    translated.global_phase = 0.0
    translated.measure_all()
    return translated


def sml_engine(circuit: QuantumCircuit, shots: int, seed: int) -> QNNEngine:
    """``SamplerQNN`` + ``TorchConnector`` on Aer's ``SamplerV2``, stock parameter shift.

    The angles are the QNN's inputs (``input_gradients=True``), so the connector maps
    ``theta -> probabilities`` like every engine here.
    """
    nn_mod = _import("qiskit_machine_learning.neural_networks")
    connectors = _import("qiskit_machine_learning.connectors")
    gradients = _import("qiskit_machine_learning.gradients")
    aer = _import("qiskit_aer.primitives")
    sampler = aer.SamplerV2(default_shots=shots, seed=seed)
    qc = sml_circuit(circuit)
    qnn = nn_mod.SamplerQNN(
        circuit=qc,
        sampler=sampler,
        input_params=list(circuit.parameters),
        weight_params=[],
        input_gradients=True,
        gradient=gradients.ParamShiftSamplerGradient(sampler),
    )
    connector = connectors.TorchConnector(qnn)

    def fn(theta: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = connector(theta.unsqueeze(0))[0]
        return out

    return _TorchFnEngine(fn, circuit.num_qubits, circuit.num_parameters)


def run_sml(circuit: QuantumCircuit, args: argparse.Namespace) -> Result:
    """qiskit-machine-learning, timed at small L and extrapolated linearly to ``--blocks``."""
    n = circuit.num_qubits
    shots = args.sml_shots
    row = Result(
        "qiskit-ml",
        f"SamplerQNN+TorchConnector, Aer SamplerV2 {shots} shots, ParamShiftSamplerGradient",
    )
    try:
        version = _import("qiskit_machine_learning").__version__
        _import("qiskit_aer.primitives")
    except ImportError:
        row.status, row.notes = "not installed", ["not installed (pip install -e .)"]
        return row
    from qiskit.quantum_info import Statevector

    measured = [args.blocks] if args.blocks <= max(args.sml_blocks) else sorted(args.sml_blocks)
    points: dict[int, dict[str, float]] = {}
    dps: list[float] = []
    exact_dps: list[float] = []
    dvjps: list[float] = []
    for blocks in measured:
        small = qt_ansatz(n, blocks)
        ref = reference(small, args.seed)
        # The circuit SamplerQNN gets is the same unitary up to a global phase: check exactly.
        bound = sml_circuit(small).remove_final_measurements(inplace=False)
        bound = bound.assign_parameters(dict(zip(small.parameters, ref.theta, strict=True)))
        exact = Statevector(bound).probabilities()
        exact_dps.append(float(np.max(np.abs(exact - ref.probs))))
        engine = sml_engine(small, shots, args.seed)
        probs, vjp = engine_probs_vjp(engine, ref)
        dps.append(float(np.max(np.abs(probs - ref.probs))))
        dvjps.append(float(np.max(np.abs(vjp - ref.vjp))))

        def factory(c: QuantumCircuit) -> QNNEngine:
            return sml_engine(c, shots, args.seed)

        step = qt_step(factory, n, blocks, args.batch)
        points[blocks] = time_engine(
            engine,
            ref.g,
            repeats=args.sml_repeats or args.repeats,
            warmup=args.warmup,
            min_seconds=0.0,
            dtype=torch.float64,
            step=step,
        )
    row.dp = max(exact_dps)  # exact circuit agreement; sampled Δp is shot noise
    row.extra.update(
        version=version,
        shots=shots,
        measured_blocks=measured,
        measured=points,
        sampled_max_abs_dp=max(dps),
        sampled_max_abs_dvjp=max(dvjps),
        shot_noise_scale=1.0 / math.sqrt(shots),
    )
    keys = [k for k in ("fwd_ms", "bwd_ms", "total_ms", "step_ms") if k in points[measured[0]]]
    if measured == [args.blocks]:
        _fill(row, points[args.blocks])
    else:
        row.status = "extrapolated"
        xs = np.array(measured, dtype=np.float64)
        fitted: dict[str, float] = {}
        for key in keys:
            slope, intercept = np.polyfit(xs, [points[b][key] for b in measured], 1)
            fitted[key] = float(slope * args.blocks + intercept)
        _fill(row, fitted)
        row.extra["extrapolation"] = "linear in L (a lower bound; parameter shift is ∝ L..L²)"
        row.notes.append(
            f"extrapolated linearly in L from L={','.join(map(str, measured))} (lower bound)"
        )
    row.notes.append(
        f"qiskit-ml {version}; Δ = exact circuit; sampled Δp {max(dps):.0e} (shot noise)"
    )
    return row


TQ_SNIPPET = r"""
import json, statistics, sys, time, types
try:
    import qiskit_ibm_runtime  # noqa: F401
except ImportError:  # torchquantum.util imports QiskitRuntimeService at module level only
    stub = types.ModuleType("qiskit_ibm_runtime")
    stub.QiskitRuntimeService = type("QiskitRuntimeService", (), {})
    sys.modules["qiskit_ibm_runtime"] = stub
import torch
import torchquantum as tq
import torchquantum.functional as tqf

cfg = json.loads(sys.stdin.read())
if cfg["torch_threads"]:
    torch.set_num_threads(cfg["torch_threads"])
n, gates = cfg["qubits"], cfg["gates"]
idx = torch.tensor([g[2] for g in gates])
rev = torch.tensor(cfg["bit_reversal"])

def probs_of(theta):
    angles = theta[idx].unsqueeze(1)  # (gates, 1, 3): bsz 1
    qdev = tq.QuantumDevice(n_wires=n, bsz=1, device="cpu")
    for k, (name, qubits, _) in enumerate(gates):
        if name == "u":
            tqf.u3(qdev, wires=qubits[0], params=angles[k])
        else:
            tqf.cu3(qdev, wires=list(qubits), params=angles[k])
    big = qdev.get_states_1d()[0].abs() ** 2  # wire 0 = top bit
    return big[rev]  # Qiskit's little-endian order

g = torch.tensor(cfg["g"], dtype=torch.float32)
theta = torch.tensor(cfg["theta"], dtype=torch.float32, requires_grad=True)
p = probs_of(theta)
p.backward(g)
check = {"probs": p.detach().double().tolist(), "vjp": theta.grad.double().tolist()}
fwd, bwd = [], []
t = torch.empty(len(cfg["theta"])).uniform_(-3.14159, 3.14159).requires_grad_(True)
def once():
    t0 = time.perf_counter()
    p = probs_of(t)
    t1 = time.perf_counter()
    p.backward(g)
    t2 = time.perf_counter()
    t.grad = None
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3

for _ in range(cfg["warmup"]):
    once()
start = time.perf_counter()
while len(fwd) < cfg["repeats"] or (
    time.perf_counter() - start < cfg["min_seconds"] and len(fwd) < cfg["max_repeats"]
):
    a, b = once()
    fwd.append(a)
    bwd.append(b)
print(json.dumps({
    "version": tq.__version__, "torch": torch.__version__,
    "torch_threads": torch.get_num_threads(), "fwd": fwd, "bwd": bwd, **check,
}))
"""


def torchquantum_python(venv: Path) -> Path:
    """The TorchQuantum virtualenv's python, creating and installing the venv if missing.

    TorchQuantum 0.1.8 brings qiskit 0.46, whose ``qiskit.providers.aer`` needs
    ``qiskit-aer < 0.13``; torch is pinned to this venv's release.
    """
    python = venv / "bin" / "python"
    stamp = venv / ".qfed-peers-installed"
    if stamp.exists() and python.exists():
        return python
    if not python.exists():
        print(f"creating {venv} (TorchQuantum {TQ_VERSION}) ...", file=sys.stderr, flush=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    torch_release = torch.__version__.split("+")[0]
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            f"torch=={torch_release}",
            f"torchquantum=={TQ_VERSION}",
            "qiskit-aer<0.13",
        ],
        check=True,
    )
    stamp.touch()
    return python


def run_torchquantum(circuit: QuantumCircuit, ref: Reference, args: argparse.Namespace) -> Result:
    """TorchQuantum in its own virtualenv, as a subprocess printing one JSON line."""
    row = Result("torchquantum", f"TorchQuantum {TQ_VERSION} u3/cu3, torch autograd, complex64")
    if args.skip_torchquantum:
        row.status, row.notes = "skipped", ["--skip-torchquantum"]
        return row
    try:
        python = torchquantum_python(Path(args.torchquantum_venv))
    except (OSError, subprocess.CalledProcessError) as exc:
        row.status, row.notes = "failed", [f"venv/pip failed: {exc}"]
        return row
    payload = {
        "qubits": circuit.num_qubits,
        "gates": gate_list(circuit),
        "bit_reversal": bit_reversal(circuit.num_qubits).tolist(),
        "theta": ref.theta.tolist(),
        "g": ref.g.tolist(),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "min_seconds": args.min_seconds,
        "max_repeats": MAX_REPEATS,
        "torch_threads": args.torch_threads,
    }
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [str(python), "-c", TQ_SNIPPET],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        row.status, row.notes = "failed", [f"subprocess rc={proc.returncode}: {tail}"]
        return row
    out = json.loads(lines[-1])
    compare(row, ref, np.asarray(out["probs"]), np.asarray(out["vjp"]))
    fwd, bwd = out["fwd"], out["bwd"]
    row.fwd_ms, row.bwd_ms = _median(fwd), _median(bwd)
    row.total_ms = _median([a + b for a, b in zip(fwd, bwd, strict=True)])
    row.extra.update(
        version=out["version"],
        torch=out["torch"],
        torch_threads=out["torch_threads"],
        qnn_repeats=len(fwd),
        venv=str(args.torchquantum_venv),
    )
    row.notes.append(
        f"own venv (qiskit<1), torch {out['torch']}, {out['torch_threads']} threads; "
        "no QT step (our model needs qiskit 2)"
    )
    return row


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _agreement(row: Result) -> str:
    if row.dp is None:
        return "—"
    text = f"Δp {row.dp:.0e}"
    if row.dvjp is not None and row.engine != "qiskit-ml":
        text += f", Δvjp {row.dvjp:.0e}"
    return f"{text} {'ok' if row.agrees else 'MISMATCH'}"


def print_table(rows: list[Result]) -> None:
    """Print the results as one fixed-width table (times in ms)."""
    header = (
        "engine",
        "what is timed",
        "fwd ms",
        "bwd ms",
        "fwd+bwd ms",
        "QT step ms",
        "agreement with ours",
        "notes",
    )
    cells = [
        (
            r.engine,
            r.timed,
            _ms(r.fwd_ms),
            _ms(r.bwd_ms),
            _ms(r.total_ms),
            _ms(r.step_ms),
            _agreement(r),
            "; ".join(r.notes),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    right = {2, 3, 4, 5}

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return " | ".join(parts).rstrip()

    print(line(header))
    print("-+-".join("-" * w for w in widths))
    for c in cells:
        print(line(c))


def summary(
    rows: list[Result], args: argparse.Namespace, circuit: QuantumCircuit
) -> dict[str, Any]:
    """The JSON summary: config, every row's numbers, ratios peer/ours and the goals."""
    by_name = {r.engine: r for r in rows}
    ours = by_name["ours"]
    ratios: dict[str, float | None] = {}
    step_ratios: dict[str, float | None] = {}
    for r in rows:
        if r.engine == "ours":
            continue
        ok = r.total_ms is not None and ours.total_ms
        ratios[r.engine] = round(r.total_ms / ours.total_ms, 2) if ok else None  # type: ignore[operator]
        ok_step = r.step_ms is not None and ours.step_ms
        step_ratios[r.engine] = round(r.step_ms / ours.step_ms, 2) if ok_step else None  # type: ignore[operator]
    pl = {k: v for k, v in ratios.items() if k.startswith("pl-") and v is not None}
    best_pl = min(pl, key=lambda k: pl[k]) if pl else None
    tq_ratio = ratios.get("torchquantum")
    goals = {
        "torchquantum": {
            "goal_x": GOALS["torchquantum"],
            "ratio": tq_ratio,
            "met": None if tq_ratio is None else tq_ratio >= GOALS["torchquantum"],
        },
        "pennylane_best": {
            "goal_x": GOALS["pennylane"],
            "engine": best_pl,
            "ratio": pl[best_pl] if best_pl else None,
            "met": None if best_pl is None else pl[best_pl] >= GOALS["pennylane"],
        },
    }

    def rnd(x: float | None, digits: int = 3) -> float | None:
        return None if x is None else round(x, digits)

    engines = {
        r.engine: {
            "status": r.status,
            "timed": r.timed,
            "fwd_ms": rnd(r.fwd_ms),
            "bwd_ms": rnd(r.bwd_ms),
            "fwd_bwd_ms": rnd(r.total_ms),
            "qt_step_ms": rnd(r.step_ms),
            "max_abs_dp": r.dp,
            "max_abs_dvjp": r.dvjp,
            "agrees": r.agrees,
            "notes": r.notes,
            **r.extra,
        }
        for r in rows
    }
    return {
        "qubits": circuit.num_qubits,
        "blocks": args.blocks,
        "qnn_params": circuit.num_parameters,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "min_seconds": args.min_seconds,
        "batch": args.batch,
        "chunk_size": model_chunk_size(circuit.num_qubits),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "engines": engines,
        "ratio_fwd_bwd_vs_ours": ratios,
        "ratio_qt_step_vs_ours": step_ratios,
        "goals": goals,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (medians)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repeats first")
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=2.0,
        help="repeat a cheap engine until its timed repeats take this long (medians of more)",
    )
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="torch.set_num_threads (default: torch's)"
    )
    parser.add_argument("--qubits", type=int, default=13)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--batch", type=int, default=128, help="batch of the QT training step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only",
        default=",".join(ENGINES),
        help=f"comma-separated engines out of {','.join(ENGINES)} (ours always runs)",
    )
    parser.add_argument("--skip-torchquantum", action="store_true")
    parser.add_argument(
        "--torchquantum-venv",
        default=str(ROOT / ".venv-peers" / "torchquantum"),
        help="TorchQuantum's own virtualenv (created if missing)",
    )
    parser.add_argument(
        "--sml-blocks",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2],
        help="L values qiskit-ml is timed at, then extrapolated from (default 1,2)",
    )
    parser.add_argument("--sml-shots", type=int, default=1024, help="Aer SamplerV2 shots")
    parser.add_argument(
        "--sml-repeats", type=int, default=0, help="qiskit-ml timed repeats (default --repeats)"
    )
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(names) - set(ENGINES))
    if unknown:
        parser.error(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    args.engines = [e for e in ENGINES if e in names or e == "ours"]
    if args.repeats < 1 or args.warmup < 0 or args.qubits < 2 or args.blocks < 1:
        parser.error("need --repeats >= 1, --warmup >= 0, --qubits >= 2, --blocks >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run the engines, print the table, the goals and the JSON line."""
    args = parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.manual_seed(args.seed)
    circuit = qt_ansatz(args.qubits, args.blocks)
    ref = reference(circuit, args.seed)
    rows: list[Result] = []
    for name in args.engines:
        print(f"[peers] {name} ...", file=sys.stderr, flush=True)
        try:
            if name.startswith("ours"):
                rows.append(run_ours(name, circuit, ref, args))
            elif name.startswith("pl-"):
                rows.append(run_pennylane(name, circuit, ref, args))
            elif name == "qiskit-ml":
                rows.append(run_sml(circuit, args))
            else:
                rows.append(run_torchquantum(circuit, ref, args))
        except Exception as exc:  # one broken peer must not hide the others
            if name == "ours":
                raise
            rows.append(Result(name, "—", status="failed", notes=[f"{type(exc).__name__}: {exc}"]))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"threads {torch.get_num_threads()}; circuit qt_ansatz({args.qubits}, L={args.blocks}): "
        f"{circuit.num_parameters} angles; VJP upstream = fixed random g; QT step = batch "
        f"{args.batch}, chunk size {model_chunk_size(args.qubits)}; medians of >= {args.repeats} "
        f"repeats (cheap engines: >= {args.min_seconds:g} s of them) after {args.warmup} warm-up"
    )
    print_table(rows)
    out = summary(rows, args, circuit)
    for key, label in (("torchquantum", "TorchQuantum"), ("pennylane_best", "PennyLane best")):
        goal = out["goals"][key]
        if goal["ratio"] is None:
            verdict = "not measured"
        else:
            verdict = f"{goal['ratio']:.1f}x -> {'MET' if goal['met'] else 'NOT met'}"
        which = f" ({goal['engine']})" if goal.get("engine") else ""
        print(f"goal: ours >= {goal['goal_x']:.0f}x faster than {label}{which}: {verdict}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
