"""What an editor asks at a cursor: the function to complete there, the task the cascade
gets, and where an answer goes in the file.

Pure functions, shared by the language server, `cascode complete FILE:LINE` and the
real-code data set, so that a benchmark's request is exactly the editor's request.
Positions are (line, column) in code points, 0-based; lines end at `\\n`, `\\r\\n` or
`\\r` (the Language Server Protocol's rule).
"""

from __future__ import annotations

import ast
import dataclasses
import logging
from dataclasses import dataclass

from ..types import Task
from .body import body_edit
from .function import FunctionContext, function_at
from .rest import continuation_edit, continues_at

log = logging.getLogger(__name__)

Pos = tuple[int, int]


@dataclass(frozen=True)
class Request:
    """The function to complete at `cursor` in `source`.

    `rest`: the function has written lines and the cursor is at their end, so only
    the rest of it is asked for (`continuation_edit` places the answer); otherwise
    the function is a stub whose body the answer supplies (`body_edit`).
    """

    source: str
    cursor: Pos
    fc: FunctionContext
    rest: bool

    @property
    def lines(self) -> list[str]:
        return lines_of(self.source)


def lines_of(source: str) -> list[str]:
    """The document's lines without their line ends (LSP counts `\\n`, `\\r\\n`, `\\r`)."""
    lines = source.splitlines()
    if not lines or source.endswith(("\n", "\r")):
        lines.append("")
    return lines


def clamp(lines: list[str], pos: Pos) -> Pos:
    """A position inside the document (LSP: a character past the line end means the end)."""
    line = min(max(pos[0], 0), len(lines) - 1)
    return line, min(max(pos[1], 0), len(lines[line]))


def text_between(lines: list[str], start: Pos, end: Pos) -> str:
    """The text from `start` to `end`, lines joined with `\\n`."""
    if start >= end:
        return ""
    if start[0] == end[0]:
        return lines[start[0]][start[1]:end[1]]
    parts = [lines[start[0]][start[1]:]]
    parts.extend(lines[start[0] + 1:end[0]])
    parts.append(lines[end[0]][:end[1]])
    return "\n".join(parts)


def apply_edit(source: str, start: Pos, end: Pos, text: str) -> str:
    """The text after replacing [start, end) with `text` (line ends become `\\n`)."""
    lines = lines_of(source)
    head = text_between(lines, (0, 0), start)
    tail = text_between(lines, end, (len(lines) - 1, len(lines[-1])))
    return head + text + tail


def request_at(source: str, cursor: Pos) -> Request | None:
    """The function to complete at `cursor`, or None where there is nothing to complete
    (not in a function, written lines of it below the cursor, a header still being
    typed, a file the scanner cannot read)."""
    lines = lines_of(source)
    cursor = clamp(lines, cursor)
    try:
        fc = function_at(source, *cursor)
    except Exception:  # noqa: BLE001 - a file the scanner chokes on gets no completion
        log.exception("finding the function at %d:%d", *cursor)
        return None
    if fc is None:
        return None
    if fc.is_stub:
        # A header still being typed (`def f(a, b` with no colon yet) gets nothing.
        return Request(source, cursor, fc, False) if _header_complete(fc) else None
    if continues_at(fc, lines, cursor):
        return Request(source, cursor, fc, True)
    return None


def request_task(request: Request, *, context_tokens: int = 1024,
                 file_context: bool = True) -> Task:
    """The task the cascade gets: the function, and the file around it fitted to
    `context_tokens` prompt tokens (-1: the whole file context; the sandbox always runs
    the whole context); with `file_context` False, no file around it at all."""
    fc = request.fc
    if not file_context:
        return dataclasses.replace(fc.task(), context="")
    return fc.task(context_tokens if context_tokens >= 0 else None)


def answer_edit(request: Request, code: str) -> tuple[Pos, Pos, str] | None:
    """The edit that places `code` (a whole function at column 0, as the cascade answers)
    in the file: the continuation at the cursor for the rest of a function, the body
    otherwise; None when the answer adds nothing to the written lines."""
    if request.rest:
        return continuation_edit(request.fc, code, request.lines, request.cursor)
    return body_edit(request.fc, code, request.cursor)


def completed_source(request: Request, code: str) -> str | None:
    """The file with `code` placed as the editor places it (None: nothing to place)."""
    edit = answer_edit(request, code)
    return None if edit is None else apply_edit(request.source, *edit)


def _header_complete(fc: FunctionContext) -> bool:
    unit = fc.body_indent[len(fc.indent):] or "    "
    try:
        ast.parse(fc.prompt + unit + "pass\n")
    except (SyntaxError, ValueError):
        return False
    return True
