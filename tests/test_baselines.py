"""The honest baselines and the training variants the paper leaves open (issue: the paper table).

Baselines: a small classical CNN within the QT budget, the QNN frozen at its initial angles, a
classical generator in place of the QNN, a linear mapping. Variants: Adam's moments and the
plateau scheduler's step per round instead of per epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from qfed_qiskit.config import TrainConfig, build_config, parse_mapping
from qfed_qiskit.exceptions import ConfigError, QFedInputError
from qfed_qiskit.federated import run_federated
from qfed_qiskit.federated.core import client_fit, get_parameters
from qfed_qiskit.models import ProjectionGenerator, QuantumTrainModel, SmallCNN, count_parameters
from qfed_qiskit.training import RunDirectory, build_model

SMALL_QT: dict[str, Any] = {"model": "qt", "blocks": 1, "chunk_size": 64, "lr": 1e-2}


def _data(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(
        torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
    )


def _step(model: nn.Module) -> None:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, y = _data(16).tensors
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def test_small_cnn_is_within_the_budget_and_classifies() -> None:
    """SmallCNN has 1,383 <= 1,500 parameters and maps images to 10 logits."""
    for activation in ("none", "relu"):
        model = SmallCNN(activation=activation)
        assert count_parameters(model) == 1383
        assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    model = build_model(TrainConfig(model="small-cnn"))
    assert isinstance(model, SmallCNN)
    assert TrainConfig(model="small-cnn").learning_rate == 1e-3


def test_paper_model_counts() -> None:
    """The default QT model trains 1,497 values; frozen 249; vector 1,497; linear mapping 15."""
    counts = {
        generator: count_parameters(build_model(TrainConfig(generator=generator)))
        for generator in ("qnn", "frozen-qnn", "vector")
    }
    assert counts == {"qnn": 1497, "frozen-qnn": 249, "vector": 1497}
    linear = build_model(TrainConfig(mapping="linear"))
    assert isinstance(linear, QuantumTrainModel)
    assert count_parameters(linear.mapping) == 15


def test_frozen_qnn_keeps_its_angles_and_is_not_exchanged() -> None:
    """frozen-qnn: the angles never change and FedAvg never sees them; the mapping trains."""
    model = build_model(TrainConfig(generator="frozen-qnn", **SMALL_QT))
    assert isinstance(model, QuantumTrainModel)
    angles = model.qnn_weights.detach().clone()
    mapping = [p.detach().clone() for p in model.mapping.parameters()]
    _step(model)
    assert torch.equal(model.qnn_weights, angles)
    assert not all(
        torch.equal(a, b) for a, b in zip(mapping, model.mapping.parameters(), strict=True)
    )
    assert "qnn_weights" not in get_parameters(model)


def test_vector_generator_is_a_trained_distribution_without_a_qnn() -> None:
    """vector: a softmax of a fixed projection (the same in every model built), gradients reach it,
    and the model has no QNN angles."""
    model = build_model(TrainConfig(generator="vector", **SMALL_QT))
    other = build_model(TrainConfig(generator="vector", **{**SMALL_QT, "seed": 7}))
    assert isinstance(model, QuantumTrainModel) and isinstance(other, QuantumTrainModel)
    assert not hasattr(model, "qnn_weights")
    assert model.vector_generator is not None and other.vector_generator is not None
    assert torch.equal(model.vector_generator.projection, other.vector_generator.projection)
    probs = model.probabilities()
    assert probs.shape == (2**model.sizing.num_qubits,)
    assert torch.allclose(probs.sum(), torch.tensor(1.0))
    before = model.vector_generator.weights.detach().clone()
    _step(model)
    assert not torch.equal(model.vector_generator.weights, before)
    assert set(get_parameters(model)) == {n for n, _ in model.named_parameters()}


def test_projection_generator_starts_spread_out() -> None:
    """At initialisation no basis state dominates (unit-variance logits)."""
    gen = ProjectionGenerator(num_values=1248, num_states=8192)
    probs = gen().detach()
    assert float(probs.max()) < 50 / 8192
    assert gen.projection.shape == (8192, 1248)


def test_linear_mapping_agrees_with_its_layer() -> None:
    """mapping='linear' is one Linear layer; the model's fast affine path computes the same map."""
    model = build_model(TrainConfig(mapping="linear", **SMALL_QT))
    assert isinstance(model, QuantumTrainModel)
    (layer,) = list(model.mapping.net)
    assert isinstance(layer, nn.Linear) and layer.in_features == model.sizing.num_qubits + 1
    fast = model.generate_flat()
    from qfed_qiskit.models.quantum_train import beta_scaling

    probs = model.probabilities()[: model.sizing.num_chunks]
    x = beta_scaling(probs, model.sizing.num_qubits)
    slow = layer(torch.cat([model._bits, x.unsqueeze(1)], dim=1)).reshape(-1)
    slow = slow[: model.sizing.target_params]
    torch.testing.assert_close(fast, slow - slow.mean())


