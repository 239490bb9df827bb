"""The engine interface: a differentiable map from circuit angles to basis-state probabilities."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from qfed_qiskit.exceptions import QFedInputError


class QNNEngine(nn.Module, ABC):
    """Runs one parameterised circuit and returns its basis-state probabilities.

    Engines are stateless with respect to training: the circuit angles are an *input* (the model
    owns them as an ``nn.Parameter``), so every engine plugs into the same model and the same
    checkpoints. Probabilities are in Qiskit's little-endian order: entry ``k`` is the probability
    of the outcome where qubit ``q`` reads bit ``q`` of ``k``.

    Subclasses implement :meth:`_forward`; :meth:`forward` validates the input.
    """

    num_qubits: int
    num_parameters: int

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        """Probabilities of the ``2**num_qubits`` basis states for the angles ``theta``.

        Args:
            theta: 1-D tensor of ``num_parameters`` angles.

        Returns:
            1-D tensor of ``2**num_qubits`` probabilities, differentiable with respect to ``theta``.
        """
        if theta.ndim != 1 or theta.shape[0] != self.num_parameters:
            raise QFedInputError(
                f"theta must have shape ({self.num_parameters},), got {tuple(theta.shape)}"
            )
        return self._forward(theta)

    @abstractmethod
    def _forward(self, theta: torch.Tensor) -> torch.Tensor:
        """Engine-specific forward (input already validated)."""

    def describe(self) -> dict[str, object]:
        """Short JSON-able description of the engine (name and settings) for logs and summaries."""
        return {"engine": type(self).__name__, "qubits": self.num_qubits}


DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""The engines' output precisions by name (the ``dtype`` setting)."""


def torch_dtype(name: str) -> torch.dtype:
    """``torch.float32`` or ``torch.float64`` for ``"float32"`` / ``"float64"``.

    Raises:
        QFedInputError: For another name.
    """
    if name not in DTYPES:
        raise QFedInputError(f"dtype={name!r} (expected one of {', '.join(DTYPES)})")
    return DTYPES[name]
