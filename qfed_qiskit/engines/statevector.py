"""Exact statevector engine: compiled forward simulation with one-sweep adjoint gradients."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numba
import numpy as np
import torch
from numpy.typing import NDArray
from qiskit.circuit import QuantumCircuit
from torch.autograd.function import once_differentiable

from qfed_qiskit.engines import _kernels
from qfed_qiskit.engines.base import QNNEngine
from qfed_qiskit.engines.kernel_cache import ensure_compiled
from qfed_qiskit.engines.program import FusedProgram, GateProgram, compile_circuit, fuse_program
from qfed_qiskit.exceptions import QFedInputError

_COMPLEX = {torch.float32: np.complex64, torch.float64: np.complex128}


def _default_threads() -> int:
    # One thread unless asked: the QNN runs between torch's own multi-threaded ops, and two
    # OpenMP pools spinning on the same few cores slowed whole training steps down by 10x or more
    # on a loaded 2-core machine, for a gain of a few ms on an idle one.
    env = os.environ.get("QFED_NUM_THREADS")
    return max(1, int(env)) if env else 1


def _gate_args(program: GateProgram) -> tuple[Any, ...]:
    """The program arrays the gate-by-gate kernels take, in their order."""
    return (
        program.num_qubits,
        program.targets,
        program.controls,
        program.param_index,
        program.coeff,
        program.offset,
    )


def _fused_args(program: FusedProgram) -> tuple[Any, ...]:
    return (
        program.num_qubits,
        program.kind,
        program.target,
        program.control,
        program.start,
        program.stop,
        program.param_index,
        program.coeff,
        program.offset,
        program.controlled,
        program.perms,
    )


def _final_state(
    program: GateProgram | FusedProgram, theta: NDArray[np.float64], real: Any, threads: int
) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
    """Real and imaginary parts of the final state, starting from ``|0…0⟩``."""
    re = np.zeros(1 << program.num_qubits, dtype=real)
    im = np.zeros_like(re)
    re[0] = 1.0
    theta = np.ascontiguousarray(theta, dtype=np.float64)
    ensure_compiled()
    with _threads(threads):
        if isinstance(program, FusedProgram):
            args = (*_fused_args(program), theta, re, im, _parallel())
            _kernels.simulate_fused(*args)
        else:
            args = (*_gate_args(program), theta, re, im)
            _kernels.simulate(*args)
    return re, im


def simulate_state(
    program: GateProgram | FusedProgram,
    theta: NDArray[np.float64],
    *,
    dtype: Any = np.complex128,
    threads: int = 1,
) -> NDArray[np.complexfloating[Any, Any]]:
    """Final statevector of ``program`` at angles ``theta``, starting from ``|0…0⟩``.

    Args:
        program: Compiled (or compiled and fused) circuit.
        theta: Angles, one per circuit parameter.
        dtype: ``np.complex64`` or ``np.complex128``.
        threads: Threads for large states (results do not depend on it).

    Returns:
        The ``2**n`` amplitudes in Qiskit's little-endian order.
    """
    real = np.float32 if np.dtype(dtype) == np.complex64 else np.float64
    re, im = _final_state(program, theta, real, threads)
    state: NDArray[np.complexfloating[Any, Any]] = np.empty(re.shape, dtype=dtype)
    state.real = re
    state.imag = im
    return state


@contextmanager
def _threads(threads: int) -> Iterator[None]:
    """Run the parallel kernels inside the block on ``threads`` numba threads."""
    torch_threads = torch.get_num_threads()  # first: numba's first call may change it
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    try:
        yield
    finally:
        numba.set_num_threads(previous)
        # numba's OpenMP layer sets the calling thread's OpenMP thread count, which is torch's
        # too: without this, one QNN call would silently undo torch.set_num_threads.
        torch.set_num_threads(torch_threads)


def _parallel() -> bool:
    """Whether the fused kernels should use their threaded loops (more than one numba thread)."""
    return bool(numba.get_num_threads() > 1)


class _ProbabilitiesFunction(torch.autograd.Function):
    """``theta -> |U(theta)|0>|^2`` with an adjoint-method backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, theta: torch.Tensor, program: GateProgram | FusedProgram, threads: int
    ) -> torch.Tensor:
        theta_np = theta.detach().cpu().numpy().astype(np.float64)
        real = np.float32 if theta.dtype == torch.float32 else np.float64
        re, im = _final_state(program, theta_np, real, threads)
        probs = re * re
        probs += im * im
        ctx.program = program
        ctx.threads = threads
        ctx.theta_np = theta_np
        ctx.state = (re, im)
        return torch.from_numpy(probs).to(theta.device)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_probs: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        program: GateProgram | FusedProgram = ctx.program
        re, im = ctx.state
        g = grad_probs.detach().cpu().numpy().astype(re.dtype, copy=False)
        lr = g * re
        li = g * im
        pr = re.copy()  # the kernels destroy their inputs; ctx keeps the state for a rerun
        pi = im.copy()
        grad = np.zeros(program.num_parameters, dtype=np.float64)
        with _threads(ctx.threads):
            if isinstance(program, FusedProgram):
                args = (*_fused_args(program), ctx.theta_np, pr, pi, lr, li, grad, _parallel())
                _kernels.adjoint_fused(*args)
            else:
                args = (*_gate_args(program), ctx.theta_np, pr, pi, lr, li, grad)
                _kernels.adjoint(*args)
        out = torch.from_numpy(grad).to(dtype=grad_probs.dtype, device=grad_probs.device)
        return out, None, None


