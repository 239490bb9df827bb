"""Backend and noise-model profiles: shipped TOML loads, bad TOML fails in one line, engines run."""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from qfed_qiskit.circuits import qt_ansatz
from qfed_qiskit.config import TrainConfig
from qfed_qiskit.exceptions import ConfigError, CredentialsError, QFedInputError
from qfed_qiskit.profiles import (
    BACKEND_KINDS,
    NOISE_KINDS,
    BackendProfile,
    ProfileEngineFactory,
    ProfileWarning,
    check_budget,
    circuits_per_step,
    describe_backend,
    engine_factory_for,
    estimate_cost,
    format_cost,
    list_backend_profiles,
    list_noise_profiles,
    load_backend_profile,
    load_noise_profile,
    profile_dirs,
    training_steps,
)
from qfed_qiskit.profiles.schema import AER_METHODS, GRADIENTS, RUNTIME_MODES

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_BACKENDS = sorted(p.stem for p in (ROOT / "backends").glob("*.toml"))
SHIPPED_NOISE = sorted(p.stem for p in (ROOT / "noise_models").glob("*.toml"))


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def _profile(tmp_path: Path, name: str, **values: Any) -> BackendProfile:
    """A backend profile written to ``tmp_path`` from keyword values, then loaded."""
    lines = ["schema = 1"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return load_backend_profile(_write(tmp_path, name, "\n".join(lines) + "\n"))


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No IBM environment variables and no saved account."""
    from qiskit_ibm_runtime.accounts import AccountManager
    from qiskit_ibm_runtime.accounts.exceptions import AccountNotFoundError

    from qfed_qiskit.quantum import ibm

    for name in (ibm.TOKEN_ENV, ibm.INSTANCE_ENV, ibm.CHANNEL_ENV):
        monkeypatch.delenv(name, raising=False)

    def missing(*_: Any, **__: Any) -> Any:
        raise AccountNotFoundError("Unable to find account.")

    monkeypatch.setattr(AccountManager, "get", staticmethod(missing))


# --------------------------------------------------------------------------------------------
# Shipped profiles
# --------------------------------------------------------------------------------------------


def test_schema_constants_match_the_engines() -> None:
    """The schema's choices are the ones the engines and samplers accept."""
    from qfed_qiskit.engines.gradients import GRADIENT_METHODS
    from qfed_qiskit.quantum import exact_aer, ibm

    assert GRADIENTS == GRADIENT_METHODS
    assert AER_METHODS == exact_aer.AER_METHODS
    assert RUNTIME_MODES == ibm.RUNTIME_MODES


def test_required_profiles_are_shipped() -> None:
    """The issue's profiles exist: exact, Aer ideal/noisy, two fake devices, IBM, noise presets."""
    assert {"statevector", "density-matrix", "aer-ideal", "aer-noisy", "ibm-runtime"} <= set(
        SHIPPED_BACKENDS
    )
    kinds = [load_backend_profile(name).kind for name in SHIPPED_BACKENDS]
    assert kinds.count("fake-device") >= 2
    assert {"depolarizing-1e-3", "depolarizing-1e-2", "from-backend"} <= set(SHIPPED_NOISE)
    assert load_backend_profile("aer-ideal").shots == 4096


@pytest.mark.parametrize("name", SHIPPED_BACKENDS)
def test_shipped_backend_profile_loads(name: str) -> None:
    """Every backends/*.toml loads by name and by path, without warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProfileWarning)
        by_name = load_backend_profile(name)
        by_path = load_backend_profile(ROOT / "backends" / f"{name}.toml")
    assert by_name == by_path
    assert by_name.name == name and by_name.kind in BACKEND_KINDS and by_name.schema == 1
    assert by_name.description and "\n" not in by_name.description
    json.dumps(by_name.to_dict())
    if by_name.noise is not None:
        assert by_name.noise_profile is not None and by_name.noise_profile.name == by_name.noise


@pytest.mark.parametrize("name", SHIPPED_NOISE)
def test_shipped_noise_profile_loads(name: str) -> None:
    """Every noise_models/*.toml loads by name, without warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProfileWarning)
        profile = load_noise_profile(name)
    assert profile.name == name and profile.kind in NOISE_KINDS and profile.description
    json.dumps(profile.to_dict())


def test_shipped_noise_presets_values() -> None:
    """The depolarizing presets: p1 from the name, p2 and readout ten times larger."""
    for name, p1 in (("depolarizing-1e-3", 1e-3), ("depolarizing-1e-2", 1e-2)):
        profile = load_noise_profile(name)
        assert (profile.p1, profile.p2, profile.readout) == pytest.approx((p1, 10 * p1, 10 * p1))
    assert load_noise_profile("from-backend").backend == "fake_torino"


def test_profiles_found_in_checkout() -> None:
    """In a source checkout the top-level folders are searched first."""
    assert profile_dirs("backends")[0] == ROOT / "backends"
    assert profile_dirs("noise_models")[0] == ROOT / "noise_models"
    assert [p.name for p in list_backend_profiles()] == SHIPPED_BACKENDS
    assert [p.name for p in list_noise_profiles()] == SHIPPED_NOISE


# --------------------------------------------------------------------------------------------
# Bad profiles: one line naming file, key, value and allowed values
# --------------------------------------------------------------------------------------------

BAD_BACKENDS = [
    # (id, toml body without schema, key fragment, allowed-values fragment)
    ("unknown-key", 'kind = "aer"\nshot = 10', "'shot'", "allowed for kind 'aer'"),
    ("wrong-type", 'kind = "aer"\nshots = "many"', "shots='many'", "an integer >= 0"),
    ("bool-for-int", 'kind = "aer"\nshots = true', "shots=True", "an integer >= 0"),
    ("negative-shots", 'kind = "aer"\nshots = -1', "shots=-1", "an integer >= 0"),
    (
        "opt-level",
        'kind = "fake-device"\ndevice = "fake_manila"\noptimization_level = 4',
        "optimization_level=4",
        "0..3",
    ),
    ("unknown-kind", 'kind = "gpu"', "kind='gpu'", "statevector, density-matrix, aer"),
    ("unknown-noise", 'kind = "aer"\nnoise = "nope"', "noise='nope'", "depolarizing-1e-3"),
    ("unknown-gradient", 'kind = "aer"\ngradient = "adjoint"', "gradient='adjoint'", "spsa"),
    ("unknown-method", 'kind = "aer"\nmethod = "mps"', "method='mps'", "density_matrix"),
    (
        "unknown-layout",
        'kind = "fake-device"\ndevice = "fake_manila"\nlayout = "ring"',
        "layout='ring'",
        "line",
    ),
    (
        "unknown-device",
        'kind = "fake-device"\ndevice = "fake_nowhere"',
        "device='fake_nowhere'",
        "fake_torino",
    ),
    ("missing-device", 'kind = "fake-device"', "device missing", "a device name"),
    ("ibm-zero-shots", 'kind = "ibm-runtime"\ndevice = "least-busy"\nshots = 0', "shots=0", ">= 1"),
    (
        "ibm-mode",
        'kind = "ibm-runtime"\ndevice = "ibm_x"\nmode = "interactive"',
        "mode='interactive'",
        "job, batch, session",
    ),
    (
        "ibm-twirling",
        'kind = "ibm-runtime"\ndevice = "ibm_x"\ntwirling = "yes"',
        "twirling='yes'",
        "true or false",
    ),
    (
        "ibm-budget",
        'kind = "ibm-runtime"\ndevice = "ibm_x"\nmax_shots_budget = -5',
        "max_shots_budget=-5",
        ">= 0",
    ),
    ("spsa-epsilon", 'kind = "aer"\nspsa_epsilon = 0', "spsa_epsilon=0", "> 0"),
    (
        "dm-from-backend",
        'kind = "density-matrix"\nnoise = "from-backend"',
        "noise='from-backend'",
        "depolarizing",
    ),
    ("missing-kind", "shots = 1", "kind missing", "statevector"),
    ("name-mismatch", 'kind = "aer"\nname = "other"', "name='other'", "the file name 'bad'"),
]


@pytest.mark.parametrize(
    ("body", "key", "allowed"), [b[1:] for b in BAD_BACKENDS], ids=[b[0] for b in BAD_BACKENDS]
)
def test_bad_backend_profile_one_line_error(
    tmp_path: Path, body: str, key: str, allowed: str
) -> None:
    """A bad backend profile fails at load time: one line with file, key, value, allowed values."""
    path = _write(tmp_path, "bad", "schema = 1\n" + body + "\n")
    with pytest.raises(ConfigError) as info:
        load_backend_profile(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert key in message and allowed in message


BAD_NOISE = [
    ("p1-range", 'kind = "depolarizing"\np1 = 1.5', "p1=1.5", "[0, 1]"),
    ("p2-type", 'kind = "depolarizing"\np2 = "high"', "p2='high'", "[0, 1]"),
    ("unknown-key", 'kind = "depolarizing"\np3 = 0.1', "'p3'", "p1, p2, readout"),
    ("unknown-kind", 'kind = "thermal"', "kind='thermal'", "depolarizing, from-backend"),
    ("missing-backend", 'kind = "from-backend"', "backend missing", "fake device"),
    (
        "unknown-backend",
        'kind = "from-backend"\nbackend = "fake_nowhere"',
        "backend='fake_nowhere'",
        "fake_torino",
    ),
]


@pytest.mark.parametrize(
    ("body", "key", "allowed"), [b[1:] for b in BAD_NOISE], ids=[b[0] for b in BAD_NOISE]
)
def test_bad_noise_profile_one_line_error(
    tmp_path: Path, body: str, key: str, allowed: str
) -> None:
    """A bad noise profile fails at load time, directly or through the backend naming it."""
    noise = _write(tmp_path, "noisy", "schema = 1\n" + body + "\n")
    for load in (
        lambda: load_noise_profile(noise),
        lambda: load_backend_profile(
            _write(tmp_path, "b", 'schema = 1\nkind = "aer"\nnoise = "noisy.toml"\n')
        ),
    ):
        with pytest.raises(ConfigError) as info:
            load()
        message = str(info.value)
        assert "\n" not in message and message.startswith(str(noise))
        assert key in message and allowed in message


def test_all_problems_reported_together(tmp_path: Path) -> None:
    """Unknown keys, wrong types and bad values are collected into one message."""
    path = _write(tmp_path, "many", 'kind = "aer"\nshots = -3\ngradient = 1\ncolour = "red"\n')
    with pytest.raises(ConfigError) as info:
        load_backend_profile(path)
    message = str(info.value)
    assert "\n" not in message
    for fragment in ("schema missing", "shots=-3", "gradient=1", "unknown key 'colour'"):
        assert fragment in message


def test_invalid_toml_and_unknown_names(tmp_path: Path) -> None:
    """Bad syntax, unknown names and missing files are one-line ConfigErrors too."""
    broken = _write(tmp_path, "broken", "kind = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_backend_profile(broken)
    with pytest.raises(ConfigError, match=r"unknown backend profile.*aer-ideal.*statevector"):
        load_backend_profile("no-such-backend")
    with pytest.raises(ConfigError, match="file not found"):
        load_backend_profile(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"unknown noise model profile.*depolarizing-1e-3"):
        load_noise_profile("no-such-noise")


def test_ignored_key_warns(tmp_path: Path) -> None:
    """A key the kind does not use is ignored with a ProfileWarning."""
    path = _write(tmp_path, "sv", 'schema = 1\nkind = "statevector"\nmethod = "automatic"\n')
    with pytest.warns(ProfileWarning, match="'method' is not used by kind 'statevector'"):
        profile = load_backend_profile(path)
    assert profile.kind == "statevector" and profile.exact


def test_noise_aware_and_shot_aware_profiles_build_their_engines() -> None:
    """trajectories: Pauli trajectories on the exact engine; statevector-shots: shot-aware."""
    from qfed_qiskit.engines.trajectories import PauliTrajectoryEngine, ShotNoiseEngine

    noisy = load_backend_profile("trajectories")
    assert noisy.kind == "statevector" and noisy.trajectories == 4 and not noisy.exact
    shots = load_backend_profile("statevector-shots")
    assert shots.shots == 4096 and not shots.exact and not shots.uses_sampler
    circuit = qt_ansatz(3, 1)
    factory = engine_factory_for(noisy, config=TrainConfig(chunk_size=1024, blocks=1))
    assert factory is not None
    engine = factory(circuit)
    assert isinstance(engine, PauliTrajectoryEngine) and engine.noise.p2 == 1e-2
    shot_factory = engine_factory_for(shots)
    assert shot_factory is not None
    shot_engine = shot_factory(circuit)
    assert isinstance(shot_engine, ShotNoiseEngine) and shot_engine.shots == 4096
    probs = shot_engine(torch.zeros(circuit.num_parameters))
    assert float(probs.sum()) == pytest.approx(1.0)
    assert engine_factory_for("statevector") is None  # the plain default engine


def test_noise_path_relative_to_backend_file(tmp_path: Path) -> None:
    """A backend's noise path is looked up next to the backend file first; hyphenated keys work."""
    _write(tmp_path, "mine", 'schema = 1\nkind = "depolarizing"\np1 = 0.002\np2 = 0.02\n')
    profile = load_backend_profile(
        _write(tmp_path, "b", 'schema = 1\nkind = "aer"\nnoise = "mine.toml"\nspsa-batch = 3\n')
    )
    assert profile.noise_profile is not None and profile.noise_profile.p1 == 0.002
    assert profile.noise_profile.readout == 0.0 and profile.spsa_batch == 3


def test_fake_device_names_are_normalised(tmp_path: Path) -> None:
    """Device names accept FakeManilaV2-style spellings and are stored as fake_manila."""
    profile = _profile(tmp_path, "fm", kind="fake-device", device="FakeManilaV2")
    assert profile.device == "fake_manila" and profile.layout == "line"
    ibm = _profile(tmp_path, "ib", kind="ibm-runtime", device="ibm_torino")
    assert ibm.layout == "auto" and ibm.mode == "batch"


# --------------------------------------------------------------------------------------------
# Engine factories
# --------------------------------------------------------------------------------------------


def _probs_and_grad(engine: Any, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = theta.clone().requires_grad_(True)
    probs = engine(x)
    weights = torch.linspace(-1.0, 1.0, probs.shape[0], dtype=probs.dtype)
    (probs * weights).sum().backward()
    assert x.grad is not None
    return probs.detach(), x.grad.detach()


def test_statevector_factory_is_default_engine() -> None:
    """statevector returns None, so build_model uses the exact engine in config.dtype."""
    from qfed_qiskit.engines.statevector import StatevectorEngine
    from qfed_qiskit.training.builders import build_model

    config = TrainConfig(backend="statevector", dtype="float64", chunk_size=1024, blocks=1)
    assert engine_factory_for("statevector", config=config) is None
    model: Any = build_model(config, engine_factory=None)
    assert isinstance(model.engine, StatevectorEngine) and model.engine.dtype == torch.float64


def test_density_matrix_factory_runs_with_preset_noise() -> None:
    """density-matrix builds the torch engine with depolarizing-1e-3 in the run's dtype."""
    from qfed_qiskit.engines.density_matrix import DensityMatrixEngine, DepolarizingNoise

    config = TrainConfig(dtype="float64", chunk_size=1024, blocks=1)
    factory = engine_factory_for("density-matrix", config=config)
    assert isinstance(factory, ProfileEngineFactory)
    circuit = qt_ansatz(3, 1)
    engine = factory(circuit)
    assert isinstance(engine, DensityMatrixEngine)
    assert engine.noise == DepolarizingNoise(p1=1e-3, p2=1e-2, readout=1e-2)
    theta = torch.linspace(-2.0, 2.0, circuit.num_parameters, dtype=torch.float64)
    probs, grad = _probs_and_grad(engine, theta)
    assert probs.dtype == torch.float64 and abs(float(probs.sum()) - 1.0) < 1e-12
    assert torch.isfinite(grad).all()


def test_density_matrix_rejects_large_circuits_before_building() -> None:
    """The paper config (13 qubits) is refused by density-matrix when the factory is made."""
    with pytest.raises(QFedInputError, match=r"at most 10 qubits.*13"):
        engine_factory_for("density-matrix", config=TrainConfig())


@pytest.mark.aer
def test_aer_ideal_factory_builds_engine_once_per_run() -> None:
    """aer-ideal: SamplerQNN engines share one sampler; job ids land in the factory."""
    from qfed_qiskit.engines.qiskit_sampler import QiskitSamplerEngine

    factory = engine_factory_for("aer-ideal", config=TrainConfig(seed=3))
    assert isinstance(factory, ProfileEngineFactory)
    circuit = qt_ansatz(2, 1)
    first, second = factory(circuit), factory(qt_ansatz(2, 1))
    assert isinstance(first, QiskitSamplerEngine) and first.shots == 4096
    assert first.sampler.sampler is second.sampler.sampler  # built once
    probs, grad = _probs_and_grad(first, torch.full((circuit.num_parameters,), 0.3))
    assert probs.shape == (4,) and abs(float(probs.sum()) - 1.0) < 1e-6
    assert torch.isfinite(grad).all()
    assert len(factory.job_ids) == 2 and factory.describe()["jobs"] == 2


@pytest.mark.aer
def test_aer_exact_profile_matches_statevector(rng: np.random.Generator) -> None:
    """aer-ideal-exact agrees with the exact torch engine to 1e-8 (probabilities and gradient)."""
    from qfed_qiskit.engines.statevector import StatevectorEngine

    circuit = qt_ansatz(3, 1)
    theta = torch.from_numpy(rng.uniform(-np.pi, np.pi, circuit.num_parameters))
    factory = engine_factory_for("aer-ideal-exact", config=TrainConfig(dtype="float64"))
    assert factory is not None
    probs, grad = _probs_and_grad(factory(circuit), theta)
    ref_probs, ref_grad = _probs_and_grad(
        StatevectorEngine(circuit=circuit, dtype=torch.float64), theta
    )
    torch.testing.assert_close(probs, ref_probs, atol=1e-8, rtol=0)
    torch.testing.assert_close(grad, ref_grad, atol=1e-8, rtol=0)


@pytest.mark.aer
def test_aer_noise_profile_matches_density_matrix_profile(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """An exact Aer profile with depolarizing-1e-3 equals the density-matrix profile to 1e-8."""
    circuit = qt_ansatz(3, 1)
    theta = torch.from_numpy(rng.uniform(-np.pi, np.pi, circuit.num_parameters))
    aer = _profile(tmp_path, "aer-exact-noisy", kind="aer", shots=0, noise="depolarizing-1e-3")
    config = TrainConfig(dtype="float64", chunk_size=1024, blocks=1)
    aer_factory = engine_factory_for(aer, config=config)
    dm_factory = engine_factory_for("density-matrix", config=config)
    assert aer_factory is not None and dm_factory is not None
    probs, grad = _probs_and_grad(aer_factory(circuit), theta)
    ref_probs, ref_grad = _probs_and_grad(dm_factory(circuit), theta)
    torch.testing.assert_close(probs, ref_probs, atol=1e-8, rtol=0)
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=0)


@pytest.mark.aer
def test_aer_noisy_factory_runs() -> None:
    """aer-noisy trains a step's worth of forward and backward with shots."""
    factory = engine_factory_for("aer-noisy", config=TrainConfig(seed=1))
    assert factory is not None
    engine: Any = factory(qt_ansatz(2, 1))
    probs, grad = _probs_and_grad(engine, torch.zeros(engine.num_parameters))
    assert abs(float(probs.sum()) - 1.0) < 1e-6 and torch.isfinite(grad).all()
    assert engine.describe()["sampler"] == "ExactAerSampler"  # noisy: exact density + sampling


@pytest.mark.aer
@pytest.mark.ibm
def test_fake_device_factory_transpiles_once_on_a_line(tmp_path: Path) -> None:
    """A fake-device profile: ISA on a chain of n device qubits, transpiled once per engine."""
    from qfed_qiskit.quantum.aer_circuits import active_qubits, final_measurements

    profile = _profile(tmp_path, "lagos", kind="fake-device", device="fake_lagos", shots=512)
    factory = engine_factory_for(profile, config=TrainConfig(seed=2))
    assert factory is not None
    circuit = qt_ansatz(3, 1)
    engine: Any = factory(circuit)
    probs, grad = _probs_and_grad(engine, torch.full((circuit.num_parameters,), 0.2))
    assert abs(float(probs.sum()) - 1.0) < 1e-6 and torch.isfinite(grad).all()
    transpiler = engine.sampler.transpiler
    assert transpiler.transpile_count == 1
    assert transpiler.pass_manager is factory.pass_manager(3)  # one pass manager per run
    isa = transpiler(engine.measured_circuit)
    body, _, order = final_measurements(isa)
    assert len(active_qubits(body, order)) == 3
    assert factory.describe()["device"] == "fake_lagos"


@pytest.mark.aer
@pytest.mark.ibm
def test_aer_with_device_noise_transpiles_to_that_device(tmp_path: Path) -> None:
    """An aer profile with a from-backend noise model runs ISA circuits of that device."""
    _write(tmp_path, "manila-noise", 'schema = 1\nkind = "from-backend"\nbackend = "fake_manila"\n')
    profile = _profile(tmp_path, "aer-dev", kind="aer", shots=256, noise="manila-noise.toml")
    assert profile.device_like
    factory = engine_factory_for(profile, config=TrainConfig(seed=5))
    assert factory is not None
    circuit = qt_ansatz(2, 1)
    engine: Any = factory(circuit)
    probs, grad = _probs_and_grad(engine, torch.zeros(circuit.num_parameters))
    assert abs(float(probs.sum()) - 1.0) < 1e-6 and torch.isfinite(grad).all()
    assert engine.sampler.transpiler is not None and factory.describe()["device"] == "fake_manila"
    info = describe_backend(profile, circuit)
    assert info["isa_depth"] > circuit.depth()


@pytest.mark.aer
@pytest.mark.ibm
@pytest.mark.parametrize(
    "name", [pytest.param("fake-torino", marks=pytest.mark.slow), "fake-brisbane"]
)
def test_shipped_fake_device_profiles_run(name: str) -> None:
    """The shipped fake devices (device noise model of 127+ qubits) run a forward and backward."""
    factory = engine_factory_for(name, config=TrainConfig(seed=0))
    assert factory is not None
    engine: Any = factory(qt_ansatz(3, 1))
    probs, grad = _probs_and_grad(engine, torch.zeros(engine.num_parameters))
    assert abs(float(probs.sum()) - 1.0) < 1e-6 and torch.isfinite(grad).all()


def test_ibm_runtime_without_credentials_fails_at_factory(no_credentials: None) -> None:
    """ibm-runtime on hardware checks credentials when the factory is made (before any data)."""
    with pytest.raises(CredentialsError, match="QISKIT_IBM_TOKEN") as info:
        engine_factory_for("ibm-runtime", config=TrainConfig(chunk_size=64, blocks=1))
    assert "\n" not in str(info.value)


@pytest.mark.aer
@pytest.mark.ibm
def test_ibm_runtime_local_testing_mode(tmp_path: Path, no_credentials: None) -> None:
    """ibm-runtime with a fake device runs Runtime's sampler locally: no credentials needed."""
    profile = _profile(
        tmp_path, "local", kind="ibm-runtime", device="fake_manila", shots=128, mode="batch"
    )
    factory = engine_factory_for(profile, config=TrainConfig(seed=4))
    assert factory is not None
    engine: Any = factory(qt_ansatz(2, 1))
    probs, grad = _probs_and_grad(engine, torch.zeros(engine.num_parameters))
    factory.close()
    factory.close()  # idempotent
    assert abs(float(probs.sum()) - 1.0) < 1e-6 and torch.isfinite(grad).all()
    assert len(factory.job_ids) == 2


def test_ibm_least_busy_uses_the_service() -> None:
    """device = "least-busy" asks the service for an operational device with enough qubits."""
    asked: dict[str, Any] = {}

    class Backend:
        name = "ibm_quiet"

    class Service:
        def least_busy(self, **kwargs: Any) -> Backend:
            asked.update(kwargs)
            return Backend()

    factory = ProfileEngineFactory(load_backend_profile("ibm-runtime"), service=Service())
    assert factory._ibm_backend_name(7) == "ibm_quiet"
    assert asked == {"min_num_qubits": 7, "operational": True, "simulator": False}


# --------------------------------------------------------------------------------------------
# What a step submits, and what a run costs
# --------------------------------------------------------------------------------------------


def test_describe_exact_backends_submit_nothing() -> None:
    """Torch engines: 0 circuits and shots per step; ISA keys are the logical circuit's size."""
    circuit = qt_ansatz(3, 1)
    for name in ("statevector", "density-matrix"):
        info = describe_backend(name, circuit)
        assert info["circuits_per_step"] == 0 and info["shots_per_step"] == 0 and info["exact"]
        assert info["isa_depth"] > 0 and info["isa_two_qubit_gates"] == 3


def test_circuits_per_step_by_gradient(tmp_path: Path) -> None:
    """1 forward + shift rows (2 per U angle and CU phase, 4 per CU theta), or 2 per SPSA batch."""
    circuit = qt_ansatz(3, 1)  # 3 U (9 angles) + 3 CU (3 thetas, 6 phases)
    info = describe_backend("aer-ideal", circuit)
    assert info["circuits_per_step"] == 1 + 2 * 9 + 4 * 3 + 2 * 6
    assert info["shots_per_step"] == info["circuits_per_step"] * 4096
    spsa = _profile(tmp_path, "spsa", kind="aer", gradient="spsa", spsa_batch=3)
    assert circuits_per_step(spsa, circuit) == 7
    exact = describe_backend("aer-ideal-exact", circuit)
    assert exact["shots_per_step"] == 0 and exact["circuits_per_step"] == 43


@pytest.mark.aer
def test_stock_param_shift_count_matches_engine(tmp_path: Path) -> None:
    """The stock gradient's count equals what its engine reports per step."""
    stock = _profile(tmp_path, "stock", kind="aer", gradient="param-shift", shots=0)
    circuit = qt_ansatz(2, 1)
    factory = engine_factory_for(stock)
    assert factory is not None
    engine: Any = factory(circuit)
    assert circuits_per_step(stock, circuit) == engine.evaluations_per_step()


@pytest.mark.ibm
def test_describe_fake_device_reports_isa(no_credentials: None) -> None:
    """Device profiles report the ISA circuit; ibm-runtime without credentials has no ISA keys."""
    circuit = qt_ansatz(4, 1)
    info = describe_backend("fake-brisbane", circuit)
    assert info["backend_kind"] == "fake-device"
    assert info["isa_two_qubit_gates"] >= 8 and info["isa_depth"] > circuit.depth()
    ibm = describe_backend("ibm-runtime", circuit)
    assert ibm["isa_depth"] is None and ibm["circuits_per_step"] > 1


def test_training_steps_centralized_and_federated() -> None:
    """Steps per run: epochs x steps, or rounds x clients x local epochs x steps."""
    assert training_steps(TrainConfig(epochs=2, batch_size=128)) == 2 * 469
    assert training_steps(TrainConfig(epochs=3, max_steps_per_epoch=5)) == 15
    fed = TrainConfig(clients=4, rounds=2, local_epochs=3, batch_size=1000, fraction_fit=0.5)
    assert training_steps(fed) == 2 * 2 * 3 * 15


def test_estimate_cost_and_budget() -> None:
    """IBM runs print their cost and need --yes beyond the profile's shot budget."""
    config = TrainConfig(chunk_size=64, blocks=2, epochs=1, max_steps_per_epoch=5)
    cost = estimate_cost("ibm-runtime", None, config)
    per_step = cost["circuits_per_step"]
    assert per_step == 1 + 7 * 6 * 2 + 7 * 8 * 2  # 7 qubits, L = 2
    assert cost["total_circuits"] == 5 * per_step + 1
    assert cost["total_shots"] == cost["total_circuits"] * 4096
    assert cost["total_jobs"] == 5 * 2 + 1
    assert cost["max_shots_budget"] == 5_000_000 and not cost["needs_confirmation"]
    check_budget(cost, yes=False)
    big = estimate_cost("ibm-runtime", None, TrainConfig(chunk_size=64, blocks=2, epochs=1))
    assert big["needs_confirmation"]
    with pytest.raises(QFedInputError, match="pass --yes"):
        check_budget(big, yes=False)
    check_budget(big, yes=True)
    line = format_cost(cost)
    assert f"{cost['total_shots']:,}" in line and "budget 5,000,000" in line
    local = estimate_cost("aer-ideal", None, config)
    assert local["total_shots"] == cost["total_shots"] and not local["needs_confirmation"]
    assert estimate_cost("statevector", None, config)["total_circuits"] == 0


# --------------------------------------------------------------------------------------------
# Device pass managers
# --------------------------------------------------------------------------------------------


def test_rewritten_u_gates_keep_probabilities(rng: np.random.Generator) -> None:
    """The U/CU rewrite used before transpiling changes only the global phase."""
    from qiskit.quantum_info import Statevector

    from qfed_qiskit.quantum.transpile import rewrite_u_gates

    circuit = qt_ansatz(3, 2)
    values = rng.uniform(-np.pi, np.pi, circuit.num_parameters)
    rewritten = rewrite_u_gates(circuit)
    assert set(rewritten.count_ops()) == {"rz", "ry", "cx"}
    expected = Statevector(circuit.assign_parameters(values)).probabilities()
    got = Statevector(rewritten.assign_parameters(values)).probabilities()
    np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.ibm
def test_line_layout_uses_exactly_n_device_qubits() -> None:
    """layout "line": the ISA circuit touches n chained qubits, with the device's gates only."""
    from qfed_qiskit.quantum.aer_circuits import active_qubits, final_measurements
    from qfed_qiskit.quantum.devices import fake_backend
    from qfed_qiskit.quantum.layout import device_line, device_pass_manager

    backend = fake_backend("fake_brisbane")
    chain = device_line(backend, 7)
    assert chain is not None and len(set(chain)) == 7
    edges = {frozenset(e) for e in backend.coupling_map.get_edges()}
    assert all(frozenset(pair) in edges for pair in itertools.pairwise(chain))
    circuit = qt_ansatz(7, 2)
    circuit.measure_all()
    isa = device_pass_manager(backend, layout="line", num_qubits=7, seed=0).run(circuit)
    body, _, order = final_measurements(isa)
    assert sorted(active_qubits(body, order)) == sorted(chain)
    for inst in isa.data:
        if inst.operation.name != "barrier":
            qargs = tuple(isa.find_bit(q).index for q in inst.qubits)
            assert backend.target.instruction_supported(inst.operation.name, qargs)
