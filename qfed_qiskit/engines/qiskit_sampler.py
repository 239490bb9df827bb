"""Qiskit engine: SamplerQNN + TorchConnector over a V2 sampler (Aer, fake device, IBM Runtime)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from qiskit.circuit import QuantumCircuit
from torch.autograd.function import once_differentiable

from qfed_qiskit.engines.base import QNNEngine
from qfed_qiskit.engines.gradients import (
    GRADIENT_METHODS,
    BatchedParamShiftSamplerGradient,
    make_sampler_gradient,
)
from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.quantum.devices import aer_sampler
from qfed_qiskit.quantum.journal import JobJournal
from qfed_qiskit.quantum.managed import (
    JobRecorder,
    ManagedSampler,
    RetryPolicy,
    sampler_description,
)
from qfed_qiskit.quantum.results import check_shots
from qfed_qiskit.quantum.transpile import IsaTranspiler

logger = logging.getLogger(__name__)

_DTYPES = (torch.float32, torch.float64)


class _Float64QNNFunction(torch.autograd.Function):
    """``theta -> SamplerQNN(theta)`` in float64 (TorchConnector always casts to float32)."""

    @staticmethod
    def forward(ctx: Any, theta: torch.Tensor, qnn: Any) -> torch.Tensor:  # type: ignore[override]
        values = theta.detach().cpu().numpy().astype(np.float64)[None, :]
        ctx.qnn = qnn
        ctx.values = values
        probs = np.asarray(qnn.forward(values, np.zeros(0)), dtype=np.float64)[0]
        return torch.from_numpy(probs).to(theta.device)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_probs: torch.Tensor) -> tuple[torch.Tensor, None]:
        input_grad, _ = ctx.qnn.backward(ctx.values, np.zeros(0))
        jac = torch.from_numpy(np.asarray(input_grad, dtype=np.float64)[0])  # (2**n, P)
        grad = grad_probs.detach().cpu().to(torch.float64) @ jac
        return grad.to(device=grad_probs.device), None


class QiskitSamplerEngine(QNNEngine):
    """The QNN on a Qiskit V2 sampler: ``SamplerQNN`` wrapped in ``TorchConnector``.

    The engine measures :attr:`circuit` (``measure_all``), builds qiskit-machine-learning's
    ``SamplerQNN`` with every circuit parameter as an *input* parameter (no weights: the model
    owns the angles) and ``input_gradients=True``, and wraps it in ``TorchConnector``. The
    forward pass feeds ``theta`` as a ``(1, P)`` input and returns the ``2**n`` probabilities in
    Qiskit's little-endian order (``SamplerQNN`` reads each measured bitstring as a binary number,
    and ``measure_all`` puts qubit ``q`` in bit ``q``), the order of the exact engine.

    All circuits go through a :class:`~qfed_qiskit.quantum.managed.ManagedSampler`, which
    transpiles each circuit once (with ``pass_manager``), records job ids and passes ``shots``.
    The default gradient, :class:`~qfed_qiskit.engines.gradients.BatchedParamShiftSamplerGradient`,
    makes a training step two jobs: the forward PUB and one gradient PUB.

    ``TorchConnector`` returns float32; with ``dtype=torch.float64`` the same ``SamplerQNN`` is
    called through a float64 autograd function instead (for exact agreement tests).

    Args:
        circuit: Parameterised circuit without measurements (e.g.
            :func:`~qfed_qiskit.circuits.qt_ansatz`).
        sampler: A V2 sampler; default :func:`~qfed_qiskit.quantum.devices.aer_sampler` (ideal)
            with ``shots`` and ``seed``.
        shots: Shots per parameter set, passed to every ``run``; ``None`` or ``0`` for exact
            probabilities, which needs an exact sampler such as
            :class:`~qfed_qiskit.quantum.exact_aer.ExactAerSampler`.
        gradient: ``"batched-param-shift"`` (default), ``"param-shift"`` (stock) or ``"spsa"``.
        pass_manager: Pass manager to produce ISA circuits for device-like backends (applied once
            per circuit), e.g. :func:`~qfed_qiskit.quantum.transpile.preset_pass_manager`.
        seed: Seed for the default sampler and for SPSA directions.
        spsa_batch: SPSA directions averaged per gradient.
        spsa_epsilon: SPSA perturbation size.
        record_jobs: A list to append job ids to, or a callable taking each id.
        dtype: ``torch.float32`` (``TorchConnector``) or ``torch.float64``.
        journal: Keeps results by content so that repeated work is not submitted again.
        retry: How failed jobs are retried (default: 2 retries, 2 s then 8 s apart).
        reconnect: Returns a working sampler in place of one whose session or batch closed.
        retrieve: Fetches a job by id (jobs submitted before a restart).

    Raises:
        QFedInputError: For bad settings, or exact ``shots`` with a shot-based sampler.
    """

    _managed: ManagedSampler
    _gradient: Any
    _qnn: Any
    _connector: Any

    def __init__(
        self,
        *,
        circuit: QuantumCircuit,
        sampler: Any | None = None,
        shots: int | None = 4096,
        gradient: str = "batched-param-shift",
        pass_manager: Any | None = None,
        seed: int | None = None,
        spsa_batch: int = 1,
        spsa_epsilon: float = 0.01,
        record_jobs: JobRecorder | None = None,
        dtype: torch.dtype = torch.float32,
        journal: JobJournal | None = None,
        retry: RetryPolicy | None = None,
        reconnect: Callable[[Any], Any] | None = None,
        retrieve: Callable[[str], Any] | None = None,
    ) -> None:
        super().__init__()
        from qiskit_machine_learning.connectors import TorchConnector
        from qiskit_machine_learning.neural_networks import SamplerQNN

        if dtype not in _DTYPES:
            raise QFedInputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if gradient not in GRADIENT_METHODS:
            raise QFedInputError(f"gradient must be one of {GRADIENT_METHODS}, got {gradient!r}")
        if circuit.num_clbits:
            raise QFedInputError("circuit must have no measurements; the engine adds measure_all")
        if circuit.num_parameters == 0:
            raise QFedInputError("circuit has no parameters")
        exact_shots = check_shots(shots)
        if sampler is None:
            sampler = aer_sampler(shots=exact_shots, seed=seed)
        exact_sampler = bool(getattr(sampler, "is_exact", False))
        if exact_shots is None and not exact_sampler:
            raise QFedInputError(
                f"shots=None (exact) needs an exact sampler (e.g. aer_sampler(shots=None)), "
                f"got {type(sampler).__name__}"
            )

        self.circuit = circuit
        self.num_qubits = circuit.num_qubits
        self.num_parameters = circuit.num_parameters
        self.shots = exact_shots
        self.gradient_method = gradient
        self.dtype = dtype
        measured = circuit.copy()
        measured.measure_all()
        self.measured_circuit = measured
        transpiler = IsaTranspiler(pass_manager=pass_manager) if pass_manager is not None else None
        managed = ManagedSampler(
            sampler,
            shots=exact_shots,
            transpiler=transpiler,
            record_jobs=record_jobs,
            journal=journal,
            retry=retry,
            reconnect=reconnect,
            retrieve=retrieve,
        )
        grad = make_sampler_gradient(
            gradient,
            sampler=managed,
            seed=seed,
            spsa_batch=spsa_batch,
            spsa_epsilon=spsa_epsilon,
        )
        qnn = SamplerQNN(
            circuit=measured,
            sampler=managed,
            input_params=list(measured.parameters),
            weight_params=[],
            input_gradients=True,
            sparse=False,
            gradient=grad,
        )
        connector = TorchConnector(qnn, initial_weights=np.zeros(0))
        # Kept outside the module tree: the connector's (empty) weight must not appear in the
        # model's parameters or state dict, which are the same for every engine.
        object.__setattr__(self, "_managed", managed)
        object.__setattr__(self, "_gradient", grad)
        object.__setattr__(self, "_qnn", qnn)
        object.__setattr__(self, "_connector", connector)

    @property
    def qnn(self) -> Any:
        """The ``SamplerQNN``."""
        return self._qnn

    @property
    def connector(self) -> Any:
        """The ``TorchConnector``."""
        return self._connector

    @property
    def sampler(self) -> ManagedSampler:
        """The managed sampler every circuit goes through."""
        return self._managed

    @property
    def gradient(self) -> Any:
        """The sampler gradient object."""
        return self._gradient

    @property
    def job_ids(self) -> list[str]:
        """Ids of every sampler job submitted so far (forward and gradient), in order."""
        return list(self._managed.job_ids)

    def evaluations_per_step(self) -> int:
        """Parameter sets one forward + backward submits (forward row included)."""
        grad = self._gradient
        if isinstance(grad, BatchedParamShiftSamplerGradient):
            return 1 + grad.num_evaluations(self._qnn._circuit)
        if self.gradient_method == "spsa":
            return 1 + 2 * int(grad._batch_size)
        from qiskit_machine_learning.gradients import ParamShiftSamplerGradient

        circuit = self._qnn._circuit
        _, _, g_params = grad._preprocess(
            [circuit],
            [np.zeros(circuit.num_parameters)],
            [list(circuit.parameters)],
            ParamShiftSamplerGradient.SUPPORTED_GATES,
        )
        return 1 + 2 * len(g_params[0])

    def shots_per_step(self) -> int | None:
        """Shots one forward + backward uses (None for exact probabilities)."""
        return None if self.shots is None else self.shots * self.evaluations_per_step()

    def _forward(self, theta: torch.Tensor) -> torch.Tensor:
        if self.dtype == torch.float64:
            out64: torch.Tensor = _Float64QNNFunction.apply(theta.to(torch.float64), self._qnn)
            return out64
        out: torch.Tensor = self._connector(theta.to(torch.float32).unsqueeze(0))
        return out.reshape(-1)

    def describe(self) -> dict[str, object]:
        return {
            "engine": "qiskit-sampler",
            "qubits": self.num_qubits,
            "parameters": self.num_parameters,
            "shots": self.shots,
            "gradient": self.gradient_method,
            "sampler": sampler_description(self._managed),
            "transpiled": self._managed.transpiler is not None,
            "dtype": str(self.dtype).removeprefix("torch."),
            "jobs": len(self._managed.job_ids),
        }
