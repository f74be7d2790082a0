"""The package's shape is part of its contract: the import layers, module and function sizes,
and no private name used across packages (measured by ``tests/layout_rules.py``)."""

from __future__ import annotations

import pytest
from layout_rules import violations

FOUND = violations()


@pytest.mark.parametrize("kind", sorted(FOUND))
def test_package_layout(kind):
    assert FOUND[kind] == [], "\n".join(FOUND[kind])
