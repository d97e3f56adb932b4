"""docs/architecture.md is current: its module tables are those tools/architecture_tables.py
generates from the module docstrings, and every path it names exists."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location(
        "architecture_tables", ROOT / "tools" / "architecture_tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_architecture_doc_is_current(capsys) -> None:
    status = _tool().main(["--check"])
    assert status == 0, capsys.readouterr().out


def test_a_stale_table_or_a_missing_path_is_found() -> None:
    tool = _tool()
    text = tool.DOC.read_text(encoding="utf-8")
    assert tool.render(text) == text
    row = next(line for line in text.split("\n") if line.startswith("| `image.py` |"))
    missing = tool.render(text.replace(row + "\n", ""))  # back, at the end of its table
    assert missing != text and row in missing.split("\n")
    renamed = text.replace(row, row.replace("Medical image I/O", "Image I/O"))
    assert tool.render(renamed) == text
    assert tool.problems(text) == []
    assert tool.problems(text + "\nSee `rdcl/no_such_module.py`.\n") == [
        "names `rdcl/no_such_module.py`, which does not exist"
    ]
