"""The embedded runtime end to end: metrics, DP, checkpoint compatibility and resume plumbing.

Faults, failed rounds, interrupts and resume, which every runtime must handle alike, are in
test_federated_runtimes.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from qfed_qiskit.config import TrainConfig, build_config
from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.federated import load_checkpoint, resume_config, run_federated
from qfed_qiskit.federated.core import (
    FedAdam,
    get_parameters,
    sample_clients,
    serialized_size,
)
from qfed_qiskit.training import RunDirectory, build_model

Data = tuple[TensorDataset, TensorDataset]

BASE: dict[str, Any] = {
    "model": "classical",
    "clients": 3,
    "rounds": 3,
    "local_epochs": 2,
    "batch_size": 32,
    "lr": 3e-3,
    "seed": 5,
    "fraction_fit": 0.67,
    "plateau_patience": 1,
}
QT: dict[str, Any] = {"model": "qt", "blocks": 1, "chunk_size": 64, "lr": 1e-2}


def _templates(n: int, seed: int) -> TensorDataset:
    """Images of 10 fixed class templates plus noise: learnable in a few steps."""
    base = torch.Generator().manual_seed(99)
    templates = torch.randn(10, 1, 28, 28, generator=base)
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = templates[labels] + 0.8 * torch.randn(n, 1, 28, 28, generator=g)
    return TensorDataset(images, labels)


@pytest.fixture(scope="module")
def data() -> Data:
    """256 training and 128 test images."""
    return _templates(256, 1), _templates(128, 2)


def _config(out: Path, **overrides: Any) -> TrainConfig:
    return TrainConfig(**{**BASE, **overrides, "out": str(out)})


def _run(config: TrainConfig, data: Data, **kwargs: Any) -> dict[str, Any]:
    assert config.out is not None
    train, test = data
    return run_federated(config, train=train, test=test, run_dir=RunDirectory(config.out), **kwargs)


def _params(run_dir: str | Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(Path(run_dir) / "model.pt", weights_only=True)
    return state


def _assert_same_params(a: str | Path, b: str | Path) -> None:
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for name in pa:
        assert torch.equal(pa[name], pb[name]), name


def _metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    return RunDirectory(run_dir).read_metrics()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, data: Data) -> dict[str, Path]:
    """Uninterrupted 3-round runs (classical and QT) to compare resumed runs against."""
    out = {}
    for name, extra in (("classical", {}), ("qt", QT)):
        path = tmp_path_factory.mktemp(f"ref-{name}")
        _run(_config(path, **extra), data)
        out[name] = path
    return out


@pytest.mark.parametrize("model", ["classical", "qt"])
def test_run_federated_writes_round_metrics_and_summary(
    reference: dict[str, Path], model: str
) -> None:
    """Every round has a metrics line with real byte counts; summary.json has the run keys."""
    run_dir = reference[model]
    config = _config(run_dir, **(QT if model == "qt" else {}))
    lines = _metrics(run_dir)
    assert [r["round"] for r in lines] == [1, 2, 3]
    model_bytes = serialized_size(get_parameters(build_model(config)))
    for r in lines:
        assert r["status"] == "ok"
        assert len(r["clients_sampled"]) == 2 and r["clients_ok"] == 2
        assert r["clients_rejected"] == 0 and r["rejected"] == []
        assert r["bytes_down"] == r["bytes_up"] == 2 * model_bytes
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["train_loss"] > 0 and r["wall_time_s"] > 0
        assert len(r["client_lr"]) == 2
        assert all(0 < lr <= config.learning_rate for lr in r["client_lr"])
    assert [r["clients_sampled"] for r in lines] == [
        sample_clients(3, fraction=0.67, min_clients=1, seed=5, server_round=k) for k in (1, 2, 3)
    ]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rounds"] == 3 and summary["clients"] == 3
    assert summary["bytes_total"] == sum(r["bytes_down"] + r["bytes_up"] for r in lines)
    assert summary["test_accuracy"] == lines[-1]["test_accuracy"]
    assert summary["target_params"] == 6690
    assert summary["steps"] == sum(r["steps"] for r in lines) > 0
    assert summary["dp"]["enabled"] is False
    if model == "qt":
        assert summary["backend"] == "statevector"
        assert summary["trainable_params"] == sum(
            p.numel() for p in build_model(config).parameters()
        )
        assert model_bytes < serialized_size(get_parameters(build_model(_config(run_dir))))
    else:
        assert summary["backend"] is None and summary["trainable_params"] == 6690
        assert lines[-1]["test_accuracy"] > 0.5  # the templates are learnable
    assert (run_dir / "checkpoint.pt").is_file() and (run_dir / "cnn.pt").is_file()
    assert load_checkpoint(run_dir, config=config).round == 3


# ---------------------------------------------------------------------------------------------
# Fault injection
# ---------------------------------------------------------------------------------------------


def test_dp_fedavg_run_reports_noise(tmp_path: Path, data: Data) -> None:
    """--dp-clip/--dp-noise: clipping and noise recorded per round and in the summary."""
    summary = _run(_config(tmp_path, rounds=1, dp_clip=0.5, dp_noise=0.2), data)
    (line,) = _metrics(tmp_path)
    assert line["dp_noise_std"] == pytest.approx(0.2 * 0.5 / 2)
    assert line["dp_clipped"] >= 0
    assert summary["dp"] == {
        "enabled": True,
        "clip": 0.5,
        "noise_multiplier": 0.2,
        "accountant": None,
    }


def test_dp_noise_without_clip_is_refused(tmp_path: Path, data: Data) -> None:
    """Noise without a clipping norm is contradictory."""
    with pytest.raises(QFedInputError, match="dp_clip"):
        _run(_config(tmp_path, dp_noise=1.0), data)


def test_fedadam_step_is_reddi_et_al_algorithm_2() -> None:
    """Two server steps against the formulas, written out (zero moments, no bias correction)."""
    adam = FedAdam(lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3)
    x = {"w": np.array([1.0, -2.0], dtype=np.float32)}
    targets = [np.array([1.5, -2.0]), np.array([1.25, -1.0])]
    m, v, ref = np.zeros(2), np.zeros(2), x["w"].astype(np.float64)
    for target in targets:
        new = adam.step(x, {"w": target.astype(np.float32)})
        delta = target - ref
        m = 0.9 * m + 0.1 * delta
        v = 0.99 * v + 0.01 * delta**2
        ref = (ref + 0.1 * m / (np.sqrt(v) + 1e-3)).astype(np.float32).astype(np.float64)
        assert new["w"].dtype == np.float32
        np.testing.assert_array_equal(new["w"], ref.astype(np.float32))
        x = new
    restored = FedAdam(lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3)
    restored.load_state_dict(adam.state_dict())
    np.testing.assert_array_equal(restored.v["w"], adam.v["w"])


def test_fedadam_run_differs_from_fedavg_and_resumes_bit_identically(
    tmp_path: Path, data: Data
) -> None:
    """server_optimizer='fedadam': another model than FedAvg's; 2 rounds + resume == 3 rounds
    (the moments are in the checkpoint)."""
    fedadam = {"server_optimizer": "fedadam", "server_lr": 3e-2, "fraction_fit": 1.0}
    _run(_config(tmp_path / "avg", fraction_fit=1.0), data)
    _run(_config(tmp_path / "adam", **fedadam), data)
    avg, adam = _params(tmp_path / "avg"), _params(tmp_path / "adam")
    assert any(not torch.equal(avg[k], adam[k]) for k in avg)
    assert "server_optimizer" in load_checkpoint(tmp_path / "adam").server
    _run(_config(tmp_path / "cut", **fedadam, rounds=2), data)
    _run(_config(tmp_path / "cut", **fedadam), data, resume=True)
    _assert_same_params(tmp_path / "cut", tmp_path / "adam")


def test_fedadam_settings_are_checked_together() -> None:
    """FedAdam's knobs need FedAdam, and it does not combine with DP-FedAvg: one line each."""
    with pytest.raises(
        QFedInputError, match=re.escape("server_lr=0.5 needs server_optimizer='fedadam'")
    ):
        build_config({"server_lr": 0.5})
    with pytest.raises(QFedInputError, match="server_optimizer='fedadam' with dp_clip"):
        build_config({"server_optimizer": "fedadam", "dp_clip": 1.0})
    with pytest.raises(
        QFedInputError, match=re.escape("server_beta1=1.0 (expected a number in [0, 1))")
    ):
        build_config({"server_optimizer": "fedadam", "server_beta1": 1.0})


