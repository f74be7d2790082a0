"""Writing a benchmark's results: ``benchmarks/results/NAME.json`` and ``NAME.md``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_report(name: str, report: dict, markdown: Callable[[dict], str]) -> None:
    """``report`` as JSON and ``markdown(report)`` as ``results/NAME.{json,md}``."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(report))
