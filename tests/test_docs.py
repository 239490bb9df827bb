"""The README's Python example and the notebooks run as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from qfed_qiskit.data import fashion_mnist as fm
from tests.idx_utils import write_idx_dataset

ROOT = Path(__file__).resolve().parent.parent


def _readme_blocks(language: str) -> list[str]:
    """The README's fenced code blocks of one language, in order."""
    readme = (ROOT / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", readme, flags=re.DOTALL)


def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```python block of README.md executes (small generated data, a scratch folder)."""
    blocks = _readme_blocks("python")
    assert blocks, "README.md has no python example"
    monkeypatch.setattr(fm, "FULL_SIZES", (512, 200))
    monkeypatch.setenv("QFED_DATA_DIR", str(write_idx_dataset(tmp_path / "data", 512, 200)))
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "runs" / "api" / "eval").is_dir()


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_are_there() -> None:
    """`make notebooks` executes these (with a Jupyter kernel, by nbmake)."""
    names = [p.name for p in NOTEBOOKS]
    assert names == ["01_quantum_train.ipynb", "02_federated_noise.ipynb", "03_ibm_runtime.ipynb"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_outputs_are_not_committed(notebook: Path) -> None:
    """Code cells carry no outputs or execution counts (they would go stale, and could leak)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    for number, cell in enumerate(cells, start=1):
        if cell["cell_type"] != "code":
            continue
        stale = cell.get("outputs") or cell.get("execution_count") is not None
        assert not stale, (
            f"{notebook.name}, cell {number}: outputs are committed; clear them "
            "(Jupyter: Edit > Clear Outputs of All Cells) before committing"
        )


def test_readme_profile_example_loads(tmp_path: Path) -> None:
    """The README's own noise model and backend profile load as written, the noise resolved."""
    from qfed_qiskit.profiles import load_backend_profile, load_noise_profile

    for block in _readme_blocks("toml"):
        name = block.splitlines()[0].removeprefix("# ").strip()  # each block starts "# <file>"
        (tmp_path / name).write_text(block)
    profile = load_backend_profile(tmp_path / "my-aer.toml")
    noise = load_noise_profile(str(profile.noise), relative_to=tmp_path)
    assert (profile.name, profile.shots, noise.name, noise.p2) == ("my-aer", 8192, "my-noise", 5e-3)


def _readme_commands() -> list[list[str]]:
    """Every `qfed-qiskit ...` line of the README's bash blocks, continuations joined, as tokens."""
    commands = []
    for block in _readme_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = line.split("#", 1)[0].split()
            if tokens[:1] == ["qfed-qiskit"]:
                commands.append(tokens[1:])
    return commands


def test_readme_commands_agree_with_the_help() -> None:
    """Each command and option the README shows exists, so `--help` and the README agree."""
    import click
    import typer.main

    from qfed_qiskit.cli.main import app

    group = typer.main.get_command(app)
    assert isinstance(group, click.Group)
    commands = _readme_commands()
    assert len(commands) >= 10, "the README's tour is gone"
    shown = set()
    for tokens in commands:
        command = group.commands.get(tokens[0])
        assert command is not None, f"README: `qfed-qiskit {tokens[0]}` is not a command"
        shown.add(tokens[0])
        options = {name for param in command.params for name in param.opts}
        for token in tokens[1:]:
            flag = token.split("=", 1)[0]
            assert not flag.startswith("--") or flag in options, (
                f"README: `qfed-qiskit {tokens[0]}` has no option {flag}"
            )
    assert shown == set(group.commands), "a command the README never shows"


def test_readme_names_every_backend_and_existing_configs() -> None:
    """The README lists every shipped backend profile and every config it points to exists."""
    readme = (ROOT / "README.md").read_text()
    for profile in sorted((ROOT / "backends").glob("*.toml")):
        assert f"`{profile.stem}`" in readme, f"README does not list backend {profile.stem}"
    for path in sorted(set(re.findall(r"configs/[\w.-]+\.toml", readme))):
        assert (ROOT / path).is_file(), f"README points to {path}, which does not exist"
