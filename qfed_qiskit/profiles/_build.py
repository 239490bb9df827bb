"""Build hooks: ship the top-level profile folders (``backends/``, ``noise_models/``) in wheels.

setuptools' ``package-data`` cannot reach folders outside the package, so ``pyproject.toml``
(``[tool.setuptools.cmdclass]``) points ``build_py`` and ``sdist`` here. Which folders is the
commands' ``profile_folders`` option, set in ``setup.cfg`` (``[build_py]``, ``[sdist]``):

* ``build_py`` copies ``<folder>/*.toml`` from the project root into
  ``qfed_qiskit/profiles/_data/<folder>/`` of the build tree (so every wheel carries them), and
  leaves this module out of the wheel;
* ``sdist`` adds the folders to the source archive, so a wheel built from it has them too.

setuptools loads this file on its own (not as part of the package), so it imports nothing from
``qfed_qiskit``. At run time the loader finds the folders in a checkout, or ``_data`` in a wheel.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

from setuptools.command.build_py import build_py  # type: ignore[import-untyped]
from setuptools.command.sdist import sdist  # type: ignore[import-untyped]

DATA_PARTS = ("qfed_qiskit", "profiles", "_data")
_ROOT = Path(__file__).resolve().parents[2]
_THIS_MODULE = ("qfed_qiskit.profiles", "_build")


_OPTION = ("profile-folders=", None, "top-level folders of TOML profiles to ship (setup.cfg)")


def folders_option(value: str | None) -> tuple[str, ...]:
    """The ``profile_folders`` option as folder names (space or comma separated)."""
    return tuple((value or "").replace(",", " ").split())


def copy_profiles(root: Path, destination: Path, folders: tuple[str, ...]) -> list[str]:
    """Copy ``root/<folder>/*.toml`` to ``destination/<folder>/`` for each of ``folders``.

    Returns:
        The written files.
    """
    written: list[str] = []
    for folder in folders:
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

    user_options: ClassVar[list[tuple[str, str | None, str]]] = [*build_py.user_options, _OPTION]

    def initialize_options(self) -> None:
        """Start without profile folders (setup.cfg names them)."""
        super().initialize_options()
        self.profile_folders: str | None = None

    def run(self) -> None:
        """Build the package, then copy the profiles into ``qfed_qiskit/profiles/_data``."""
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's folders directly
        destination = Path(self.build_lib).joinpath(*DATA_PARTS)
        for path in copy_profiles(_ROOT, destination, folders_option(self.profile_folders)):
            self.announce(f"copying profile {path}", level=2)

    def build_module(self, module: str, module_file: str, package: Any) -> Any:
        """Build every module except this build hook."""
        name = package if isinstance(package, str) else ".".join(package)
        if (name, module) == _THIS_MODULE:
            return None
        return super().build_module(module, module_file, package)


class Sdist(sdist):  # type: ignore[misc]
    """``sdist`` that also ships the top-level profile folders."""

    user_options: ClassVar[list[tuple[str, str | None, str]]] = [*sdist.user_options, _OPTION]

    def initialize_options(self) -> None:
        """Start without profile folders (setup.cfg names them)."""
        super().initialize_options()
        self.profile_folders: str | None = None

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        """Lay out the release tree, then add the profile folders."""
        super().make_release_tree(base_dir, files)
        copy_profiles(_ROOT, Path(base_dir), folders_option(self.profile_folders))
