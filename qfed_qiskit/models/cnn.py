"""The target classical model whose weights Quantum-Train generates."""

from __future__ import annotations

import torch
from torch import nn

from qfed_qiskit.config import ACTIVATIONS
from qfed_qiskit.exceptions import QFedInputError


def check_activation(activation: str) -> str:
    """``activation`` if it is one of :data:`~qfed_qiskit.config.ACTIVATIONS`.

    Raises:
        QFedInputError: Naming the value and the allowed ones.
    """
    if activation not in ACTIVATIONS:
        raise QFedInputError(
            f"activation={activation!r} (expected one of {', '.join(ACTIVATIONS)})"
        )
    return activation


class _ActivatedCNN(nn.Module):
    """A CNN with an optional activation after its hidden layers (``"none"`` or ``"relu"``)."""

    def __init__(self, *, activation: str) -> None:
        super().__init__()
        self.activation = check_activation(activation)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) if self.activation == "relu" else x


class TargetCNN(_ActivatedCNN):
    """The paper's FashionMNIST CNN (6,690 parameters).

    ``Conv2d(1, 8, 5) → MaxPool2d(2) → Conv2d(8, 12, 5) → MaxPool2d(2) → Linear(192, 20) →
    Linear(20, 10)``. The reference code has no activation functions (paper.md);
    ``activation="relu"`` inserts a ReLU after each convolution and after the first linear layer.

    Args:
        activation: ``"none"`` (paper) or ``"relu"``.
    """

    def __init__(self, *, activation: str = "none") -> None:
        super().__init__(activation=activation)
        self.conv1 = nn.Conv2d(1, 8, kernel_size=5)
        self.conv2 = nn.Conv2d(8, 12, kernel_size=5)
        self.fc1 = nn.Linear(12 * 4 * 4, 20)
        self.fc2 = nn.Linear(20, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of ``(B, 1, 28, 28)`` images."""
        x = nn.functional.max_pool2d(self._act(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(self._act(self.conv2(x)), 2)
        x = self._act(self.fc1(torch.flatten(x, 1)))
        out: torch.Tensor = self.fc2(x)
        return out


class SmallCNN(_ActivatedCNN):
    """A classical CNN within the QT budget (1,383 parameters <= 1,500), trained directly.

    The baseline critics of Quantum-Train ask for: ``Conv2d(1, 4, 5) → MaxPool2d(2) →
    Conv2d(4, 9, 5) → MaxPool2d(2) → AvgPool2d(2) → Linear(36, 10)``, with the activation after
    each convolution (``"relu"`` or ``"none"``, as for :class:`TargetCNN`).

    Args:
        activation: ``"none"`` or ``"relu"``.
    """

    def __init__(self, *, activation: str = "none") -> None:
        super().__init__(activation=activation)
        self.conv1 = nn.Conv2d(1, 4, kernel_size=5)
        self.conv2 = nn.Conv2d(4, 9, kernel_size=5)
        self.fc = nn.Linear(9 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of ``(B, 1, 28, 28)`` images."""
        x = nn.functional.max_pool2d(self._act(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(self._act(self.conv2(x)), 2)
        x = nn.functional.avg_pool2d(x, 2)
        out: torch.Tensor = self.fc(torch.flatten(x, 1))
        return out


def count_parameters(module: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
