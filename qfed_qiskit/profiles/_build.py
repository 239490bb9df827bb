"""Build hooks: ship the top-level ``backends/`` and ``noise_models/`` profiles in the package.

setuptools' ``package-data`` cannot reach folders outside the package, so ``pyproject.toml``
(``[tool.setuptools.cmdclass]``) points ``build_py`` and ``sdist`` here:

* ``build_py`` copies ``backends/*.toml`` and ``noise_models/*.toml`` from the project root into
  ``qfed_qiskit/profiles/_data/`` of the build tree (so every wheel carries them), and leaves this
  module out of the wheel;
* ``sdist`` adds both folders to the source archive, so a wheel built from it has them too.

setuptools loads this file on its own (not as part of the package), so it imports nothing from
``qfed_qiskit``. At run time the loader finds the folders in a checkout, or ``_data`` in a wheel.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from setuptools.command.build_py import build_py  # type: ignore[import-untyped]
from setuptools.command.sdist import sdist  # type: ignore[import-untyped]

PROFILE_FOLDERS = ("backends", "noise_models")
DATA_PARTS = ("qfed_qiskit", "profiles", "_data")
_ROOT = Path(__file__).resolve().parents[2]
_THIS_MODULE = ("qfed_qiskit.profiles", "_build")


def copy_profiles(root: Path, destination: Path) -> list[str]:
    """Copy ``root/<folder>/*.toml`` to ``destination/<folder>/`` for each profile folder.

    Returns:
        The written files.
    """
    written: list[str] = []
    for folder in PROFILE_FOLDERS:
        source = root / folder
        if not source.is_dir():
            raise FileNotFoundError(f"profile folder {source} is missing")
        target = destination / folder
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.glob("*.toml")):
            shutil.copyfile(path, target / path.name)
            written.append(str(target / path.name))
    return written


class BuildPy(build_py):  # type: ignore[misc]
    """``build_py`` that adds the profile TOML files as package data and skips this module."""

    def run(self) -> None:
        """Build the package, then copy the profiles into ``qfed_qiskit/profiles/_data``."""
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's folders directly
        destination = Path(self.build_lib).joinpath(*DATA_PARTS)
        for path in copy_profiles(_ROOT, destination):
            self.announce(f"copying profile {path}", level=2)

    def build_module(self, module: str, module_file: str, package: Any) -> Any:
        """Build every module except this build hook."""
        name = package if isinstance(package, str) else ".".join(package)
        if (name, module) == _THIS_MODULE:
            return None
        return super().build_module(module, module_file, package)


class Sdist(sdist):  # type: ignore[misc]
    """``sdist`` that also ships the top-level profile folders."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        """Lay out the release tree, then add ``backends/`` and ``noise_models/``."""
        super().make_release_tree(base_dir, files)
        for folder in PROFILE_FOLDERS:
            source = _ROOT / folder
            target = Path(base_dir) / folder
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted(source.glob("*.toml")):
                shutil.copyfile(path, target / path.name)
