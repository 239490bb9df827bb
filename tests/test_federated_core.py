"""Tests of the federated core: parameters as arrays, client step, FedAvg, validation, DP, sizes."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from qfed_qiskit.config import TrainConfig
from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.federated.core import (
    ClientCancelledError,
    ClientState,
    ClientUpdate,
    arrays_norm,
    client_fit,
    clip_delta,
    derive_seed,
    dp_fedavg,
    fedavg,
    get_parameters,
    sample_clients,
    serialized_size,
    set_parameters,
    validate_update,
)
from qfed_qiskit.models import TargetCNN
from qfed_qiskit.training import build_model


def _arrays(rng: np.random.Generator, scale: float = 1.0) -> dict[str, np.ndarray]:
    return {
        "a": (scale * rng.standard_normal((3, 4))).astype(np.float32),
        "b": (scale * rng.standard_normal(5)).astype(np.float32),
    }


def _update(arrays: dict[str, np.ndarray], n: int = 10, cid: int = 0) -> ClientUpdate:
    return ClientUpdate(client_id=cid, arrays=arrays, num_samples=n, loss=1.0)


def _data(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(
        torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
    )


def test_get_set_parameters_roundtrip() -> None:
    """set_parameters(get_parameters(m)) restores a model exactly; the arrays are copies."""
    a, b = TargetCNN(), TargetCNN()
    arrays = get_parameters(a)
    assert list(arrays) == [n for n, _ in a.named_parameters()]
    set_parameters(b, arrays)
    for (_, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(pa, pb)
    arrays["fc2.bias"][:] = 7.0
    assert not torch.all(a.fc2.bias == 7.0)


def test_get_parameters_qt_sends_only_trainable() -> None:
    """A QT model exchanges its angles and mapping weights only (1,497 values for L = 16)."""
    model = build_model(TrainConfig(model="qt"))
    arrays = get_parameters(model)
    assert sum(v.size for v in arrays.values()) == 1497
    assert "qnn_weights" in arrays


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.pop("fc2.bias"), "missing"),
        (lambda d: d.update(extra=np.zeros(1, np.float32)), "unexpected"),
        (lambda d: d.update({"fc2.bias": np.zeros(3, np.float32)}), "shape"),
    ],
)
def test_set_parameters_rejects_mismatch(mutate, match) -> None:  # type: ignore[no-untyped-def]
    """Wrong names or shapes raise QFedInputError."""
    model = TargetCNN()
    arrays = get_parameters(model)
    mutate(arrays)
    with pytest.raises(QFedInputError, match=match):
        set_parameters(model, arrays)


def test_fedavg_equals_weighted_np_average(rng: np.random.Generator) -> None:
    """FedAvg is numpy.average over clients weighted by num_samples."""
    arrays = [_arrays(rng) for _ in range(4)]
    counts = [10, 30, 5, 55]
    result = fedavg([_update(a, n) for a, n in zip(arrays, counts, strict=True)])
    for name in ("a", "b"):
        expected = np.average(
            np.stack([a[name].astype(np.float64) for a in arrays]), axis=0, weights=counts
        ).astype(np.float32)
        assert result[name].dtype == np.float32
        np.testing.assert_array_equal(result[name], expected)


def test_fedavg_equal_shards_is_plain_mean(rng: np.random.Generator) -> None:
    """With equal shards FedAvg is the plain mean (the QFed reference)."""
    arrays = [_arrays(rng) for _ in range(3)]
    result = fedavg([_update(a, 20) for a in arrays])
    np.testing.assert_allclose(result["a"], np.mean([a["a"] for a in arrays], axis=0), rtol=1e-6)


def test_fedavg_rejects_empty() -> None:
    """Averaging nothing is an input error."""
    with pytest.raises(QFedInputError, match="zero"):
        fedavg([])


def test_validate_update_accepts_good(rng: np.random.Generator) -> None:
    """A finite update of the right layout and small norm is accepted."""
    ref = _arrays(rng)
    assert validate_update(_update(_arrays(rng)), ref, max_norm=100.0) is None


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("nan", "non-finite"),
        ("inf", "non-finite"),
        ("shape", "shape"),
        ("dtype", "dtype"),
        ("missing", "missing"),
        ("extra", "unexpected"),
        ("norm", "norm"),
        ("samples", "num_samples"),
        ("loss", "loss"),
        ("list", "numpy array"),
    ],
)
def test_validate_update_reasons(rng: np.random.Generator, kind: str, reason: str) -> None:
    """Each kind of bad reply is rejected with a reason naming the problem."""
    ref = _arrays(rng)
    arrays = {k: v.copy() for k, v in ref.items()}
    n, loss = 10, 0.5
    if kind == "nan":
        arrays["a"][0, 0] = np.nan
    elif kind == "inf":
        arrays["b"][1] = np.inf
    elif kind == "shape":
        arrays["a"] = arrays["a"].reshape(4, 3)
    elif kind == "dtype":
        arrays["b"] = arrays["b"].astype(np.float64)
    elif kind == "missing":
        del arrays["b"]
    elif kind == "extra":
        arrays["c"] = np.zeros(1, np.float32)
    elif kind == "norm":
        arrays["a"] = arrays["a"] + np.float32(100.0)
    elif kind == "samples":
        n = 0
    elif kind == "loss":
        loss = math.nan
    elif kind == "list":
        arrays["b"] = arrays["b"].tolist()  # type: ignore[assignment]
    update = ClientUpdate(client_id=0, arrays=arrays, num_samples=n, loss=loss)
    result = validate_update(update, ref, max_norm=10.0)
    assert result is not None and reason in result


def test_validate_update_norm_bound_is_inclusive(rng: np.random.Generator) -> None:
    """The norm bound applies to the delta from the reference, not the parameters."""
    ref = _arrays(rng, scale=100.0)
    arrays = {k: v.copy() for k, v in ref.items()}
    arrays["b"][0] += np.float32(3.0)
    assert validate_update(_update(arrays), ref, max_norm=3.0) is None
    assert validate_update(_update(arrays), ref, max_norm=2.9) is not None


def test_clip_delta_scales_to_bound(rng: np.random.Generator) -> None:
    """A delta above C is scaled to norm C, one below is untouched."""
    delta = _arrays(rng, scale=10.0)
    norm = arrays_norm(delta)
    clipped, before = clip_delta(delta, 1.0)
    assert before == pytest.approx(norm)
    assert arrays_norm(clipped) == pytest.approx(1.0)
    np.testing.assert_allclose(clipped["a"], delta["a"].astype(np.float64) / norm, rtol=1e-12)
    small, _ = clip_delta(delta, 10 * norm)
    np.testing.assert_array_equal(small["a"], delta["a"].astype(np.float64))


def test_dp_fedavg_without_noise_is_mean_of_clipped_deltas(rng: np.random.Generator) -> None:
    """sigma = 0: new = ref + mean_k clip(delta_k, C), equal weights."""
    ref = _arrays(rng)
    updates = [_update(_arrays(rng), n=5 * (k + 1), cid=k) for k in range(3)]
    clip = 0.5
    result = dp_fedavg(updates, ref, clip=clip, noise_multiplier=0.0, rng=np.random.default_rng(0))
    assert result.noise_std == 0.0
    assert result.clipped == 3
    for name in ref:
        deltas = []
        for u in updates:
            d = {k: u.arrays[k].astype(np.float64) - ref[k] for k in ref}
            scale = min(1.0, clip / arrays_norm(d))
            deltas.append(d[name] * scale)
        expected = (ref[name] + np.mean(deltas, axis=0)).astype(np.float32)
        np.testing.assert_allclose(result.arrays[name], expected, rtol=1e-6, atol=1e-7)


def test_dp_fedavg_noise_std_and_seed(rng: np.random.Generator) -> None:
    """Noise has std sigma*C/n, is reproducible with the seed and differs across seeds."""
    ref = {"w": np.zeros(20000, np.float32)}
    updates = [_update({"w": np.zeros(20000, np.float32)}, cid=k) for k in range(4)]
    clip, sigma = 2.0, 1.5
    r1 = dp_fedavg(updates, ref, clip=clip, noise_multiplier=sigma, rng=np.random.default_rng(7))
    r2 = dp_fedavg(updates, ref, clip=clip, noise_multiplier=sigma, rng=np.random.default_rng(7))
    r3 = dp_fedavg(updates, ref, clip=clip, noise_multiplier=sigma, rng=np.random.default_rng(8))
    assert r1.noise_std == pytest.approx(sigma * clip / 4)
    assert float(np.std(r1.arrays["w"])) == pytest.approx(sigma * clip / 4, rel=0.03)
    assert abs(float(np.mean(r1.arrays["w"]))) < 0.02
    np.testing.assert_array_equal(r1.arrays["w"], r2.arrays["w"])
    assert not np.array_equal(r1.arrays["w"], r3.arrays["w"])


@pytest.mark.parametrize(("clip", "sigma"), [(0.0, 1.0), (-1.0, 0.0), (1.0, -0.5)])
def test_dp_fedavg_rejects_bad_settings(
    rng: np.random.Generator, clip: float, sigma: float
) -> None:
    """Non-positive C or negative sigma are input errors."""
    ref = _arrays(rng)
    with pytest.raises(QFedInputError):
        dp_fedavg([_update(ref)], ref, clip=clip, noise_multiplier=sigma, rng=rng)


def test_serialized_size_is_npy_bytes(rng: np.random.Generator) -> None:
    """Size = names + np.save bytes per array (Flower's ArrayRecord payload)."""
    arrays = _arrays(rng)
    expected = 0
    for name, value in arrays.items():
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        expected += len(name) + len(buf.getvalue())
    assert serialized_size(arrays) == expected


def test_serialized_size_ratio_qt_vs_classical() -> None:
    """QT sends about 1,497/6,690 of the classical model's bytes (plus per-array headers)."""
    qt = serialized_size(get_parameters(build_model(TrainConfig(model="qt"))))
    cnn = serialized_size(get_parameters(build_model(TrainConfig(model="classical"))))
    assert cnn > 6690 * 4 and qt > 1497 * 4
    assert qt / cnn == pytest.approx(1497 / 6690, abs=0.04)


def test_sample_clients_seeded_and_sized() -> None:
    """Sampling is reproducible per (seed, round), sorted, at least min_clients."""
    a = sample_clients(10, fraction=0.3, min_clients=1, seed=3, server_round=5)
    assert a == sample_clients(10, fraction=0.3, min_clients=1, seed=3, server_round=5)
    assert len(a) == 3 and a == sorted(a)
    assert len(sample_clients(10, fraction=0.1, min_clients=4, seed=3, server_round=1)) == 4
    assert sample_clients(4, fraction=1.0, min_clients=1, seed=0, server_round=1) == [0, 1, 2, 3]
    rounds = {
        tuple(sample_clients(10, fraction=0.5, min_clients=1, seed=0, server_round=r))
        for r in range(1, 6)
    }
    assert len(rounds) > 1


def test_derive_seed_streams_differ() -> None:
    """Different parts give different seeds; the same parts the same seed."""
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
    assert len({derive_seed(0, 1, k) for k in range(50)}) == 50
    assert 0 <= derive_seed(2**40, 9) < 2**63


def test_client_fit_trains_and_keeps_inputs() -> None:
    """client_fit returns changed arrays and a state; inputs are not modified."""
    config = TrainConfig(model="classical", local_epochs=2, batch_size=16, lr=1e-3)
    model = TargetCNN()
    global_arrays = get_parameters(model)
    frozen = {k: v.copy() for k, v in global_arrays.items()}
    update, state = client_fit(model, global_arrays, _data(), config=config, client_id=3)
    assert update.client_id == 3 and update.num_samples == 64
    assert update.metrics["steps"] == 8
    assert math.isfinite(update.loss)
    assert any(not np.array_equal(update.arrays[k], frozen[k]) for k in frozen)
    for k in frozen:
        np.testing.assert_array_equal(global_arrays[k], frozen[k])
    assert state.fits == 1 and state.optimizer["state"]
    snapshot = state.to_dict()
    client_fit(TargetCNN(), global_arrays, _data(), config=config, client_id=3, state=state)
    for key, value in state.optimizer["state"][0].items():
        assert torch.equal(value, snapshot["optimizer"]["state"][0][key])


def test_client_fit_state_continues_like_one_optimizer() -> None:
    """Two fits chained through ClientState equal one optimizer trained continuously."""
    config = TrainConfig(model="classical", local_epochs=1, batch_size=16, lr=1e-3)
    data = _data()
    torch.manual_seed(0)
    start = get_parameters(TargetCNN())
    u1, s1 = client_fit(TargetCNN(), start, data, config=config, client_id=0)
    u2, s2 = client_fit(TargetCNN(), u1.arrays, data, config=config, client_id=0, state=s1)
    config2 = TrainConfig(model="classical", local_epochs=2, batch_size=16, lr=1e-3)
    u12, s12 = client_fit(TargetCNN(), start, data, config=config2, client_id=0)
    for k in start:
        np.testing.assert_array_equal(u2.arrays[k], u12.arrays[k])
    assert torch.equal(s2.generator, s12.generator)


@pytest.mark.parametrize(("scope", "halved"), [("client", True), ("round", False)])
def test_plateau_scope_decides_whether_a_round_starts_fresh(scope: str, halved: bool) -> None:
    """A tracker whose best loss is unbeatable halves the lr at once, unless scope is "round"."""
    config = TrainConfig(
        model="classical",
        local_epochs=1,
        batch_size=16,
        lr=1e-3,
        plateau_patience=1,
        plateau_scope=scope,
    )
    start = get_parameters(TargetCNN())
    _, state = client_fit(TargetCNN(), start, _data(), config=config, client_id=0)
    # As after rounds that ended with a lower local loss than the aggregated model will have.
    state.scheduler.update(best=-1.0, num_bad_epochs=1)
    update, new_state = client_fit(
        TargetCNN(), start, _data(), config=config, client_id=0, state=state
    )
    assert update.metrics["lr"] == pytest.approx(5e-4 if halved else 1e-3)
    assert new_state.scheduler["best"] == (-1.0 if halved else pytest.approx(update.loss))


def test_plateau_scope_is_checked() -> None:
    """An unknown plateau_scope is a one-line config error naming the allowed values."""
    from qfed_qiskit.config import build_config
    from qfed_qiskit.exceptions import ConfigError

    with pytest.raises(ConfigError, match=r"plateau_scope='epoch'.*client, round"):
        build_config({"plateau-scope": "epoch"})


def test_client_state_bytes_roundtrip() -> None:
    """ClientState survives to_bytes/from_bytes (weights_only load)."""
    config = TrainConfig(model="classical", local_epochs=1, batch_size=32)
    _, state = client_fit(
        TargetCNN(), get_parameters(TargetCNN()), _data(), config=config, client_id=0
    )
    back = ClientState.from_bytes(state.to_bytes())
    assert back.fits == state.fits
    assert torch.equal(back.generator, state.generator)
    assert back.scheduler == state.scheduler
    assert torch.equal(
        back.optimizer["state"][0]["exp_avg"], state.optimizer["state"][0]["exp_avg"]
    )


def test_client_fit_should_stop_cancels() -> None:
    """should_stop() == True stops the client with ClientCancelledError."""
    config = TrainConfig(model="classical", local_epochs=1, batch_size=16)
    with pytest.raises(ClientCancelledError):
        client_fit(
            TargetCNN(),
            get_parameters(TargetCNN()),
            _data(),
            config=config,
            client_id=0,
            should_stop=lambda: True,
        )