@pytest.mark.parametrize(
    ("spec", "hidden"),
    [("mlp", (4, 20, 4)), ("linear", ()), ("mlp:20", (20,)), (" MLP:16, 8 ", (16, 8))],
)
def test_mapping_spec_names_the_hidden_widths(spec: str, hidden: tuple[int, ...]) -> None:
    assert parse_mapping(spec) == hidden


def test_a_wider_relu_mapping_with_fewer_blocks_stays_within_the_budget() -> None:
    """L = 15 and a ReLU MLP 14 -> 20 -> 1: 1,170 angles + 321 mapping values = 1,491 trained."""
    config = build_config({"mapping": "mlp:20", "blocks": 15, "mapping-activation": "relu"})
    model = build_model(config)
    assert isinstance(model, QuantumTrainModel)
    linears = [m for m in model.mapping.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(14, 20), (20, 1)]
    assert any(isinstance(m, nn.ReLU) for m in model.mapping.net)
    assert count_parameters(model) == 1491


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"mapping": "mlp:"}, "mapping='mlp:'"),
        ({"mapping": "mlp:4,0"}, "mapping='mlp:4,0'"),
        ({"mapping": "cnn"}, "'mlp:W1,W2,...'"),
        ({"model": "classical", "generator": "vector"}, "generator='vector' needs model='qt'"),
        ({"model": "small-cnn", "mapping": "linear"}, "mapping='linear' needs model='qt'"),
        ({"mapping": "linear", "mapping-activation": "relu"}, "needs mapping='mlp'"),
        ({"generator": "vector", "backend": "aer-noisy"}, "has no QNN"),
        ({"generator": "quantum"}, "generator='quantum'"),
        ({"optimizer-scope": "server"}, "optimizer_scope='server'"),
        ({"plateau-step": "batch"}, "plateau_step='batch'"),
    ],
)
def test_bad_combinations_are_one_line(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(values, source="row.toml")
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("row.toml: ")


def test_unknown_generator_in_the_model_is_refused() -> None:
    with pytest.raises(QFedInputError, match="generator='x'"):
        QuantumTrainModel(blocks=1, chunk_size=64, generator="x")


def _two_rounds(**overrides: Any) -> tuple[Any, Any]:
    config = TrainConfig(
        model="classical", clients=2, local_epochs=3, batch_size=16, plateau_patience=1, **overrides
    )
    model = build_model(config)
    data = _data(32)
    update, state = client_fit(model, get_parameters(model), data, config=config, client_id=0)
    _update2, state2 = client_fit(
        model, update.arrays, data, config=config, client_id=0, state=state
    )
    return state, state2


def test_optimizer_scope_round_restarts_adams_moments_but_keeps_the_lr() -> None:
    """optimizer_scope='round': round 2's Adam counts only its own steps; 'client' counts all."""
    steps_per_round = 3 * 2
    _kept, kept2 = _two_rounds()
    fresh, fresh2 = _two_rounds(optimizer_scope="round", plateau_factor=0.5)

    def adam_steps(state: Any) -> int:
        return int(next(iter(state.optimizer["state"].values()))["step"])

    assert adam_steps(kept2) == 2 * steps_per_round
    assert adam_steps(fresh2) == steps_per_round
    lr = fresh.optimizer["param_groups"][0]["lr"]
    # The scheduler's lr carries over: round 2 starts where round 1 ended (it may only go down).
    assert fresh2.optimizer["param_groups"][0]["lr"] <= lr


def test_plateau_step_round_steps_the_scheduler_once_per_round() -> None:
    _per_epoch, per_epoch2 = _two_rounds()
    per_round, per_round2 = _two_rounds(plateau_step="round")
    assert per_epoch2.scheduler["last_epoch"] == 6
    assert per_round.scheduler["last_epoch"] == 1
    assert per_round2.scheduler["last_epoch"] == 2


@pytest.mark.parametrize(
    "overrides",
    [
        {"model": "small-cnn"},
        {**SMALL_QT, "generator": "frozen-qnn"},
        {**SMALL_QT, "generator": "vector"},
        {**SMALL_QT, "mapping": "linear", "optimizer_scope": "round", "plateau_step": "round"},
    ],
)
def test_baselines_run_federated(tmp_path: Path, overrides: dict[str, Any]) -> None:
    """Each baseline trains in the one federated loop and reports its trainable count."""
    config = TrainConfig(
        clients=2, rounds=2, local_epochs=1, batch_size=32, seed=3, out=str(tmp_path), **overrides
    )
    summary = run_federated(
        config, train=_data(64), test=_data(32, 1), run_dir=RunDirectory(tmp_path)
    )
    assert summary["rounds"] == 2 and summary["rounds_failed"] == 0
    model = build_model(config)
    assert summary["trainable_params"] == count_parameters(model)
