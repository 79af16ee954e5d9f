"""From the engine's edit to the edits a client applies: pure functions, no LSP types.

The engine's `body_edit` places an answer in the file (`apply` gives the new
text); `minimal_edit`, `covering` and `completion_edits` shape that change as
completion items need it. Positions here are (line, column) in Python string
indices (code points); the server converts them to the client's units (UTF-16
by default) at its edge.
"""

from __future__ import annotations

from dataclasses import dataclass

from cascode.engine.context.request import apply_edit, clamp, lines_of, text_between

__all__ = ["Edit", "apply", "clamp", "completion_edits", "covering", "lines_of",
           "minimal_edit", "offset", "position", "text_between"]

Pos = tuple[int, int]


@dataclass(frozen=True)
class Edit:
    """Replace the text between `start` and `end` with `text`."""

    start: Pos
    end: Pos
    text: str


def offset(lines: list[str], pos: Pos) -> int:
    """The offset of `pos` in the text `"\n".join(lines)`."""
    return sum(len(x) + 1 for x in lines[: pos[0]]) + pos[1]


def position(lines: list[str], off: int) -> Pos:
    """The position of offset `off` in the text `"\n".join(lines)`."""
    for i, line in enumerate(lines):
        if off <= len(line):
            return i, off
        off -= len(line) + 1
    return len(lines) - 1, len(lines[-1])


def minimal_edit(old_source: str, new_source_text: str) -> Edit:
    """The smallest run of whole lines that turns one text into the other."""
    old, new = lines_of(old_source), lines_of(new_source_text)
    p = 0
    while p < len(old) and p < len(new) and old[p] == new[p]:
        p += 1
    s = 0
    while s < len(old) - p and s < len(new) - p and old[-1 - s] == new[-1 - s]:
        s += 1
    old_end, new_end = len(old) - s, len(new) - s
    inserted = new[p:new_end]
    if old_end > p:  # some old lines change
        if inserted:
            return Edit((p, 0), (old_end - 1, len(old[old_end - 1])), "\n".join(inserted))
        if old_end < len(old):  # delete whole lines, line ends included
            return Edit((p, 0), (old_end, 0), "")
        return Edit((p - 1, len(old[p - 1])), (old_end - 1, len(old[old_end - 1])), "")
    # Pure insertion before old line p.
    if p < len(old):
        return Edit((p, 0), (p, 0), "\n".join(inserted) + "\n")
    last = len(old) - 1
    return Edit((last, len(old[last])), (last, len(old[last])), "\n" + "\n".join(inserted))


def covering(lines: list[str], edit: Edit, cursor: Pos) -> Edit:
    """The same change, widened over unchanged text so that it contains the cursor.

    Editors show inline completions only when their range contains the cursor.
    """
    start, end, text = edit.start, edit.end, edit.text
    if cursor < start:
        text = text_between(lines, cursor, start) + text
        start = cursor
    if cursor > end:
        text = text + text_between(lines, end, cursor)
        end = cursor
    return Edit(start, end, text)


def completion_edits(lines: list[str], edit: Edit, cursor: Pos) -> tuple[Edit, list[Edit]]:
    """Split a covering edit for a completion item.

    LSP wants the item's `textEdit` on one line, containing the cursor; the
    rest of the span becomes `additionalTextEdits` that delete it. No two edits
    share a start position (clients differ in how they order those), and in
    the usual stub (the cursor on the body's line or at the docstring's end)
    there is no additional edit at all.
    """
    line = cursor[0]
    eol = len(lines[line])
    start, end, text = edit.start, edit.end, edit.text
    extra = []
    if end[0] > line:
        if not text.endswith("\n") and end[0] + 1 < len(lines):
            # Widen over unchanged text to the next line start, so the text ends a line.
            text += lines[end[0]][end[1]:] + "\n"
            end = (end[0] + 1, 0)
        if text.endswith("\n"):
            # Keep the cursor line's own line break instead of replacing it.
            if end > (line + 1, 0):
                extra.append(Edit((line + 1, 0), end, ""))
            end, text = (line, eol), text[:-1]
        else:
            extra.append(Edit((line, eol), end, ""))
            end = (line, eol)
    if start[0] < line:
        extra.append(Edit(start, (line, 0), ""))
        start = (line, 0)
    return Edit(start, end, text), extra


def apply(source: str, edit: Edit) -> str:
    """The text after the edit."""
    return apply_edit(source, edit.start, edit.end, edit.text)
