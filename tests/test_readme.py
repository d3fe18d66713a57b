"""The README's Python examples run as written (so the README stays true)."""

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index):
    namespace: dict = {}
    exec(compile(BLOCKS[index], f"README block {index}", "exec"), namespace)
    fc = namespace.get("fc")
    if fc is not None and namespace.get("learner") is not None:
        # the example's update went through the optimizer: weights are finite and grads cleared
        assert torch.isfinite(fc.weight).all()


def test_readme_has_the_two_setup_commands():
    text = README.read_text()
    assert "plastorch train diehl-cook" in text
    assert 'pip install -e ".[test,fast]" && python -m pytest' in text
    # CI installs what the README's test command installs, and runs the same pytest
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install -e ".[test,fast]"' in ci and "python -m pytest" in ci
