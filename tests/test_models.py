"""TargetCNN, mapping MLP and QuantumTrainModel: sizes, weight generation and gradient flow."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from qfed_qiskit.circuits import qt_ansatz, qt_sizing
from qfed_qiskit.engines.base import QNNEngine
from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.models import (
    MappingMLP,
    QuantumTrainModel,
    TargetCNN,
    basis_bits,
    beta_scaling,
    count_parameters,
)


def test_target_cnn_has_6690_parameters() -> None:
    """The paper's CNN: 208 + 2,412 + 3,860 + 210 = 6,690 parameters."""
    cnn = TargetCNN()
    sizes = [p.numel() for p in cnn.parameters()]
    assert sum(sizes) == 6690
    assert sizes == [200, 8, 2400, 12, 3840, 20, 200, 10]
    assert cnn(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_target_cnn_has_no_activation_by_default() -> None:
    """Without activations the CNN is linear apart from max-pooling: f(2x) = 2 f(x) - f(0)."""
    cnn = TargetCNN().double()
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    zero = cnn(torch.zeros_like(x))
    torch.testing.assert_close(cnn(2 * x) - zero, 2 * (cnn(x) - zero))
    relu = TargetCNN(activation="relu")
    assert relu.activation == "relu"
    with pytest.raises(ValueError, match="activation"):
        TargetCNN(activation="tanh")


def test_default_qt_model_sizes_match_paper() -> None:
    """13 qubits, 1,248 angles, 249 mapping parameters, 1,497 trainable (77.6% fewer)."""
    model = QuantumTrainModel()
    assert model.sizing.num_qubits == 13
    assert model.qnn_weights.numel() == 1248
    assert count_parameters(model.mapping) == 249
    assert model.num_trainable == 1497
    assert round(1 - 1497 / 6690, 3) == 0.776
    assert set(model.state_dict()) == {
        "qnn_weights",
        *(f"mapping.{k}" for k in model.mapping.state_dict()),
    }


@pytest.mark.parametrize(("chunk", "qubits"), [(1, 13), (2, 12), (64, 7), (128, 6), (6690, 1)])
def test_chunked_sizing(chunk: int, qubits: int) -> None:
    """Chunk size c uses ceil(log2(ceil(6690 / c))) qubits."""
    sizing = qt_sizing(target_params=6690, chunk_size=chunk, blocks=2)
    assert sizing.num_qubits == qubits
    assert sizing.num_chunks == math.ceil(6690 / chunk)
    assert qt_ansatz(qubits, 2).num_parameters == sizing.qnn_params


def test_bad_sizing_is_rejected() -> None:
    """Non-positive sizes raise a QFedInputError naming the argument."""
    with pytest.raises(QFedInputError, match="chunk_size"):
        qt_sizing(target_params=10, chunk_size=0)


def test_basis_bits_msb_first() -> None:
    """Bits are ±1, most significant first."""
    bits = basis_bits(3, 8)
    assert bits[0].tolist() == [-1, -1, -1]
    assert bits[1].tolist() == [-1, -1, 1]
    assert bits[6].tolist() == [1, 1, -1]


def test_beta_scaling_formula() -> None:
    """x = (0.8 tanh(0.1 * 2^(n-1) p))^0.3, mean-centred."""
    p = torch.tensor([0.0, 1e-3, 1e-2, 0.5], dtype=torch.float64)
    raw = (0.8 * torch.tanh(0.1 * 2**12 * p)).clamp_min(1e-12) ** 0.3
    torch.testing.assert_close(beta_scaling(p, 13), raw - raw.mean())


def _reference_beta_scaling(p: torch.Tensor, num_qubits: int) -> torch.Tensor:
    raw = (0.8 * torch.tanh(0.1 * 2 ** (num_qubits - 1) * p)).clamp_min(1e-12) ** 0.3
    return raw - raw.mean()


def test_beta_scaling_gradient_matches_autograd_and_gradcheck() -> None:
    """The one-node beta scaling back-propagates like the op-by-op formula (zeros included)."""
    torch.manual_seed(0)
    p = torch.rand(64, dtype=torch.float64) * 2e-3
    p[[3, 17]] = 0.0
    p.requires_grad_(True)
    g = torch.randn(64, dtype=torch.float64)
    (beta_scaling(p, 13) * g).sum().backward()
    assert p.grad is not None
    ours = p.grad.clone()
    p.grad = None
    (_reference_beta_scaling(p, 13) * g).sum().backward()
    torch.testing.assert_close(ours, p.grad)
    q = (torch.rand(16, dtype=torch.float64) * 1e-2 + 1e-4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: beta_scaling(x, 10), (q,))


def test_affine_mapping_equals_layer_by_layer() -> None:
    """Without activations the mapping runs as one affine map: same weights and gradients."""
    torch.manual_seed(0)
    for chunk in (1, 4):
        model = QuantumTrainModel(blocks=1, chunk_size=chunk).double()
        probs = torch.rand(2**model.sizing.num_qubits, dtype=torch.float64)
        probs = (probs / probs.sum()).requires_grad_(True)
        fast = model.generate_flat(probs)
        (fast**2).sum().backward()
        grads = [p.grad.clone() for p in model.mapping.parameters() if p.grad is not None]
        assert probs.grad is not None
        grad_probs = probs.grad.clone()
        model.zero_grad()
        probs.grad = None
        x = beta_scaling(probs[: model.sizing.num_chunks], model.sizing.num_qubits)
        inputs = torch.cat([model._bits, x.unsqueeze(1)], dim=1)
        out = model.mapping(inputs).reshape(-1)[: model.sizing.target_params]
        slow = out - out.mean()
        (slow**2).sum().backward()
        torch.testing.assert_close(fast, slow)
        torch.testing.assert_close(probs.grad, grad_probs)
        for ours, ref in zip(grads, model.mapping.parameters(), strict=True):
            assert ref.grad is not None
            torch.testing.assert_close(ours, ref.grad, atol=1e-10, rtol=1e-8)
    assert MappingMLP(num_qubits=3, activation="relu").affine() is None


def test_generated_weights_follow_state_dict_order() -> None:
    """generate_weights splits the mean-free flat vector in the CNN's parameter order."""
    model = QuantumTrainModel(blocks=1, chunk_size=64)
    flat = model.generate_flat()
    assert flat.shape == (6690,)
    assert abs(float(flat.detach().mean())) < 1e-5
    weights = model.generate_weights()
    assert list(weights) == [name for name, _ in TargetCNN().named_parameters()]
    torch.testing.assert_close(torch.cat([w.reshape(-1) for w in weights.values()]), flat)


def test_forward_equals_generated_cnn() -> None:
    """The model's logits equal a plain TargetCNN loaded with cnn state dict."""
    model = QuantumTrainModel(blocks=2, chunk_size=16)
    x = torch.randn(4, 1, 28, 28)
    cnn = TargetCNN()
    cnn.load_state_dict(model.generated_state_dict())
    torch.testing.assert_close(model(x), cnn(x))
    torch.testing.assert_close(model.to_classical()(x), cnn(x))


def test_gradients_reach_angles_and_mapping() -> None:
    """The image loss back-propagates to every angle block and the mapping MLP."""
    model = QuantumTrainModel(blocks=2, chunk_size=32)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    assert model.qnn_weights.grad is not None
    assert torch.isfinite(model.qnn_weights.grad).all()
    assert model.qnn_weights.grad.abs().sum() > 0
    for p in model.mapping.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.template.parameters())


