"""The layout editors and type checkers see: `cascode.engine` is a folder of the
checkout (a committed symlink), so static tools resolve the imports without running
the editable install's import hook."""

from __future__ import annotations

import os
from pathlib import Path

import jedi
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["engine", "server", "benchmarks", "plans"])
def test_cascode_subpackages_are_links_to_the_top_level_folders(name):
    link = ROOT / "cascode" / name
    assert link.is_symlink(), f"cascode/{name} must be a symlink (checkout with symlinks on)"
    assert os.readlink(link) == f"../{name}"
    assert (link / "__init__.py").resolve() == ROOT / name / "__init__.py"


def test_jedi_goes_to_the_definition_of_an_engine_name_from_the_server():
    path = ROOT / "server" / "completion.py"
    source = path.read_text()
    line_no, line = next((i, x) for i, x in enumerate(source.splitlines(), 1)
                         if x.startswith("from cascode.engine.cancel import CancelToken"))
    script = jedi.Script(source, path=str(path), project=jedi.Project(ROOT))
    found = script.goto(line_no, line.index("CancelToken"), follow_imports=True)
    assert [(d.full_name, d.type) for d in found] == [("cascode.engine.cancel.CancelToken",
                                                      "class")]
    assert Path(found[0].module_path).resolve() == ROOT / "engine" / "cancel.py"
    assert "class CancelToken" in source_line(found[0].module_path, found[0].line)


def source_line(path: Path, line: int) -> str:
    return Path(path).read_text().splitlines()[line - 1]
