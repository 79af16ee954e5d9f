"""Completing an empty body replaces the indentation-only line the cursor was on."""

from __future__ import annotations

from cascode.engine.context import function_at
from cascode.server.edits import new_source

SOLUTION = 'def add(a, b):\n    """Return the sum of a and b."""\n    return a + b\n'


def test_the_cursor_line_is_replaced_not_left_behind():
    src = 'import math\n\n\ndef add(a, b):\n    """Return the sum of a and b."""\n    \n\nX = 1\n'
    out = new_source(src, function_at(src, 5, 4), SOLUTION, (5, 4))
    assert out == (
        'import math\n\n\ndef add(a, b):\n    """Return the sum of a and b."""\n'
        "    return a + b\n\nX = 1\n"
    )


def test_blank_separator_lines_stay():
    src = 'def add(a, b):\n    """Return the sum of a and b."""\n\n\ndef g():\n    pass\n'
    out = new_source(src, function_at(src, 1, 4), SOLUTION, (1, 4))
    assert out.startswith(SOLUTION + "\n\ndef g():")


def test_a_cursor_on_the_docstring_leaves_the_lines_below_alone():
    src = 'def add(a, b):\n    """Return the sum of a and b."""\n    \n'
    out = new_source(src, function_at(src, 1, 10), SOLUTION, (1, 10))
    assert out == SOLUTION + "    \n"
