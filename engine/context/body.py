"""Putting a solution back: the completed body, and the edit that places it in the file."""

from __future__ import annotations

from .function import FunctionContext, body_lines
from .scanner import DEF, Source, indent_of, split_lines, statements, width

Pos = tuple[int, int]


def insert_body(fc: FunctionContext, solution: str) -> str:
    """The text that replaces lines [body_start_line, end_line) of the file.

    `solution` is a whole function at column 0, as the cascade returns it (the
    prompt followed by the generated body), possibly with helper functions,
    classes or imports before or after it. The result is the solution's body
    (without its docstring: the file keeps its own) re-indented to the
    function's body indentation, with the helpers and imports first, nested in
    the body, so that one edit at one place completes the function (preceded
    by the closing quotes of a docstring the user has not closed yet). Empty
    when the solution has no body.
    """
    sol = Source(solution)
    target = None
    for i in sol.children(None):
        m = DEF.match(sol.lls[i].text)
        if m and m.group(2) == fc.name:
            target = i
            break
    if target is None:
        return ""
    doc, body = body_lines(sol, target)
    tll = sol.lls[target]
    helpers = []
    for i, start, end in statements(sol, None):
        m = DEF.match(sol.lls[i].text)
        if i != target and not (m and m.group(2) == fc.name):  # a restated copy is dropped
            helpers.append(sol.text(start, end))
    unit = fc.body_indent[len(fc.indent):] if fc.body_indent.startswith(fc.indent) else "    "
    out = [fc.body_indent + fc.docstring_closer + "\n"] if fc.docstring_closer else []
    out += [_reindent(h, 0, fc.body_indent, unit) for h in helpers]
    if tll.colon is not None and not body:
        row, col = tll.colon
        rest = sol.lines[row].rstrip("\r\n")[col + 1 :].strip()
        if rest and not rest.startswith("#"):
            out.append(fc.body_indent + rest + "\n")  # `def f(x): return x`
    if body:
        first = sol.lls[body[0]]
        start = first.start
        out.append(_reindent(sol.text(start, tll.block_end), width(first.indent),
                             fc.body_indent, unit))
    return "".join(out)


def body_edit(
    fc: FunctionContext, solution: str, cursor: Pos | None = None
) -> tuple[Pos, Pos, str]:
    """The edit that completes the function: ((line, char), (line, char), new text).

    It applies as it is to the file `fc` was cut from. Normally it replaces the
    body lines [body_start_line, end_line). For a body written on the `def` line
    (`def f(): ...`), it replaces everything after the header's colon, so the
    result is still valid Python. When the body is empty and `cursor` (where the
    completion was asked) waits on an indentation-only line below the function,
    the lines down to the cursor's are replaced by the body rather than left
    behind it. When the function ends the file on a line without a line end, the
    body starts a new line there.
    """
    text = insert_body(fc, solution)
    start: Pos
    if fc.inline_body_at is not None:
        start, text = (fc.body_start_line - 1, fc.inline_body_at), "\n" + text
    else:
        start = (fc.body_start_line, 0)
    end: Pos = (fc.end_line, 0)
    if (
        start == end
        and cursor is not None
        and fc.end_line <= cursor[0] < fc.end_line + fc.indented_lines_after
    ):
        end = (cursor[0] + 1, 0)
    if fc.eof_column is not None:
        eof = (fc.end_line - 1, fc.eof_column)
        if start[0] == fc.end_line:  # the body goes after the last line
            start, text = eof, "\n" + text
        end = eof
    return start, end, text


def _reindent(code: str, base: int, to: str, unit: str) -> str:
    """Move `code` (its outermost lines indented `base` columns) to indentation `to`,
    converting each further level of the code's own unit into `unit`."""
    lines = split_lines(code)
    widths = sorted({width(indent_of(x)) - base for x in lines if x.strip()} - {0})
    step = max(1, widths[0]) if widths else 4
    out = []
    for line in lines:
        if not line.strip():
            out.append("\n")
            continue
        indent = indent_of(line)
        rel = max(0, width(indent) - base)
        levels, extra = divmod(rel, step)
        out.append(to + unit * levels + " " * extra + line[len(indent):].rstrip("\r\n") + "\n")
    return "".join(out)
