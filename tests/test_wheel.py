"""The built wheel ships the backend and noise-model profiles; the installed CLI lists them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.cfg", "README.md", "qfed_qiskit", "backends", "noise_models")
SHIPPED_BACKENDS = sorted(p.stem for p in (ROOT / "backends").glob("*.toml"))
SHIPPED_NOISE = sorted(p.stem for p in (ROOT / "noise_models").glob("*.toml"))


_LEAKY = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")


def _clean_env() -> dict[str, str]:
    """This process's environment without variables that would import the checkout.

    Other tests (Ray, in the Flower ones) leave ``PYTHONPATH`` pointing at the checkout and this
    environment's site-packages, which would make pip skip the install and Python import the
    source tree.
    """
    return {
        k: v
        for k, v in os.environ.items()
        if k not in _LEAKY and not k.startswith(("PIP_TARGET", "PIP_PREFIX", "PIP_USER"))
    }


def _run(args: list[str], *, cwd: Path) -> str:
    proc = subprocess.run(
        args, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built offline (no build isolation) from a copy of the source tree."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "_data")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    dist = base / "dist"
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)], cwd=src)
    (built,) = dist.glob("qfed_qiskit-*.whl")
    return built


def test_wheel_contains_profiles_and_no_build_hook(wheel: Path) -> None:
    """Every shipped TOML is package data under qfed_qiskit/profiles/_data/; _build.py is not."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for stem in SHIPPED_BACKENDS:
        assert f"qfed_qiskit/profiles/_data/backends/{stem}.toml" in names
    for stem in SHIPPED_NOISE:
        assert f"qfed_qiskit/profiles/_data/noise_models/{stem}.toml" in names
    assert "qfed_qiskit/profiles/_build.py" not in names
    assert "qfed_qiskit/py.typed" in names


def test_setup_cfg_names_the_folders_the_loader_reads() -> None:
    """The build ships exactly the folders the profile loader searches (setup.cfg's job)."""
    import configparser

    from qfed_qiskit.profiles._build import folders_option
    from qfed_qiskit.profiles.loader import PROFILE_FOLDERS

    cfg = configparser.ConfigParser()
    assert cfg.read(ROOT / "setup.cfg")
    for command in ("build_py", "sdist"):
        assert folders_option(cfg[command]["profile_folders"]) == PROFILE_FOLDERS


def test_installed_wheel_lists_backends(wheel: Path, tmp_path: Path) -> None:
    """Installed in a temp venv, the console script lists every profile from the wheel's data.

    The venv sees this environment's dependencies (torch, Qiskit) through a ``.pth`` line, so
    nothing is downloaded; the wheel is installed with ``--no-deps`` and imported from the venv's
    own site-packages, outside the source checkout.
    """
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=tmp_path,
    ).strip()
    Path(purelib, "_qfed_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        cwd=tmp_path,
    )
    where = _run(
        [str(python), "-c", "import qfed_qiskit.profiles as p; print(p.__file__)"],
        cwd=tmp_path,
    )
    assert Path(where.strip()).is_relative_to(Path(purelib))
    listing = _run([str(venv / "bin" / "qfed-qiskit"), "backends", "--json"], cwd=tmp_path)
    rows = json.loads(listing)
    assert [row["name"] for row in rows] == SHIPPED_BACKENDS
    assert all(Path(row["path"]).is_relative_to(Path(purelib)) for row in rows)
    noise = _run([str(venv / "bin" / "qfed-qiskit"), "backends", "--noise", "--json"], cwd=tmp_path)
    assert [row["name"] for row in json.loads(noise)] == SHIPPED_NOISE
