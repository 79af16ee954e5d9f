"""Completing an empty body replaces the indentation-only line the cursor was on."""

from __future__ import annotations

from cascode.engine.context import body_edit, function_at
from cascode.server.edits import Edit, apply

SOLUTION = 'def add(a, b):\n    """Return the sum of a and b."""\n    return a + b\n'


def new_source(source: str, line: int, character: int) -> str:
    """The document after the engine's edit, asked at (line, character)."""
    fc = function_at(source, line, character)
    assert fc is not None
    return apply(source, Edit(*body_edit(fc, SOLUTION, (line, character))))


def test_the_cursor_line_is_replaced_not_left_behind():
    src = 'import math\n\n\ndef add(a, b):\n    """Return the sum of a and b."""\n    \n\nX = 1\n'
    out = new_source(src, 5, 4)
    assert out == (
        'import math\n\n\ndef add(a, b):\n    """Return the sum of a and b."""\n'
        "    return a + b\n\nX = 1\n"
    )


def test_blank_separator_lines_stay():
    src = 'def add(a, b):\n    """Return the sum of a and b."""\n\n\ndef g():\n    pass\n'
    out = new_source(src, 1, 4)
    assert out.startswith(SOLUTION + "\n\ndef g():")


def test_a_cursor_on_the_docstring_leaves_the_lines_below_alone():
    src = 'def add(a, b):\n    """Return the sum of a and b."""\n    \n'
    out = new_source(src, 1, 10)
    assert out == SOLUTION + "    \n"
