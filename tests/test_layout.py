"""The package's shape is part of its contract: the import layers, module and function sizes,
and no private name used across packages (measured by ``tests/layout_rules.py``)."""

from __future__ import annotations

import pytest
from layout_rules import violations

FOUND = violations()


@pytest.mark.parametrize("kind", sorted(FOUND))
def test_package_layout(kind):
    assert FOUND[kind] == [], "\n".join(FOUND[kind])


@pytest.mark.parametrize("module", ["flowaug", "flowaug.cli"])
def test_importing_flowaug_loads_no_heavy_optional_library(module):
    import subprocess
    import sys

    # each costs 15-170 MB of memory; the command line imports them where a subcommand needs
    # them (tables: pandas and scipy; plots: matplotlib), not to list its subcommands
    heavy = ["pandas", "scipy", "datasets", "matplotlib", "sklearn", "torchvision", "accelerate",
             "PIL"]
    code = f"import sys, {module}; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
