"""The edge's rooms and the direction of their imports: ``cli → loop → {capture, runtimes, link} → config → kernel``.

The kernel (``edge/*.py``: errors, contracts, manifest, preprocess, ...) imports nothing else of the edge;
a room imports its own modules and the rooms below it, never a room beside it or above it. Imports are
read from the source (every ``import`` statement, those inside functions and under ``TYPE_CHECKING``
too), so a lazy import cannot hide a cycle.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EDGE = ROOT / "edge"
#: Each room's rank: a module may import a room of a lower rank, or its own room; rooms of one rank are
#: peers and never import each other.
RANKS = {"kernel": 0, "config": 1, "capture": 2, "runtimes": 2, "link": 2, "loop": 3, "cli": 4}
PACKAGES = ("edge", "kiosk", "hq", "deploy", "calibration", "trainer")
#: Optional dependencies that ``import edge`` (and every room's package) must not pull in.
OPTIONAL = ("cv2", "openvino", "onnxruntime", "torch", "tensorrt", "pycuda")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str:
    """The room of a dotted ``edge`` module: its sub-package, or ``kernel`` for ``edge/*.py``."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in RANKS and (EDGE / parts[1]).is_dir():
        return parts[1]
    if module == "edge.__main__":
        return "cli"  # ``python -m edge`` is the command line
    return "kernel"


def edge_imports(path: Path) -> list[tuple[int, str]]:
    """Every ``edge`` module ``path`` imports, with its line (``from edge.x import y`` counts ``edge.x.y``
    when ``y`` is a module)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "edge"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "edge":
            base = node.module.replace(".", "/")
            for a in node.names:
                sub = ROOT / base / a.name
                found.append((node.lineno, f"{node.module}.{a.name}" if sub.is_dir() or sub.with_suffix(".py").is_file()
                              else node.module))
    return found


def violations(root: Path = EDGE) -> list[str]:
    """One line per import that runs against the direction, e.g. ``edge/link/x.py:3: link imports loop``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        here = room_of(module_name(path))
        for line, target in edge_imports(path):
            there = room_of(target)
            if there != here and RANKS[there] >= RANKS[here]:
                out.append(f"{path.relative_to(ROOT)}:{line}: {here} imports {there} ({target})")
    return out


def test_imports_flow_one_way():
    assert violations() == []


def test_a_wrong_way_import_is_found(tmp_path, monkeypatch):
    """The walk sees an import against the direction, also one inside a function."""
    fake = tmp_path / "edge"
    for room in ("link", "loop", "config"):
        (fake / room).mkdir(parents=True)
    (fake / "link" / "bad.py").write_text("def f():\n    from edge.loop import run\n")
    (fake / "config" / "bad.py").write_text("from edge.link.messages import encode\n")
    (fake / "loop" / "run.py").write_text("from edge.link import messages\n")  # downwards: fine
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "EDGE", fake)
    assert violations(fake) == ["edge/config/bad.py:1: config imports link (edge.link.messages)",
                                "edge/link/bad.py:2: link imports loop (edge.loop.run)"]


def test_no_module_cycles():
    """No two edge modules import each other, lazily or not (within a room too)."""
    graph = {module_name(p): {t for _, t in edge_imports(p)} for p in EDGE.rglob("*.py")}
    pairs = sorted(f"{a} <-> {b}" for a, deps in graph.items() for b in deps if a < b and a in graph.get(b, ()))
    assert pairs == []


def test_import_edge_loads_no_optional_dependency():
    rooms = ", ".join(f"edge.{r}" for r in RANKS if r != "kernel")
    code = (f"import sys, edge, {rooms}; "
            f"print(','.join(m for m in {OPTIONAL!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""


def test_the_import_check_sees_an_optional_dependency():
    """The same check, on a module that does import cv2, finds it."""
    code = f"import sys, edge.preprocess; print(','.join(m for m in {OPTIONAL!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "cv2" in out.stdout


@pytest.mark.parametrize("package", PACKAGES)
def test_no_file_over_the_limit(package):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / package).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