# ---------------------------------------------------------------------------------------------
# Checkpoint and resume
# ---------------------------------------------------------------------------------------------


def test_resume_with_different_config_is_refused(
    tmp_path: Path, data: Data, reference: dict[str, Path]
) -> None:
    """A setting that changes the result cannot change on resume; rounds and paths can."""
    run_dir = reference["classical"]
    with pytest.raises(QFedInputError, match=r"different config.*lr"):
        _run(_config(run_dir, lr=0.5), data, resume=True)
    with pytest.raises(QFedInputError, match=re.escape("lr 0.003 -> 0.5")):
        resume_config(run_dir, {"lr": 0.5})
    with pytest.raises(QFedInputError, match="contradicts"):
        resume_config(run_dir, {"out": str(tmp_path)})
    config = resume_config(run_dir, {"rounds": 5, "lr": None}, file_values={"train": {"seed": 5}})
    assert config.rounds == 5 and config.lr == 3e-3 and config.out == str(run_dir)
    with pytest.raises(QFedInputError, match="no checkpoint"):
        _run(_config(tmp_path), data, resume=True)


def test_checkpoint_from_before_a_new_setting_still_resumes(
    tmp_path: Path, reference: dict[str, Path]
) -> None:
    """A checkpoint whose config lacks a newer setting (here plateau_scope) resumes with its
    default; one naming a setting this version does not know is refused."""
    ckpt_file = reference["classical"] / "checkpoint.pt"
    data = torch.load(ckpt_file, weights_only=True)
    del data["config"]["plateau_scope"]
    data["fingerprint"] = "written-by-an-older-version"
    (tmp_path / "old").mkdir()
    torch.save(data, tmp_path / "old" / "checkpoint.pt")
    config = resume_config(tmp_path / "old")
    assert config.plateau_scope == "client"
    assert load_checkpoint(tmp_path / "old", config=config).round == 3

    data["config"]["setting_from_the_future"] = 1
    (tmp_path / "new").mkdir()
    torch.save(data, tmp_path / "new" / "checkpoint.pt")
    with pytest.raises(QFedInputError, match="different config"):
        load_checkpoint(tmp_path / "new", config=config)


def test_load_run_config_resume_plumbing(tmp_path: Path, reference: dict[str, Path]) -> None:
    """The runner's --resume path reads the checkpoint's config and applies allowed changes."""
    from qfed_qiskit.runner import load_run_config, run_training

    run_dir = reference["classical"]
    toml = tmp_path / "more.toml"
    toml.write_text("[train]\nrounds = 6\n")
    config = load_run_config(toml, {"seed": None}, resume=run_dir)
    assert config.rounds == 6 and config.clients == 3 and config.out == str(run_dir)
    with pytest.raises(QFedInputError, match="seed 5 -> 6"):
        load_run_config(None, {"seed": 6}, resume=run_dir)
    with pytest.raises(QFedInputError, match="federated"):
        run_training(TrainConfig(out=str(tmp_path)), resume=True)
