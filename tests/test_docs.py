"""The README's Python example and the notebooks run as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def test_readme_python_example_runs() -> None:
    """Every ```python block of README.md executes."""
    blocks = _python_blocks((ROOT / "README.md").read_text())
    assert blocks, "README.md has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


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
