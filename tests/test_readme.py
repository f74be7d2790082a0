"""The README's Python examples run as pasted (in order, in one namespace, in a temp dir)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_opens_with_the_two_commands():
    lines = README.read_text().splitlines()
    block = lines[lines.index("```bash") + 1 : lines.index("```")]
    assert block == [
        "pip install . && flowaug quickstart",
        'pip install -e ".[test]" && pytest',
    ]


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = _python_blocks()
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    assert namespace["augmented"].num_rows == 150
    assert namespace["synthetic"].num_rows == 300
    assert namespace["samples"].shape == (4, 1, 8, 8)
    assert (tmp_path / "digits-flow" / "model.safetensors").exists()


def test_readme_says_its_blocks_share_one_interpreter_and_generates_small_sets():
    text = README.read_text()
    assert "run in one interpreter, one after another" in text
    counts = [int(n) for n in re.findall(r"generate .*?--n-per-class (\d+)", text, flags=re.S)]
    assert counts and max(counts) <= 1000  # a set made in seconds, not a million rows
