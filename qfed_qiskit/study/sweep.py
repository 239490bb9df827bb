"""The noise sweep: train in the same (federated) loop, evaluate every noise level x shots cell.

Modes (``--modes``):

* ``ideal-train``: one model trained on the exact engine, evaluated at every level and shot count;
* ``noise-aware``: one model per level > 0, trained with that level's noise (Pauli trajectories
  on the exact engine, :data:`TRAJECTORIES` per step, at any size: the exact torch density matrix
  takes about 100 ms per step of the chunked 7-qubit L = 16 model here, 8x the trajectories),
  evaluated at its own level and every shot count (its level-0 model is the ideal one);
* ``shot-aware``: one model per finite shot count ``S``, trained with ``S``-shot frequencies in
  the forward pass and the exact gradient (``statevector`` kind with ``shots``), evaluated without
  gate noise at every shot count.

A *level* ``l`` is depolarizing noise with ``p1 = l`` after single-qubit gates, ``p2 = 10 l``
after two-qubit gates and readout flips of ``10 l`` (the convention of
``noise_models/depolarizing-1e-3``).
Every model is evaluated at each level once exactly (Aer's density matrix: ``qfed-qiskit
evaluate``'s method) and the shot cells draw their ``repeats`` x ``S`` shots from that exact
distribution, which is how Aer itself samples a circuit measured at the end. ``--devices`` adds
each model on fake IBM devices (their noise, coupling map and gates; the profile's shots).

Everything lives in ``--out``: ``sweep.json`` (the plan; a folder holding another plan is
refused), ``profiles/`` (the generated backend and noise profiles, usable with ``train`` and
``evaluate``), ``train/<model>/`` (ordinary run folders, resumed when a federated one was cut
short), ``probs/`` (exact noisy probabilities), ``cells/`` (one JSON per finished cell: never
redone), and the results ``sweep.csv``, ``sweep.md`` and ``sweep.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qfed_qiskit.config import TrainConfig, load_config
from qfed_qiskit.exceptions import QFedInputError
from qfed_qiskit.files import atomic_write_bytes
from qfed_qiskit.training.callbacks import NullCallback, TrainingCallback

MODES = ("ideal-train", "noise-aware", "shot-aware")
MAX_LEVEL = 0.1
"""Largest level: its two-qubit and readout probabilities are 10 x the level, at most 1."""
DEFAULT_LEVELS = (0.0, 1e-4, 1e-3, 3e-3, 1e-2)
TRAJECTORIES = 4
"""Error trajectories per step of noise-aware training (benchmarks/noise_aware_step.py)."""
DEFAULT_SHOTS = (1_000, 10_000, 100_000, 1_000_000, 0)


# --------------------------------------------------------------------------------------------
# Parsing the options (one line per problem)
# --------------------------------------------------------------------------------------------


def _items(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_levels(text: str) -> tuple[float, ...]:
    """``"0,1e-4,1e-3"`` as levels in ``[0, 0.1]``.

    Raises:
        QFedInputError: For a value that is not a number or outside the range.
    """
    levels = []
    for item in _items(text):
        try:
            value = float(item)
        except ValueError:
            raise QFedInputError(f"--levels: {item!r} is not a number") from None
        if not (math.isfinite(value) and 0.0 <= value <= MAX_LEVEL):
            raise QFedInputError(
                f"--levels: {item} is outside [0, {MAX_LEVEL:g}] (a level l means p1 = l, "
                "p2 = readout = 10 l, which must stay below 1)"
            )
        levels.append(value)
    if not levels:
        raise QFedInputError("--levels: give at least one level, e.g. 0,1e-3")
    return tuple(sorted(set(levels)))


def parse_shots(text: str) -> tuple[int, ...]:
    """``"1e3,1e4,exact"`` as shot counts (``exact`` is 0).

    Raises:
        QFedInputError: For a count below 1 or not a whole number.
    """
    shots = []
    for item in _items(text):
        if item.lower() == "exact":
            shots.append(0)
            continue
        try:
            value = float(item)
        except ValueError:
            raise QFedInputError(f"--shots: {item!r} is not a number or 'exact'") from None
        if not (math.isfinite(value) and value >= 1 and value == int(value)):
            raise QFedInputError(f"--shots: {item} (expected a whole number >= 1, or 'exact')")
        shots.append(int(value))
    if not shots:
        raise QFedInputError("--shots: give at least one shot count, e.g. 1e4,exact")
    return tuple(sorted(set(shots), key=lambda s: (s == 0, s)))


def parse_modes(text: str) -> tuple[str, ...]:
    """``"ideal-train,noise-aware"`` as modes.

    Raises:
        QFedInputError: For an unknown mode.
    """
    modes = _items(text)
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise QFedInputError(f"--modes: {', '.join(bad) or 'none'} (allowed: {', '.join(MODES)})")
    return tuple(m for m in MODES if m in modes)


def parse_devices(text: str) -> tuple[str, ...]:
    """``"fake-torino,fake-brisbane"`` as backend profiles of fake devices.

    Raises:
        QFedInputError: For a name that is not a fake-device profile.
    """
    from qfed_qiskit.profiles import load_backend_profile

    devices = _items(text)
    for name in devices:
        profile = load_backend_profile(name)
        if profile.kind != "fake-device":
            raise QFedInputError(
                f"--devices: {name!r} is a {profile.kind!r} profile, not a fake device "
                "(see `qfed-qiskit backends`)"
            )
    return tuple(devices)


# --------------------------------------------------------------------------------------------
# The plan and its profiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep trains and evaluates.

    Attributes:
        config: The base training config (its ``backend`` is replaced per model).
        levels: Noise levels.
        shots: Shot counts per evaluation (0: exact probabilities).
        modes: Training modes (:data:`MODES`).
        devices: Fake-device profiles to evaluate every model on.
        repeats: Shot draws per cell.
        seed: Seed of the shot draws.
    """

    config: TrainConfig
    levels: tuple[float, ...] = DEFAULT_LEVELS
    shots: tuple[int, ...] = DEFAULT_SHOTS
    modes: tuple[str, ...] = MODES
    devices: tuple[str, ...] = ()
    repeats: int = 3
    seed: int = 0

    @classmethod
    def from_options(
        cls,
        config: str | Path,
        *,
        levels: str,
        shots: str,
        modes: str,
        devices: str,
        repeats: int,
        seed: int,
    ) -> SweepPlan:
        """The plan of ``qfed-qiskit noise-sweep``'s options (comma-separated lists), checked."""
        from qfed_qiskit.study.evaluate import check_repeats

        return cls(
            config=load_config(config),
            levels=parse_levels(levels),
            shots=parse_shots(shots),
            modes=parse_modes(modes),
            devices=parse_devices(devices),
            repeats=check_repeats(repeats),
            seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able plan (``config`` without its ``out``)."""
        config = {k: v for k, v in self.config.to_dict().items() if k != "out"}
        return {
            "config": config,
            "levels": list(self.levels),
            "shots": list(self.shots),
            "modes": list(self.modes),
            "devices": list(self.devices),
            "repeats": self.repeats,
            "seed": self.seed,
        }

    def fingerprint(self) -> str:
        """Hash of the plan (a sweep folder belongs to one plan)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def _level_name(level: float) -> str:
    return f"{level:g}".replace("+", "")


def noise_toml(level: float) -> tuple[str, str]:
    """Name and TOML text of the depolarizing noise profile of ``level``."""
    name = f"sweep-depolarizing-{_level_name(level)}"
    text = (
        f'# Generated by qfed-qiskit noise-sweep: level {level:g}.\nschema = 1\nname = "{name}"\n'
        f'description = "Depolarizing level {level:g}: p1 {level:g}, p2 and readout '
        f'{10 * level:g}"\nkind = "depolarizing"\np1 = {level!r}\np2 = {10 * level!r}\n'
        f"readout = {10 * level!r}\n"
    )
    return name, text


def backend_toml(name: str, kind: str, noise: str | None, **keys: Any) -> str:
    """The TOML text of a generated backend profile."""
    lines = ["# Generated by qfed-qiskit noise-sweep.", "schema = 1", f'name = "{name}"']
    lines.append(f'kind = "{kind}"')
    if noise is not None:
        lines.append(f'noise = "{noise}.toml"')
    lines += [f"{k.replace('_', '-')} = {v!r}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TrainedModel:
    """One model a sweep trains: ``mode`` at ``level`` (0 for ideal-train) or with ``shots``."""

    mode: str
    level: float
    shots: int = 0

    @property
    def key(self) -> str:
        """Folder name under ``train/``."""
        if self.mode == "shot-aware":
            return f"shot-aware-{self.shots}"
        return "ideal" if self.mode == "ideal-train" else f"noise-aware-{_level_name(self.level)}"


def trained_models(plan: SweepPlan) -> list[TrainedModel]:
    """The models of ``plan`` (the noise-aware model of level 0 is the ideal one, trained only
    when the plan evaluates ideal training or noise-aware training at level 0)."""
    need_ideal = "ideal-train" in plan.modes or ("noise-aware" in plan.modes and 0.0 in plan.levels)
    models = [TrainedModel("ideal-train", 0.0)] if need_ideal else []
    if "noise-aware" in plan.modes:
        models += [TrainedModel("noise-aware", lvl) for lvl in plan.levels if lvl > 0]
    if "shot-aware" in plan.modes:
        models += [TrainedModel("shot-aware", 0.0, shots=s) for s in plan.shots if s > 0]
    return models


def evaluated_levels(plan: SweepPlan, model: TrainedModel) -> list[float]:
    """The levels a model is evaluated at: all for the ideal one, its own for a noise-aware one."""
    if model.mode in ("noise-aware", "shot-aware"):
        return [model.level]
    if "ideal-train" in plan.modes:
        return list(plan.levels)
    return [0.0] if 0.0 in plan.levels else []


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


class Sweep:
    """One sweep folder: its plan, profiles, trained models and cells (see the module docstring).

    Raises:
        QFedInputError: If ``out`` holds a sweep of another plan, or is not a folder.
    """

    def __init__(
        self,
        plan: SweepPlan,
        out: str | Path,
        *,
        callback: TrainingCallback | None = None,
        data_dir: str | None = None,
    ) -> None:
        if plan.config.model != "qt" or plan.config.generator == "vector":
            raise QFedInputError(
                "noise-sweep trains Quantum-Train models with a QNN: set model = 'qt' and "
                "generator = 'qnn' or 'frozen-qnn'"
            )
        self.plan = plan
        self.out = Path(out)
        self.cb = callback or NullCallback()
        self.data_dir = data_dir
        if self.out.exists() and not self.out.is_dir():
            raise QFedInputError(f"--out {self.out} is a file; expected a folder")
        stored = self.out / "sweep.json"
        if stored.is_file():
            previous = json.loads(stored.read_text(encoding="utf-8"))
            if previous.get("fingerprint") != plan.fingerprint():
                raise QFedInputError(
                    f"--out {self.out} holds a sweep of another plan (config, levels, shots, "
                    "modes, devices, repeats or seed differ); choose another --out"
                )
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            _write_json(stored, {"fingerprint": plan.fingerprint(), "plan": plan.to_dict()})
        self._test: Any = None

    # -- profiles ----------------------------------------------------------------------------

    def _profile_path(self, name: str, text: str) -> Path:
        path = self.out / "profiles" / f"{name}.toml"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_bytes(path, text.encode())
        return path

    def _noise(self, level: float) -> str:
        name, text = noise_toml(level)
        self._profile_path(name, text)
        return name

    def training_backend(self, model: TrainedModel) -> str:
        """The backend profile (name or path) a model trains on."""
        if model.mode == "shot-aware":
            name = f"sweep-train-shots-{model.shots}"
            return str(
                self._profile_path(name, backend_toml(name, "statevector", None, shots=model.shots))
            )
        if model.mode == "ideal-train" or model.level == 0:
            return "statevector"
        noise = self._noise(model.level)
        name = f"sweep-train-trajectories-{_level_name(model.level)}"
        text = backend_toml(name, "statevector", noise, trajectories=TRAJECTORIES)
        return str(self._profile_path(name, text))

    def evaluation_backend(self, level: float) -> str:
        """The exact evaluation backend of ``level`` (Aer density matrix, no shots)."""
        if level == 0:
            name = "sweep-eval-exact"
            return str(self._profile_path(name, backend_toml(name, "statevector", None)))
        noise = self._noise(level)
        name = f"sweep-eval-aer-{_level_name(level)}"
        return str(self._profile_path(name, backend_toml(name, "aer", noise, shots=0)))

    # -- training ----------------------------------------------------------------------------

    def train(self, model: TrainedModel) -> Path:
        """Train ``model`` (or finish / reuse it); returns its run folder."""
        from qfed_qiskit.runner import run_training

        run = self.out / "train" / model.key
        if (run / "summary.json").is_file():
            return run
        config = dataclasses.replace(
            self.plan.config,
            backend=self.training_backend(model),
            out=str(run),
            data_dir=self.data_dir or self.plan.config.data_dir,
        )
        resume = config.federated and (run / "checkpoint.pt").is_file()
        self.cb.on_message(
            f"sweep: training {model.key} on {Path(config.backend).stem}"
            + (" (resumed)" if resume else "")
        )
        run_training(config, callback=self.cb, resume=resume, overwrite=not resume)
        return run

    # -- evaluation --------------------------------------------------------------------------

    def test_set(self) -> Any:
        """The test set (loaded once)."""
        if self._test is None:
            from qfed_qiskit.study.evaluate import load_test_set

            self._test = load_test_set(self.plan.config, self.data_dir)
        return self._test

    def _exact_noisy(self, qt: Any, model: TrainedModel, level: float) -> Any:
        """Exact probabilities of the trained ``qt`` at ``level`` (computed once, in probs/)."""
        from qfed_qiskit.profiles import load_backend_profile
        from qfed_qiskit.study.evaluate import backend_probabilities

        path = self.out / "probs" / f"{model.key}-level-{_level_name(level)}.npy"
        if path.is_file():
            return np.load(path)
        profile = load_backend_profile(self.evaluation_backend(level))
        self.cb.on_message(f"sweep: exact probabilities of {model.key} at level {level:g}")
        probs, _ = backend_probabilities(
            profile, qt.circuit, qt.qnn_weights.detach(), repeats=1, seed=self.plan.seed
        )
        buf = io.BytesIO()
        np.save(buf, probs[0])
        atomic_write_bytes(path, buf.getvalue())
        return probs[0]

    def _cell(self, cell_id: str) -> Path:
        return self.out / "cells" / f"{cell_id}.json"

    def _finished(self, cell_id: str) -> dict[str, Any] | None:
        """The row of a cell finished earlier (None: not yet)."""
        path = self._cell(cell_id)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def evaluate_levels(self, model: TrainedModel, run: Path) -> list[dict[str, Any]]:
        """Every (level, shots) cell of ``model``."""
        from qfed_qiskit.study.evaluate import (
            load_trained_run,
            sample_frequencies,
            score_probabilities,
            trained_model,
        )

        rows = []
        qt: Any = None  # the trained model, loaded once and only when a cell needs it
        for li, level in enumerate(evaluated_levels(self.plan, model)):
            probs: Any = None  # the exact distribution, computed once and only when needed
            for shots in self.plan.shots:
                cell_id = f"{model.key}-level-{_level_name(level)}-shots-{shots}"
                finished = self._finished(cell_id)
                if finished is not None:
                    rows.append(finished)
                    continue
                if qt is None:
                    qt = trained_model(load_trained_run(run))
                if probs is None:
                    probs = self._exact_noisy(qt, model, level)
                if shots:
                    seeds = [self.plan.seed, li, shots, int(level * 1e9)]
                    draws = sample_frequencies(
                        probs, shots, self.plan.repeats, np.random.default_rng(seeds)
                    )
                else:
                    draws = probs[None, :]
                row = {
                    "cell": cell_id,
                    "model": model.key,
                    "mode": model.mode,
                    "trained_level": model.level,
                    "level": level,
                    "shots": shots,
                    "device": None,
                    "repeats": len(draws),
                    **score_probabilities(qt, draws, self.test_set()),
                }
                _write_json(self._cell(cell_id), row)
                self.cb.on_message(
                    f"sweep: {cell_id}: accuracy {row['accuracy_mean']:.4f} "
                    f"(exact {row['exact_accuracy']:.4f})"
                )
                rows.append(row)
        return rows

    def evaluate_devices(self, model: TrainedModel, run: Path) -> list[dict[str, Any]]:
        """``model`` on each fake device of the plan."""
        from qfed_qiskit.profiles import load_backend_profile
        from qfed_qiskit.study.evaluate import evaluate_on_backend, load_trained_run

        rows = []
        for device in self.plan.devices:
            cell_id = f"{model.key}-device-{device}"
            finished = self._finished(cell_id)
            if finished is not None:
                rows.append(finished)
                continue
            self.cb.on_message(f"sweep: {model.key} on {device}")
            profile = load_backend_profile(device)
            report = evaluate_on_backend(
                load_trained_run(run),
                profile,
                test=self.test_set(),
                repeats=self.plan.repeats,
                seed=self.plan.seed,
            )
            row = {
                "cell": cell_id,
                "model": model.key,
                "mode": model.mode,
                "trained_level": model.level,
                "level": None,
                "shots": report["shots"],
                "device": device,
                **{
                    k: report[k]
                    for k in (
                        "repeats",
                        "accuracy_mean",
                        "accuracy_std",
                        "accuracies",
                        "exact_accuracy",
                        "tv_distance_mean",
                        "weight_rel_l2_mean",
                    )
                },
            }
            _write_json(self._cell(cell_id), row)
            rows.append(row)
        return rows

    def run(self) -> list[dict[str, Any]]:
        """Train, evaluate every cell (finished ones are read back), write the results."""
        rows: list[dict[str, Any]] = []
        for model in trained_models(self.plan):
            run = self.train(model)
            rows += self.evaluate_levels(model, run)
            rows += self.evaluate_devices(model, run)
        write_results(self.out, rows)
        return rows


# --------------------------------------------------------------------------------------------
# Results: CSV, Markdown, PNG
# --------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "cell",
    "model",
    "mode",
    "trained_level",
    "level",
    "shots",
    "device",
    "repeats",
    "accuracy_mean",
    "accuracy_std",
    "exact_accuracy",
    "tv_distance_mean",
    "weight_rel_l2_mean",
)


def _shots_label(shots: int) -> str:
    return "exact" if shots == 0 else f"{shots:.0e}".replace("e+0", "e").replace("e+", "e")


def write_results(out: Path, rows: Sequence[dict[str, Any]]) -> None:
    """``sweep.csv``, ``sweep.md`` and ``sweep.png`` in ``out``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write_bytes(out / "sweep.csv", buf.getvalue().encode())
    atomic_write_bytes(out / "sweep.md", markdown_table(rows).encode())
    from qfed_qiskit.study.plots import plot_sweep

    plot_sweep(rows, out / "sweep.png")


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Accuracy (mean ± std over repeats) by model and level (rows) and shots (columns)."""
    level_rows = [r for r in rows if r["device"] is None]
    shots = sorted({r["shots"] for r in level_rows}, key=lambda s: (s == 0, s))
    keys = sorted(
        {(r["model"], r["level"]) for r in level_rows}, key=lambda k: (k[0] != "ideal", k)
    )
    lines = [
        "| model | eval level | " + " | ".join(_shots_label(s) for s in shots) + " |",
        "| --- | --- | " + " | ".join("---" for _ in shots) + " |",
    ]
    for model, level in keys:
        cells = []
        for s in shots:
            match = [
                r
                for r in level_rows
                if r["model"] == model and r["level"] == level and r["shots"] == s
            ]
            if match:
                r = match[0]
                std = f" ± {100 * r['accuracy_std']:.1f}" if r["repeats"] > 1 else ""
                cells.append(f"{100 * r['accuracy_mean']:.1f}{std}")
            else:
                cells.append("")
        lines.append(f"| {model} | {level:g} | " + " | ".join(cells) + " |")
    devices = [r for r in rows if r["device"] is not None]
    if devices:
        lines += [
            "",
            "| model | device | shots | accuracy | exact |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in devices:
            lines.append(
                f"| {r['model']} | {r['device']} | {r['shots']} | "
                f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f} | "
                f"{100 * r['exact_accuracy']:.1f} |"
            )
    return "\n".join(lines) + "\n"
