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


def test_readme_headline_stub_has_an_example_to_prove_its_answer():
    import re
    import subprocess

    from cascode.engine.context import last_function
    from cascode.engine.examples import task_examples

    head = README.split("## ", 1)[0]
    command = re.search(r"printf ('[^']*') \| \.venv/bin/cascode complete", head)
    assert command, "the headline `printf '...' | .venv/bin/cascode complete` is gone"
    # What the shell's printf writes is what `cascode complete` reads on stdin.
    stub = subprocess.run(
        ["bash", "-c", f"printf {command.group(1)}"], capture_output=True, text=True, check=True
    ).stdout
    fc = last_function(stub)
    assert fc is not None, stub
    examples = task_examples(fc.task())
    assert [e.text for e in examples] == ['assert is_palindrome("Racecar") == True'], stub
    assert "passed your 1 example" in head
