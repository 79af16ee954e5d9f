"""`cascode complete FILE[:LINE]` takes the asserts of the project's test files
(cascode/commands/complete.py `_read_task`); a prompt on stdin does not."""

from __future__ import annotations

import io

from cascode.commands.complete import _read_task
from cascode.engine.examples import find_project_root

SOURCE = '''import datetime


def parse_date(text):
    """The date in an ISO text."""
'''
TESTS = '''import datetime

from pkg.dates import parse_date


def test_parse(tmp_path):
    assert parse_date("2020-01-02") == datetime.date(2020, 1, 2)
    assert parse_date(tmp_path) is None
'''


def test_a_file_s_task_carries_its_project_s_test_asserts(tmp_path):
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = pkg\n")
    (tmp_path / "pkg").mkdir()
    source = tmp_path / "pkg" / "dates.py"
    source.write_text(SOURCE)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_dates.py").write_text(TESTS)
    task, where, _ = _read_task(f"{source}:5")
    assert where == f"{source}:5" and task.entry_point == "parse_date"
    (example,) = task.test_examples  # the fixture's assert is left out
    assert example.text == 'assert parse_date("2020-01-02") == datetime.date(2020, 1, 2)'
    assert example.source == "import datetime\n" + example.text + "\n"
    assert example.origin == "tests/test_dates.py"


def test_no_project_or_stdin_no_test_asserts(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(SOURCE))
    task, where, _ = _read_task("-")
    assert where == "<stdin>" and task.test_examples == ()
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "m.py").write_text(SOURCE)
    (loose / "test_m.py").write_text("from m import parse_date\nassert parse_date('x') == 1\n")
    task, _, _ = _read_task(str(loose / "m.py"))
    if find_project_root(loose) is None:  # no pyproject.toml, setup.cfg, setup.py, .git above
        assert task.test_examples == ()
    (loose / "pyproject.toml").write_text("")
    task, _, _ = _read_task(str(loose / "m.py"))
    assert [e.origin for e in task.test_examples] == ["test_m.py"]
