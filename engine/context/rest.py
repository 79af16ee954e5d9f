"""The rest of a half-written function: where it may be asked for, and the edit that
inserts only what the model added.

A user who has written the first lines of a body asks for the rest with the
cursor at the end of those lines: on the function's last written line (nothing
but whitespace right of the cursor), or on the line right below it, blank and
indented at least as deep as the body. The prompt is the function as written
(`FunctionContext.prompt` holds the partial body); every candidate is those
lines plus its continuation (the model continues the prefilled prompt), so the
examples and tests check what the user will have. The edit inserts the
continuation at the cursor and rewrites no written line.
"""

from __future__ import annotations

from .function import FunctionContext
from .scanner import width

Pos = tuple[int, int]


def continues_at(fc: FunctionContext, lines: list[str], cursor: Pos) -> bool:
    """Whether `cursor` is at the end of the written lines of a function with a body.

    `lines` are the file's lines without line ends. False for a stub (answered
    as a whole body), for a cursor with written lines of the function below it,
    and for a cursor the user has moved past the function with (a blank line
    between, or less indented than the body).
    """
    if fc.is_stub or fc.inline_body_at is not None or fc.docstring_closer:
        return False
    line, col = cursor
    last = fc.end_line - 1
    if not 0 <= last < len(lines) or line >= len(lines):
        return False
    if line == last:
        return not lines[line][col:].strip()
    if line == last + 1:
        text = lines[line]
        return not text.strip() and col >= width(fc.body_indent) and col <= len(text)
    return False


def continuation_edit(fc: FunctionContext, solution: str, lines: list[str],
                      cursor: Pos) -> tuple[Pos, Pos, str] | None:
    """The edit that inserts the solution's continuation at `cursor`, or None when the
    solution adds nothing (or does not start with the written lines).

    The range is empty at the cursor, except on a blank line whose whitespace left
    of the cursor is deeper than the continuation's first line: that whitespace
    (of a blank line) is replaced.
    """
    base = fc.prompt.rstrip()
    if not solution.startswith(base):
        return None
    rest = solution[len(base):].rstrip()
    if not rest.strip():
        return None
    added = rest.lstrip("\n").split("\n")
    shifted = [fc.indent + x if x.strip() else "" for x in (a.rstrip() for a in added)]
    line, col = cursor
    if line == fc.end_line - 1:  # on the last written line: new lines after it
        return cursor, cursor, "\n" + "\n".join(shifted)
    before = lines[line][:col]
    first = shifted[0]
    if first.startswith(before):
        return cursor, cursor, "\n".join([first[len(before):], *shifted[1:]])
    return (line, 0), cursor, "\n".join(shifted)
