"""Structural measures of rdcl's code, for a working tree or any git revision.

    python tools/structure_report.py                  # this tree
    python tools/structure_report.py da1af51 HEAD     # revisions side by side (git archive)
    python tools/structure_report.py --json OUT.json  # the measures as JSON

Measures (library = ``rdcl/`` and ``kernels/``; lines are non-blank):

- lines of the library, of C++/CUDA (``csrc/``) and of the tests; modules; the largest modules and
  functions; the median function length;
- imports of rdcl modules inside functions (the CLI's lazy imports counted apart);
- imports that run up a floor: the floors of ``docs/architecture.md`` ("Packages and dependency
  direction"), encoded in :data:`FLOORS`; an import of a higher floor's package is counted, at
  module level or inside a function;
- import cycles between modules and between packages (``rdcl.data``, ``rdcl.training``, ...), over
  every import (inside functions too; ``if TYPE_CHECKING`` blocks left out; a module's import of
  its own enclosing packages is not an edge).

``tests/test_architecture_doc.py`` asserts from this module that the tree has no cycle and no
import up a floor, so that the page and the code cannot drift apart.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FLOORS: dict[str, int] = {
    "errors": 1, "_version": 1, "kernels": 1,
    "fsutil": 2, "device": 2, "paths": 2, "progress": 2, "config_types": 2, "config": 2,
    "data": 3, "model": 3, "formats": 3,
    "losses": 4, "metrics": 4, "report": 4, "_surface": 4,
    "training": 5, "inference": 6, "export": 7, "demo": 8, "study": 8,
    "cli": 9, "__main__": 9, "__init__": 9,
}  # fmt: skip
"""Package (first name below ``rdcl``) -> floor, from docs/architecture.md. ``rdcl/__init__.py``
and ``__main__`` sit on top (they may import anything); ``demo`` and ``study`` share floor 8 (the
page orders them: the study's figures use ``demo``)."""


@dataclass
class Module:
    name: str  # dotted, e.g. rdcl.data.io.image
    path: Path
    lines: int
    tree: ast.Module
    is_package: bool


@dataclass
class Measures:
    library_lines: int = 0
    csrc_lines: int = 0
    test_lines: int = 0
    modules: int = 0
    largest_modules: list[tuple[str, int]] = field(default_factory=list)
    largest_functions: list[tuple[str, int]] = field(default_factory=list)
    median_function_lines: float = 0.0
    functions: int = 0
    imports_in_functions: int = 0
    imports_in_functions_cli: int = 0
    in_function_sites: list[str] = field(default_factory=list)
    imports_up_a_floor: list[str] = field(default_factory=list)
    module_cycles: list[list[str]] = field(default_factory=list)
    package_cycles: list[list[str]] = field(default_factory=list)


def nonblank(path: Path) -> int:
    """Non-blank lines of a text file."""
    return sum(1 for ln in path.read_text(errors="replace").splitlines() if ln.strip())


def library_modules(root: Path) -> list[Module]:
    """Every ``.py`` file of ``rdcl/`` and ``kernels/`` (installed as ``rdcl.kernels``)."""
    out = []
    for base, prefix in ((root / "rdcl", "rdcl"), (root / "kernels", "rdcl.kernels")):
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            parts = parts[:-1] if is_package else parts
            name = ".".join((prefix, *parts))
            text = path.read_text()
            out.append(Module(name, path, nonblank(path), ast.parse(text), is_package))
    return out


def package_of(module: str) -> str:
    """``rdcl.data.io.image`` -> ``data``; ``rdcl`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports(tree: ast.AST, current: Module) -> Iterator[tuple[ast.stmt, bool, list[str]]]:
    """``(node, inside_a_function, targets)`` for each import of an rdcl module, with relative
    imports resolved; ``if TYPE_CHECKING:`` blocks are skipped."""

    def walk(node: ast.AST, in_func: bool) -> Iterator[tuple[ast.stmt, bool, list[str]]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names if a.name.split(".")[0] == "rdcl"]
                if names:
                    yield child, in_func, names
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = current.name.split(".")
                    pkg = pkg if current.is_package else pkg[:-1]
                    pkg = pkg[: len(pkg) - (child.level - 1)]
                    base = ".".join([*pkg, base] if base else pkg)
                if base.split(".")[0] == "rdcl":
                    yield child, in_func, [f"{base}.{a.name}" for a in child.names] + [base]
            inner = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            yield from walk(child, inner)

    yield from walk(tree, False)


def resolve(target: str, names: set[str]) -> str | None:
    """The longest known module name that ``target`` (a module or ``module.attribute``) names."""
    while target:
        if target in names:
            return target
        target = target.rpartition(".")[0]
    return None


def sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        n = stack.pop()
                        on.discard(n)
                        comp.append(n)
                        if n == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return sorted(out)


def functions(tree: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
    """``(qualified name, lines)`` of every function and method (nested ones too)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield f"{prefix}:{node.name}", node.end_lineno - node.lineno + 1


def measure(root: Path, top: int = 5) -> Measures:
    """The measures of the tree at ``root`` (a checkout or an extracted revision)."""
    mods = library_modules(root)
    names = {m.name for m in mods}
    m = Measures()
    m.modules = len(mods)
    m.library_lines = sum(x.lines for x in mods)
    m.csrc_lines = sum(
        nonblank(p)
        for p in (root / "csrc").rglob("*")
        if p.suffix in {".cpp", ".cu", ".h", ".hpp", ".cuh", ".cc"}
    )
    m.test_lines = sum(nonblank(p) for p in (root / "tests").rglob("*.py"))
    rel = {x.name: str(x.path.relative_to(root)) for x in mods}
    m.largest_modules = sorted(((rel[x.name], x.lines) for x in mods), key=lambda t: -t[1])[:top]
    funcs = [f for x in mods for f in functions(x.tree, rel[x.name])]
    m.functions = len(funcs)
    m.median_function_lines = statistics.median(n for _, n in funcs) if funcs else 0.0
    m.largest_functions = sorted(funcs, key=lambda t: -t[1])[:top]
    graph: dict[str, set[str]] = {x.name: set() for x in mods}
    for x in mods:
        src_pkg = package_of(x.name)
        for node, in_func, targets in imports(x.tree, x):
            resolved = {t for t in (resolve(t, names) for t in targets) if t}
            # a module's own packages are imported before it in any case (edges to them are the
            # package-init pattern, not a dependency): `from rdcl.data import spec` in
            # rdcl.data.layout depends on rdcl.data.spec only
            resolved = {t for t in resolved if not (x.name + ".").startswith(t + ".")}
            if len(resolved) > 1:  # `from pkg import submodule`: the submodule, not pkg
                resolved = {t for t in resolved if not any(u.startswith(t + ".") for u in resolved)}
            site = f"{rel[x.name]}:{node.lineno}"
            if in_func:
                if src_pkg == "cli":
                    m.imports_in_functions_cli += 1
                else:
                    m.imports_in_functions += 1
                    m.in_function_sites.append(site)
            graph[x.name] |= resolved
            for t in sorted(resolved):
                dst_pkg = package_of(t)
                if FLOORS.get(dst_pkg, 0) > FLOORS.get(src_pkg, 9):
                    m.imports_up_a_floor.append(f"{site} ({src_pkg} -> {dst_pkg})")
    m.module_cycles = sccs(graph)
    pkg_graph: dict[str, set[str]] = {}
    for a, targets in graph.items():
        pa = package_of(a)
        if pa == "__init__":  # rdcl/__init__.py imports the public API of every package
            continue
        pkg_graph.setdefault(pa, set()).update(
            package_of(b) for b in targets if package_of(b) not in (pa, "__init__")
        )
    m.package_cycles = sccs(pkg_graph)
    return m


def extract(rev: str, into: Path) -> Path:
    """``git archive`` of ``rev`` unpacked into ``into``."""
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            tar.extractall(into, filter="data")
    return into


def table(columns: dict[str, Measures]) -> str:
    """The measures of each column as a Markdown table."""
    rows = [
        ("library lines (rdcl/ + kernels/, non-blank)", lambda m: m.library_lines),
        ("C++/CUDA lines (csrc/)", lambda m: m.csrc_lines),
        ("test lines", lambda m: m.test_lines),
        ("library modules", lambda m: m.modules),
        ("functions; median lines", lambda m: f"{m.functions}; {m.median_function_lines:g}"),
        ("largest module", lambda m: "{} ({})".format(*m.largest_modules[0])),
        ("largest function", lambda m: "{} ({})".format(*m.largest_functions[0])),
        ("rdcl imports inside functions, outside the CLI", lambda m: m.imports_in_functions),
        ("rdcl imports inside CLI functions (lazy)", lambda m: m.imports_in_functions_cli),
        ("imports that run up a floor", lambda m: len(m.imports_up_a_floor)),
        ("module import cycles", lambda m: len(m.module_cycles)),
        ("package import cycles", lambda m: len(m.package_cycles)),
    ]  # fmt: skip
    head = "| measure | " + " | ".join(f"`{c}`" for c in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    for label, get in rows:
        lines.append(f"| {label} | " + " | ".join(str(get(m)) for m in columns.values()) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("revs", nargs="*", help="git revisions (default: the working tree)")
    p.add_argument("--json", type=Path, help="also write the measures as JSON")
    args = p.parse_args()
    columns: dict[str, Measures] = {}
    with tempfile.TemporaryDirectory(prefix="rdcl-structure-") as tmp:
        for rev in args.revs or ["working tree"]:
            root = ROOT if not args.revs else extract(rev, Path(tmp) / rev.replace("/", "_"))
            columns[rev] = measure(root)
    print(table(columns))
    for rev, m in columns.items():
        for label, items in (
            ("imports inside functions (outside the CLI)", m.in_function_sites),
            ("imports up a floor", m.imports_up_a_floor),
            ("module cycles", [" <-> ".join(c) for c in m.module_cycles]),
            ("package cycles", [" <-> ".join(c) for c in m.package_cycles]),
            ("largest modules", [f"{a} ({b})" for a, b in m.largest_modules]),
            ("largest functions", [f"{a} ({b})" for a, b in m.largest_functions]),
        ):
            if items:
                print(f"\n{rev}: {label}:\n  " + "\n  ".join(items))
    if args.json:
        args.json.write_text(json.dumps({k: v.__dict__ for k, v in columns.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