def test_engine_is_swappable() -> None:
    """Any QNNEngine works: the model only calls engine(theta) -> probabilities."""

    class UniformEngine(QNNEngine):
        def __init__(self, n: int, k: int) -> None:
            super().__init__()
            self.num_qubits, self.num_parameters = n, k

        def _forward(self, theta: torch.Tensor) -> torch.Tensor:
            return torch.full((2**self.num_qubits,), 2.0**-self.num_qubits) + 0 * theta.sum()

    model = QuantumTrainModel(
        blocks=1,
        chunk_size=64,
        engine_factory=lambda qc: UniformEngine(qc.num_qubits, qc.num_parameters),
    )
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_engine_parameter_mismatch_is_rejected() -> None:
    """An engine built for a different circuit is refused."""

    class Wrong(QNNEngine):
        num_qubits, num_parameters = 7, 3

        def _forward(self, theta: torch.Tensor) -> torch.Tensor:
            return theta

    with pytest.raises(QFedInputError, match="angles"):
        QuantumTrainModel(blocks=1, chunk_size=64, engine_factory=lambda qc: Wrong())


def test_mapping_mlp_shapes() -> None:
    """14 -> 4 -> 20 -> 4 -> c."""
    mlp = MappingMLP(num_qubits=13, chunk_size=3)
    assert mlp(torch.zeros(5, 14)).shape == (5, 3)
    assert count_parameters(MappingMLP(num_qubits=13)) == 249
