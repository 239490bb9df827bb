"""TrainConfig: TOML loading, flag overrides and one-line validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from qfed_qiskit.config import TrainConfig, build_config, load_config
from qfed_qiskit.exceptions import ConfigError


def test_defaults_follow_paper() -> None:
    """Adam 1e-4 (QT) / 1e-3 (classical), wd 1e-5, eps 1e-6, batch 128, L = 16."""
    cfg = TrainConfig()
    assert (cfg.learning_rate, cfg.weight_decay, cfg.adam_eps, cfg.batch_size, cfg.blocks) == (
        1e-4,
        1e-5,
        1e-6,
        128,
        16,
    )
    assert TrainConfig(model="classical").learning_rate == 1e-3
    assert not cfg.federated


def test_toml_keys_mirror_flags_and_flags_win(tmp_path: Path) -> None:
    """Flag-style keys load; CLI overrides beat the file; None overrides are ignored."""
    path = tmp_path / "c.toml"
    path.write_text('model = "classical"\nbatch-size = 64\nlr = 0.01\nmax_steps_per_epoch = 3\n')
    cfg = load_config(path, {"batch_size": 32, "lr": None})
    assert cfg.model == "classical"
    assert cfg.batch_size == 32
    assert cfg.lr == 0.01
    assert cfg.max_steps_per_epoch == 3


def test_train_table_is_accepted(tmp_path: Path) -> None:
    """Keys may also live in a [train] table."""
    path = tmp_path / "c.toml"
    path.write_text("[train]\nepochs = 2\n")
    assert load_config(path).epochs == 2


def test_integer_for_float_is_accepted() -> None:
    """lr = 1 is a valid float."""
    assert build_config({"lr": 1}).lr == 1.0


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"epochs": 0}, "epochs=0 (expected an integer >= 1)"),
        ({"epochs": "3"}, "epochs='3' (expected an integer >= 1)"),
        ({"model": "cnn"}, "model='cnn' (expected one of qt, classical, small-cnn)"),
        ({"lr": -1.0}, "lr=-1.0 (expected a number > 0)"),
        ({"fraction_fit": 1.5}, "fraction_fit=1.5"),
        ({"dtype": "float16"}, "dtype='float16'"),
        ({"batch_size": True}, "batch_size=True"),
        ({"clients": 2, "min_clients": 3}, "min_clients=3"),
    ],
)
def test_bad_values_give_one_line(values: dict[str, object], fragment: str) -> None:
    """Each bad value is named with what is allowed, on one line."""
    with pytest.raises(ConfigError) as info:
        build_config(values, source="x.toml")
    message = str(info.value)
    assert fragment in message
    assert message.startswith("x.toml: ")
    assert "\n" not in message


def test_all_problems_reported_together() -> None:
    """Several problems are collected into one message."""
    with pytest.raises(ConfigError) as info:
        build_config({"epochs": 0, "nope": 1, "seed": -1})
    message = str(info.value)
    assert "epochs=0" in message and "'nope'" in message and "seed=-1" in message


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    """A missing file or invalid TOML is a ConfigError naming the file."""
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_config(bad)


def test_fingerprint_ignores_output_location() -> None:
    """The fingerprint changes with what defines the result, not with where it is written."""
    a = TrainConfig(out="a")
    assert a.fingerprint() == TrainConfig(out="b").fingerprint()
    assert a.fingerprint() != TrainConfig(seed=1).fingerprint()


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[1] / "configs").glob("*.toml")), ids=lambda p: p.name
)
def test_shipped_configs_load(path: Path) -> None:
    """Every config in configs/ is valid and writes its runs under runs/."""
    config = load_config(path)
    assert config.out is not None and config.out.startswith("runs/")


def test_train_config_validates_when_constructed() -> None:
    """TrainConfig(...) itself refuses bad or contradictory values (one line)."""
    with pytest.raises(ConfigError, match=r"TrainConfig: epochs=0 \(expected an integer >= 1\)"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"dp_noise=1\.0 needs dp_clip"):
        TrainConfig(dp_noise=1.0)
    with pytest.raises(ConfigError, match="min_clients=3"):
        TrainConfig(clients=2, min_clients=3)


def test_every_field_is_a_declared_setting() -> None:
    """Every TrainConfig field but ``extra`` carries its Setting (kind, default, rule, help)."""
    import dataclasses

    from qfed_qiskit.config import SETTINGS

    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "extra"]
    assert list(SETTINGS) == names
    for name, spec in SETTINGS.items():
        assert spec.name == name and spec.kind in ("int", "float", "str", "bool")
        assert spec.help and spec.rule.expected
        assert spec.problem(spec.default) is None, name  # every default is allowed
        assert getattr(TrainConfig(), name) == spec.default


def test_profile_schema_and_config_share_one_validator() -> None:
    """The same kind of value gets the same message in a run config and in a profile."""
    from qfed_qiskit.profiles.schema import parse_backend_profile

    with pytest.raises(ConfigError) as config_error:
        build_config({"seed": -1})
    with pytest.raises(ConfigError) as profile_error:
        parse_backend_profile({"schema": 1, "kind": "aer", "seed": -1}, source="p.toml")
    assert "seed=-1 (expected an integer >= 0)" in str(config_error.value)
    assert "seed=-1 (expected an integer >= 0)" in str(profile_error.value)


def test_every_setting_is_a_toml_key_with_its_declared_default(tmp_path: Path) -> None:
    """A TOML file that names every setting (flag style) with its default loads to the defaults."""
    from qfed_qiskit.config import SETTINGS

    lines = []
    for spec in SETTINGS.values():
        if spec.default is None:
            continue  # TOML has no null: an unset optional setting is simply left out
        value = spec.default
        text = f'"{value}"' if isinstance(value, str) else str(value).lower()
        lines.append(f"{spec.key} = {text}")
    path = tmp_path / "all.toml"
    path.write_text("\n".join(lines) + "\n")
    assert load_config(path) == TrainConfig()
    assert {line.split(" = ")[0] for line in lines} == {
        s.key for s in SETTINGS.values() if s.default is not None
    }