class StatevectorEngine(QNNEngine):
    """Exact, differentiable simulation of a parameterised circuit on the CPU.

    The circuit is compiled once into a flat program of (controlled) single-qubit gates, fused
    into multiplexed operations (a gate joins the previous one on its target when it commutes back
    to it, e.g. ``U3`` then ``CU3`` onto the same qubit: one pass over the state; see
    :class:`~qfed_qiskit.engines.program.FusedProgram`) that a numba kernel runs; the backward
    pass is one adjoint sweep (memory ``O(2**n)``, independent of the number of parameters).

    Args:
        circuit: Parameterised circuit; parameters are taken in ``circuit.parameters`` order.
        dtype: ``torch.float32`` (default; complex64 amplitudes) or ``torch.float64``.
        threads: Threads for states of at least 2**11 amplitudes; default ``QFED_NUM_THREADS``
            or 1. Results do not depend on it.

    Example:
        >>> from qfed_qiskit.circuits import qt_ansatz
        >>> engine = StatevectorEngine(circuit=qt_ansatz(3, 2))
        >>> engine(torch.zeros(engine.num_parameters)).shape
        torch.Size([8])
    """

    def __init__(
        self,
        *,
        circuit: QuantumCircuit,
        dtype: torch.dtype = torch.float32,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        if dtype not in _COMPLEX:
            raise QFedInputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.circuit = circuit
        self.program = compile_circuit(circuit)
        self.fused = fuse_program(self.program)
        self.num_qubits = circuit.num_qubits
        self.num_parameters = circuit.num_parameters
        self.dtype = dtype
        self.threads = _default_threads() if threads is None else max(1, int(threads))

    def _forward(self, theta: torch.Tensor) -> torch.Tensor:
        theta = theta.to(self.dtype)
        out: torch.Tensor = _ProbabilitiesFunction.apply(theta, self.fused, self.threads)
        return out

    def statevector(
        self, theta: torch.Tensor | NDArray[np.float64]
    ) -> NDArray[np.complexfloating[Any, Any]]:
        """Complex amplitudes at ``theta`` (no gradient), in Qiskit's little-endian order."""
        values = np.asarray(
            theta.detach().cpu().numpy() if isinstance(theta, torch.Tensor) else theta,
            dtype=np.float64,
        )
        return simulate_state(self.fused, values, dtype=np.complex128, threads=self.threads)

    def describe(self) -> dict[str, object]:
        return {
            "engine": "statevector",
            "qubits": self.num_qubits,
            "dtype": str(self.dtype).removeprefix("torch."),
            "gates": self.program.num_gates,
        }


def statevector_factory(
    dtype: torch.dtype = torch.float32,
) -> Callable[[QuantumCircuit], QNNEngine]:
    """The default engine factory of every QT model: the exact statevector engine in ``dtype``."""

    def build(circuit: QuantumCircuit) -> QNNEngine:
        return StatevectorEngine(circuit=circuit, dtype=dtype)

    return build


def compile_kernels() -> None:
    """Compile every kernel signature the engine calls: forward and adjoint, fused and gate by
    gate, float32 and float64 states, serial and threaded (see
    :mod:`~qfed_qiskit.engines.kernel_cache`, whose child process runs this)."""
    from qfed_qiskit.circuits import qt_ansatz

    for dtype in (torch.float32, torch.float64):
        for threads in (1, 2):
            # 11 qubits: the smallest state that takes the threaded kernels.
            engine = StatevectorEngine(circuit=qt_ansatz(11, 1), dtype=dtype, threads=threads)
            for program in (engine.fused, engine.program):
                theta = torch.zeros(engine.num_parameters, dtype=dtype, requires_grad=True)
                probs = _ProbabilitiesFunction.apply(theta, program, threads)
                probs.sum().backward()
