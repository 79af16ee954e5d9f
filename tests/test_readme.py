"""The README stays true: its opening commands and its settings table."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_settings_table_is_the_generated_one():
    from cascode.server.settings import markdown_table

    assert markdown_table() in README, "regenerate: python -m cascode.server.settings markdown"


def test_readme_opens_with_the_install_and_test_commands():
    head = README.split("## ", 1)[0]
    assert "./install.sh && " in head and "| .venv/bin/cascode complete" in head
    assert "bash .ci/run" in head
    assert (ROOT / "install.sh").stat().st_mode & 0o111
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./install.sh --dev" in ci and "python -m pytest" in ci
