"""The package's shape, measured: module and function sizes, the import layers, private names.

``python tests/layout_rules.py`` prints every violation; ``tests/test_layout.py`` asserts none.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "flowaug"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60

# Lowest first: a module may import only from its own layer or the layers below it.
LAYERS: list[tuple[str, ...]] = [
    ("flowaug._checks", "flowaug.seeding", "flowaug.sizes", "flowaug.allocator"),
    ("flowaug.pixels", "flowaug.io"),
    ("flowaug.flows",),
    ("flowaug.data", "flowaug.tabular"),
    ("flowaug.training", "flowaug.sampling"),
    ("flowaug.metrics", "flowaug.evaluate", "flowaug.plots"),
    ("flowaug.integrations", "flowaug.hf"),
    ("flowaug.cli", "flowaug.__main__", "flowaug"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index)
    return None if best is None else best[1]


def package_of(module: str) -> str:
    """The top-level unit of a module: ``flowaug.training.config`` -> ``flowaug.training``."""
    parts = module.split(".")
    return ".".join(parts[:2])


def flowaug_imports(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import of flowaug code, at any depth."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flowaug"):
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("flowaug"):
                    found.append((node.lineno, alias.name, []))
    return found


def violations() -> dict[str, list[str]]:
    report: dict[str, list[str]] = {"size": [], "functions": [], "layers": [], "private": []}
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        where = path.relative_to(PACKAGE.parent)
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            report["size"].append(f"{where}: {lines} lines")
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    report["functions"].append(f"{where}:{node.lineno} {node.name}: {length} lines")
        module = module_name(path)
        own = layer_of(module)
        for line, target, names in flowaug_imports(tree):
            if target.startswith(module + ".") or target == module:
                continue
            other = layer_of(target)
            if own is None or other is None:
                report["layers"].append(f"{where}:{line} {module} or {target} is in no layer")
            elif other > own:
                report["layers"].append(f"{where}:{line} {module} imports {target} (higher)")
            if package_of(target) != package_of(module):
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                hidden = [p for p in target.split(".")[1:] if p.startswith("_") and p != "_checks"]
                if private or hidden:
                    report["private"].append(f"{where}:{line} imports {target} {private}")
    return report


def package_lines() -> int:
    return sum(len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py"))


if __name__ == "__main__":
    found = violations()
    for kind, items in found.items():
        print(f"{kind}: {len(items)}")
        for item in items:
            print("   ", item)
    print(f"package lines: {package_lines()}")
    sys.exit(1 if any(found.values()) else 0)
