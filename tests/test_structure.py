"""The dependency rules of docs/architecture.md hold in the code: no import runs up a floor, no
import cycle between modules or packages, and rdcl modules import each other at their top (the
CLI's lazy imports apart). Measured by tools/structure_report.py."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location(
        "structure_report", ROOT / "tools" / "structure_report.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_the_tree_keeps_the_floors_and_has_no_cycle(tool) -> None:
    m = tool.measure(ROOT)
    assert m.imports_up_a_floor == []
    assert m.module_cycles == [] and m.package_cycles == []
    assert m.in_function_sites == []
    assert m.modules > 100  # the whole library was read, not an empty folder


def test_every_package_has_a_floor(tool) -> None:
    packages = {tool.package_of(m.name) for m in tool.library_modules(ROOT)}
    assert packages <= set(tool.FLOORS), packages - set(tool.FLOORS)


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "csrc").mkdir(exist_ok=True)
    (root / "tests").mkdir(exist_ok=True)
    return root


def test_an_upward_import_a_cycle_and_a_late_import_are_found(tool, tmp_path) -> None:
    root = _write(
        tmp_path,
        {
            "rdcl/__init__.py": "",
            "rdcl/data/__init__.py": "from rdcl.data import a\n",
            # the package-init pattern is not a cycle; `from pkg import submodule` is the module
            "rdcl/data/a.py": "from rdcl.data import b\n",
            "rdcl/data/b.py": "import numpy\n",
            # data (floor 3) importing training (floor 5), and training importing data back
            "rdcl/data/c.py": "from rdcl.training.loop import run\n",
            "rdcl/training/__init__.py": "",
            "rdcl/training/loop.py": "def run():\n    from rdcl.data.c import x\n",
            "kernels/__init__.py": "from .ops import f\n",
            "kernels/ops.py": "from rdcl.kernels import runtime\n",
            "kernels/runtime.py": "",
        },
    )
    m = tool.measure(root)
    assert m.imports_up_a_floor == ["rdcl/data/c.py:1 (data -> training)"]
    assert m.module_cycles == [["rdcl.data.c", "rdcl.training.loop"]]
    assert m.package_cycles == [["data", "training"]]
    assert m.in_function_sites == ["rdcl/training/loop.py:2"]
    assert m.modules == 10 and m.largest_functions == [("rdcl/training/loop.py:run", 2)]


def test_relative_imports_resolve(tool) -> None:
    mod = tool.Module("rdcl.kernels.ops", Path("ops.py"), 1, ast.parse(""), False)
    tree = ast.parse("from .runtime import x\nfrom . import launch\n")
    targets = [t for _, _, ts in tool.imports(tree, mod) for t in ts]
    assert "rdcl.kernels.runtime" in targets and "rdcl.kernels.launch" in targets
