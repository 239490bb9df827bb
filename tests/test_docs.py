"""The README's Python example and the notebooks run as written."""

from __future__ import annotations

import json
import os
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


@pytest.mark.slow
@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=str)
def test_notebook_runs(notebook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each notebook's code cells run top to bottom (needs the real FashionMNIST)."""
    if not Path("/usr/share/datasets/fashion-mnist").is_dir() and "QFED_DATA_DIR" not in os.environ:
        pytest.skip("FashionMNIST not available")
    monkeypatch.chdir(tmp_path)
    cells = json.loads(notebook.read_text())["cells"]
    namespace: dict[str, object] = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), str(notebook), "exec"), namespace)
