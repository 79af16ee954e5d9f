"""From an answer to the exact edit: real-looking files, the cursor anywhere in the stub."""

from __future__ import annotations

import pytest

from cascode.engine.context import body_edit, function_at
from cascode.server import edits

FILE = '''import os


class Greeter:
    """Greets people."""

    def greet(self, name: str) -> str:
        """Return a greeting for name, e.g. 'Hello, Ada!'."""
        pass

    def other(self):
        return 1


async def fetch(url):
\t"""Fetch url (tab-indented)."""
\t...


def tail(é):
    """Unicode parameter, last function, no final newline."""'''


def _complete(source: str, line: int, character: int, body: str) -> tuple[str, edits.Edit]:
    fc = function_at(source, line, character)
    assert fc is not None and fc.is_stub
    code = fc.prompt + body
    new = edits.apply(source, edits.Edit(*body_edit(fc, code)))
    edit = edits.covering(edits.lines_of(source), edits.minimal_edit(source, new),
                          (line, character))
    assert edits.apply(source, edit) == new
    return new, edit


def test_a_method_stub_is_replaced_in_place():
    new, edit = _complete(FILE, 8, 8, "    return f'Hello, {name}!'\n")
    assert "        return f'Hello, {name}!'\n\n    def other" in new
    assert "pass" not in new
    assert edit.start == (8, 0) and edit.end[0] == 8


def test_a_tab_indented_async_stub_keeps_its_tabs():
    new, _ = _complete(FILE, 16, 1, "    return url\n")
    assert '\t"""Fetch url (tab-indented)."""\n\treturn url\n' in new


def test_the_last_function_of_a_file_without_final_newline():
    new, edit = _complete(FILE, 19, 4, "    return é\n")
    assert new.endswith('"""Unicode parameter, last function, no final newline."""\n'
                        "    return é\n")
    assert edit.start <= (19, 4) <= edit.end


@pytest.mark.parametrize("cursor", [(5, 0), (5, 4), (4, 19), (4, 3)])
def test_the_edit_always_contains_the_cursor(cursor):
    source = 'import math\n\n\ndef f(x):\n    """Square x."""\n    \n'
    fc = function_at(source, *cursor)
    assert fc is not None
    new = edits.apply(source, edits.Edit(*body_edit(fc, fc.prompt + "    return x * x\n")))
    lines = edits.lines_of(source)
    edit = edits.covering(lines, edits.minimal_edit(source, new), cursor)
    assert edit.start <= cursor <= edit.end
    assert edits.apply(source, edit) == new
    main, extra = edits.completion_edits(lines, edit, cursor)
    assert main.start[0] == main.end[0] == cursor[0]
    assert main.start <= cursor <= main.end
    assert extra == []  # the usual stub needs no additional edit
    assert edits.apply(source, main) == new


def test_a_span_over_several_lines_splits_into_non_overlapping_edits():
    source = "def f():\n    '''Doc.'''\n    # todo\n    pass\nx = 1\n"
    lines = edits.lines_of(source)
    edit = edits.Edit((2, 0), (3, 8), "    return 1")
    expected = edits.apply(source, edit)
    for cursor in [(2, 4), (3, 8), (2, 0)]:
        main, extra = edits.completion_edits(lines, edit, cursor)
        assert main.start[0] == main.end[0] == cursor[0]
        starts = [e.start for e in [main, *extra]]
        assert len(set(starts)) == len(starts)
        text = source
        for e in sorted([main, *extra], key=lambda e: e.start, reverse=True):
            text = edits.apply(text, e)
        assert text == expected


def test_a_cursor_past_the_end_is_clamped():
    lines = edits.lines_of("ab\ncd\n")
    assert edits.clamp(lines, (1, 9)) == (1, 2)
    assert edits.clamp(lines, (7, 1)) == (2, 0)


def test_minimal_edit_of_pure_insertion_and_deletion():
    assert edits.minimal_edit("a\nc\n", "a\nb\nc\n") == edits.Edit((1, 0), (1, 0), "b\n")
    assert edits.apply("a\nb\nc\n", edits.minimal_edit("a\nb\nc\n", "a\nc\n")) == "a\nc\n"
    assert edits.apply("a", edits.minimal_edit("a", "a\nb")) == "a\nb"
