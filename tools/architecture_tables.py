"""Generate the module tables of ``docs/architecture.md`` from the module docstrings, and check it.

A generated table sits between two marker lines in the page:

    <!-- module table: rdcl/data/io -->
    | module | holds | defines |
    |---|---|---|
    | `image.py` | ... | `read_image`, ... |
    <!-- end module table -->

After the folder the start marker may name options: ``paths`` (rows named by their path from the
repository root instead of from the folder) and ``no-packages`` (no rows for subpackages). A
table has one row per module of the folder (an ``__init__.py`` only where it defines a function
or class: elsewhere it only re-exports) and one per subpackage (``name/``, described by its
``__init__.py``); the second column is the first paragraph of the module's docstring, its reST
markup turned into Markdown, the third the module's public names (its ``__all__``, or else its
public top-level functions, classes and upper-case constants). Rows keep the order they have in
the page (the page's editorial order); a new module is added at the end, in name order, and a
removed one is dropped. The header lines are kept as they are.

``--check`` also checks that every repository path the page names in backticks (starting with
``rdcl/``, ``kernels/``, ``csrc/``, ``docs/``, ``bench/``, ``tests/``, ``tools/``, ``cmake/``,
``configs/`` or ``.ci/``) exists, and that every package under ``rdcl/`` (and ``kernels/``) and
every top-level ``rdcl/*.py`` module is named in the page.

Usage: ``python tools/architecture_tables.py --write`` (rewrite the tables in place) or
``--check`` (exit 1 naming what is stale; ``tests/test_architecture_doc.py`` runs it).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
START = re.compile(r"^<!-- module table: (?P<folder>\S+)(?P<options>(?: [\w-]+)*) -->$")
END = "<!-- end module table -->"
DEFAULT_HEADER = ["| module | holds | defines |", "|---|---|---|"]
OPTIONS = {"paths", "no-packages"}
PATH_ROOTS = ("rdcl/", "kernels/", "csrc/", "docs/", "bench/", "tests/", "tools/", "cmake/",
              "configs/", ".ci/")  # fmt: skip


def summary(path: Path) -> str:
    """The first paragraph of the module docstring of ``path``, as one line of Markdown."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=True)
    if not doc:
        raise ValueError(f"{path.relative_to(ROOT)}: no module docstring")
    text = " ".join(doc.split("\n\n")[0].split())
    text = re.sub(r":[\w:]+:`([^`<]*?)\s*<[^`>]*>`", r"`\1`", text)  # :role:`text <target>`
    text = re.sub(r":[\w:]+:`~?([^`]*?)`", _role, text)  # :func:`name`, :class:`~a.b.C`
    text = text.replace("``", "`")
    return text.replace("|", "\\|")


def _role(match: re.Match) -> str:
    target = match.group(1)
    short = match.group(0).split("`")[1].startswith("~")
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def public_names(path: Path) -> list[str]:
    """The module's ``__all__``, or else its public top-level functions, classes and constants."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name) and target.id == "__all__":
                return [ast.literal_eval(e) for e in node.value.elts]
            value = getattr(node, "value", None)
            type_var = isinstance(value, ast.Call) and getattr(value.func, "id", "") == "TypeVar"
            if isinstance(target, ast.Name) and target.id.isupper() and not type_var:
                names.append(target.id)
    return [n for n in names if not n.startswith("_")]


def _defines_code(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(
        isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in tree.body
    )


def rows(folder: str, options: set[str]) -> dict[str, str]:
    """``{label: row}`` of the modules and subpackages of ``folder`` (name order)."""
    base = ROOT / folder
    if not base.is_dir():
        raise ValueError(f"module table: no folder {folder}")
    out: dict[str, str] = {}
    for path in sorted(base.iterdir()):
        if path.is_dir() and (path / "__init__.py").is_file():
            if "no-packages" not in options:
                label = _label(path, folder, options) + "/"
                out[label] = f"| `{label}` | {summary(path / '__init__.py')} | |"
        elif path.suffix == ".py" and (path.name != "__init__.py" or _defines_code(path)):
            label = _label(path, folder, options)
            names = ", ".join(f"`{n}`" for n in public_names(path))
            out[label] = f"| `{label}` | {summary(path)} | {names} |".replace("|  |", "| |")
    return out


def _label(path: Path, folder: str, options: set[str]) -> str:
    return str(path.relative_to(ROOT if "paths" in options else ROOT / folder))


def _row_label(line: str) -> str | None:
    cells = line.split("|")
    return cells[1].strip().strip("`") if len(cells) > 2 else None


def render(text: str) -> str:
    """``text`` with every module table regenerated."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = START.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        options = set(match["options"].split())
        if options - OPTIONS:
            raise ValueError(f"{lines[i]}: unknown options {sorted(options - OPTIONS)}")
        try:
            end = lines.index(END, i + 1)
        except ValueError:
            raise ValueError(f"{lines[i]}: no '{END}' after it") from None
        old = lines[i + 1 : end]
        header = old[:2] if len(old) >= 2 and old[1].startswith("|--") else DEFAULT_HEADER
        fresh = rows(match["folder"], options)
        order = [label for label in map(_row_label, old[2:]) if label in fresh]
        order += [label for label in fresh if label not in order]
        out += [lines[i], *header, *(fresh[k] for k in order), END]
        i = end + 1
    return "\n".join(out)


def problems(text: str) -> list[str]:
    """What the page says that the tree does not bear out (besides stale tables)."""
    found = []
    named = {ROOT / "rdcl"}
    for token in re.findall(r"`([^`\s]+)`", text):
        if token.startswith(PATH_ROOTS) and not re.search(r"[<>{}*]", token):
            named.add(ROOT / token.rstrip("/"))
            if not (ROOT / token).exists():
                found.append(f"names `{token}`, which does not exist")
    for match in re.finditer(START.pattern, text, re.M):
        options = set(match["options"].split())
        for label in rows(match["folder"], options):
            base = ROOT if "paths" in options else ROOT / match["folder"]
            named.add(base / label.rstrip("/"))
    packages = [p.parent for p in (ROOT / "rdcl").rglob("__init__.py")]
    modules = [p for p in (ROOT / "rdcl").glob("*.py") if p.name != "__init__.py"]
    for path in sorted([*packages, *modules]):
        if path not in named:
            found.append(f"does not name `{path.relative_to(ROOT)}`")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the tables in place")
    mode.add_argument("--check", action="store_true", help="exit 1 when the page is stale")
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    fresh = render(text)
    stale = fresh != text
    if args.write and stale:
        DOC.write_text(fresh, encoding="utf-8")
        print(f"rewrote the module tables of {DOC.relative_to(ROOT)}")
    elif stale:
        name = str(DOC.relative_to(ROOT))
        diff = difflib.unified_diff(text.split("\n"), fresh.split("\n"), name, "generated")
        print(
            f"the module tables of {name} are stale (python tools/architecture_tables.py --write):"
        )
        print("\n".join(line.rstrip("\n") for line in diff))
    issues = problems(fresh)
    for issue in issues:
        print(f"{DOC.relative_to(ROOT)} {issue}")
    return 1 if issues or (stale and not args.write) else 0


if __name__ == "__main__":
    sys.exit(main())
