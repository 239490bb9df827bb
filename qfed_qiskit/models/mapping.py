"""The mapping network: (basis-state bits, scaled probability) → generated weights."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from qfed_qiskit.config import PAPER_MAPPING_HIDDEN
from qfed_qiskit.models.cnn import check_activation

DEFAULT_HIDDEN = PAPER_MAPPING_HIDDEN
"""Hidden widths of the reference mapping MLP (14 → 4 → 20 → 4 → 1, 249 parameters)."""


class MappingMLP(nn.Module):
    """Plain MLP (no activations, as in the reference): ``num_qubits + 1`` inputs → ``chunk_size``.

    Args:
        num_qubits: Number of basis-index bits fed in.
        chunk_size: Outputs per basis state.
        hidden: Hidden layer widths.
        activation: ``"none"`` (reference) or ``"relu"`` between layers.
    """

    def __init__(
        self,
        *,
        num_qubits: int,
        chunk_size: int = 1,
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        activation: str = "none",
    ) -> None:
        super().__init__()
        check_activation(activation)
        widths = [num_qubits + 1, *hidden, chunk_size]
        layers: list[nn.Module] = []
        for i, (w_in, w_out) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(w_in, w_out))
            if activation == "relu" and i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(rows, num_qubits + 1)`` inputs to ``(rows, chunk_size)`` outputs."""
        out: torch.Tensor = self.net(x)
        return out

    def affine(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Without activations the MLP is one affine map ``x -> x @ W.T + b``: ``(W, b)``.

        ``W`` is ``(chunk_size, num_qubits + 1)`` and ``b`` ``(chunk_size,)``, both differentiable
        with respect to every layer (so applying them to many rows costs one small matmul
        instead of one per layer). None with activations.
        """
        layers = list(self.net)
        if not all(isinstance(layer, nn.Linear) for layer in layers):
            return None
        first = layers[0]
        assert isinstance(first, nn.Linear)
        weight: torch.Tensor = first.weight
        bias: torch.Tensor = first.bias
        for layer in layers[1:]:
            assert isinstance(layer, nn.Linear)
            weight = layer.weight @ weight
            bias = torch.addmv(layer.bias, layer.weight, bias)
        return weight, bias


def basis_bits(
    num_qubits: int, num_states: int, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The bits of basis indices ``0 … num_states-1`` as ±1, most significant bit first.

    Returns:
        Tensor of shape ``(num_states, num_qubits)``; entry ``[k, j]`` is bit ``num_qubits-1-j``
        of ``k`` mapped 0 → -1, 1 → +1.
    """
    k = torch.arange(num_states).unsqueeze(1)
    shifts = torch.arange(num_qubits - 1, -1, -1).unsqueeze(0)
    bits = (k >> shifts) & 1
    return (2 * bits - 1).to(dtype)
