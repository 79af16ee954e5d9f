"""Finding the function to complete, and cutting it out of its file (`FunctionContext`)."""

from __future__ import annotations

import ast
import dataclasses
import re
import textwrap
from dataclasses import dataclass, field

from ..types import Task
from .file_context import file_context, file_context_after
from .scanner import DEF, Line, Source, ensure_newline, statements, unix_lines, width


@dataclass(frozen=True)
class FunctionContext:
    """A function to complete, cut out of its file.

    `prompt` is what the model continues: the function's decorators (except
    `property`/`classmethod`/`staticmethod`-like ones of a method, which would
    make the dedented function uncallable), its `def` line(s), its docstring
    (closed if the user has not closed it yet) and, unless the body is a stub,
    the partial body already written; dedented to column 0; ending with a
    newline. `start_line`/`end_line` are the function's exact span (decorators
    included, end exclusive, trailing blank lines and comments excluded). The
    body occupies lines [body_start_line, end_line): replacing them with
    `insert_body(...)` gives the completed function (`body_edit` gives the
    exact edit, also for a body written on the `def` line itself). `body_indent`
    is the indentation of the body in the file (guessed from the file when
    there is no body yet). `indented_lines_after` and `eof_column` describe the
    file right below the function, for `body_edit`.
    """

    name: str
    prompt: str
    context: str
    indent: str
    start_line: int
    end_line: int
    body_start_line: int
    is_stub: bool
    is_async: bool
    body_indent: str = "    "
    inline_body_at: int | None = None  # column after the header's `:` when the body is on it
    docstring_closer: str = ""  # the quotes an unclosed docstring needs (insert_body adds them)
    # How many indentation-only lines (each with its line end) follow end_line.
    indented_lines_after: int = 0
    # The length of the function's last line when it ends the file without a line end.
    eof_column: int | None = None
    source: str = field(default="", repr=False)  # the whole file, for the prompt's context
    # The classes and functions around it, outermost first, dotted ("" at top level).
    owner: str = ""
    # The file without the top-level statement that holds the function (for the static
    # checks: what the file defines beside the context).
    file_around: str = field(default="", repr=False)
    # The file's definitions below that statement (`file_context_after`): run after each
    # candidate in the sandbox, never prompted.
    context_after: str = field(default="", repr=False)
    # A method of a class reachable from the module (every definition around it a
    # class): that class, dotted, else "". `descriptors` holds the descriptor decorator
    # lines the prompt leaves out (`@property`), dedented, which the sandbox applies when
    # it puts a candidate back in its class (engine/methods.py `executable_solution`).
    method_of: str = ""
    descriptors: str = ""

    def task(self, context_tokens: int | None = None) -> Task:
        """The task; with `context_tokens`, the prompt shows a budgeted view of the
        file (engine/context/budget.py) while the sandbox still runs `context`."""
        task = Task(self.prompt, entry_point=self.name, context=self.context,
                    owner=self.owner, file_around=self.file_around,
                    context_after=self.context_after, method_of=self.method_of,
                    descriptors=self.descriptors)
        if context_tokens is None or not self.source:
            return task
        from .budget import context_budget

        return dataclasses.replace(task, context_budget=context_budget(
            self.context, self.name, self.prompt, context_tokens, self.owner))


_CLASS = re.compile(r"class\s+(\w+)")
_STRING_START = re.compile(r"[rRuUbBfF]{0,2}('''|\"\"\"|'|\")")
_DESCRIPTOR_DECORATOR = re.compile(
    r"@\s*((abc\.|functools\.)?(property|classmethod|staticmethod|abstractmethod|cached_property)"
    r"|[\w.]+\.(setter|getter|deleter))\s*(#.*)?$"
)


def function_at(source: str, line: int, character: int = 0) -> FunctionContext | None:
    """The innermost function at a 0-based position, or None outside functions.

    A position is in a function when it is on its decorators, signature,
    docstring or body; or on a blank line right below the function with the
    cursor indented deeper than its `def`; or (whatever the column) on the line
    right below a function that has no body yet (only a signature or a
    docstring).
    """
    src = Source(source)
    best: int | None = None
    for i, ll in enumerate(src.lls):
        if not src.is_def(i):
            continue
        start = src.lls[src.first_decorator(i)].start
        if start <= line < ll.block_end or _owns_trailing_line(src, i, line, character):
            if best is None or ll.start >= src.lls[best].start:
                best = i
    return None if best is None else _build(src, best)


def last_function(source: str) -> FunctionContext | None:
    """The last top-level function of a source (a HumanEval-style prompt on stdin)."""
    src = Source(source)
    defs = [i for i in src.children(None) if src.is_def(i)]
    return _build(src, defs[-1]) if defs else None


def body_lines(src: Source, i: int) -> tuple[int | None, list[int]]:
    """(the docstring's logical line or None, the other direct body lines) of a def."""
    body = src.children(i)
    if body and _is_docstring(src.lls[body[0]], src.text(src.lls[body[0]].start,
                                                         src.lls[body[0]].end)):
        return body[0], body[1:]
    return None, body


def _owns_trailing_line(src: Source, i: int, line: int, character: int) -> bool:
    ll = src.lls[i]
    end = ll.block_end
    if line < end or any(src.lines[r].strip() for r in range(end, min(line + 1, len(src.lines)))):
        return False
    if character > width(ll.indent):
        return True
    return line == end and not body_lines(src, i)[1]


# ---------------------------------------------------------------------------
# Building a FunctionContext


def _is_docstring(ll: Line, text: str) -> bool:
    m = _STRING_START.match(ll.text)
    if not m:
        return False
    try:
        body = ast.parse(_statement(text)).body
    except SyntaxError:
        return len(m.group(1)) == 3  # a docstring still being typed
    return (
        len(body) == 1
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    )


def _statement(text: str) -> str:
    """A logical line that starts with a string, as a statement at column 0. Only its
    first line's indentation counts: the lines after it are inside the string (a
    docstring line may sit left of the opening quotes), where `dedent` would fail."""
    return text.lstrip(" \t\f")


def _is_stub_code(code: str) -> bool:
    try:
        body = ast.parse(textwrap.dedent(code)).body
    except SyntaxError:
        return False
    if len(body) != 1:
        return False
    stmt = body[0]
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return stmt.value.value is Ellipsis
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def _dedent_line(line: str, indent: str) -> str:
    if line.startswith(indent):
        return line[len(indent):]
    return line.lstrip(" \t\f")  # a continuation or docstring line indented less


def _unterminated_docstring(src: Source, doc: int) -> str | None:
    """The closing quotes a docstring still being typed needs, or None."""
    ll = src.lls[doc]
    try:
        ast.parse(_statement(src.text(ll.start, ll.end)))
    except SyntaxError:
        m = _STRING_START.match(ll.text)
        return m.group(1) if m else None
    return None


def _build(src: Source, i: int) -> FunctionContext:
    ll = src.lls[i]
    m = DEF.match(ll.text)
    assert m is not None
    first = src.first_decorator(i)
    start = src.lls[first].start
    indent = ll.indent
    is_method = ll.parent is not None and _CLASS.match(src.lls[ll.parent].text) is not None
    enclosing = _enclosing(src, i)
    owner = ".".join(name for _, name in enclosing if name)
    method_of = owner if is_method and all(cls for cls, _ in enclosing) else ""
    doc, body = body_lines(src, i)

    inline_at: int | None = None
    inline_code = ""
    if ll.colon is not None:
        row, col = ll.colon
        rest = src.lines[row].rstrip("\r\n")[col + 1 :]
        if rest.strip() and not rest.strip().startswith("#"):
            inline_at, inline_code = col + 1, rest.strip()

    body_start = src.lls[doc].end if doc is not None else ll.end
    if inline_at is not None:
        is_stub = _is_stub_code(inline_code)
    else:
        is_stub = not body or (len(body) == 1 and _is_stub_code(
            src.text(src.lls[body[0]].start, src.lls[body[0]].block_end)))

    body_indent = _body_indent(src, i, doc, body)
    parts: list[str] = []
    descriptors: list[str] = []  # kept only for a method `method_of` names
    for j in range(first, i):  # decorators
        dec = src.lls[j]
        if is_method and _DESCRIPTOR_DECORATOR.match(dec.text):
            descriptors.extend(_dedent_line(x, indent) for x in src.lines[dec.start : dec.end])
            continue
        parts.extend(_dedent_line(x, indent) for x in src.lines[dec.start : dec.end])
    if inline_at is not None:
        row, col = ll.colon  # type: ignore[misc]
        parts.extend(_dedent_line(x, indent) for x in src.lines[ll.start : row])
        parts.append(_dedent_line(src.lines[row][: col + 1], indent) + "\n")
        if not is_stub:
            parts.append(body_indent[len(indent):] + inline_code + "\n")
    else:
        parts.extend(_dedent_line(x, indent) for x in src.lines[ll.start : ll.end])
    closing = None
    if doc is not None:
        d = src.lls[doc]
        parts.extend(_dedent_line(x, indent) for x in src.lines[d.start : d.end])
        closing = _unterminated_docstring(src, doc)
        if closing:
            parts[-1] = ensure_newline(parts[-1])
            parts.append(body_indent[len(indent):] + closing + "\n")
    if not is_stub and inline_at is None:
        parts.extend(_dedent_line(x, indent) for x in src.lines[body_start : ll.block_end])
    prompt = "".join(ensure_newline(p) for p in parts)
    return FunctionContext(
        name=m.group(2),
        prompt=ensure_newline(unix_lines(prompt)),
        context=file_context(src, i),
        indent=indent,
        start_line=start,
        end_line=ll.block_end,
        body_start_line=body_start,
        is_stub=is_stub,
        is_async=m.group(1) is not None,
        body_indent=body_indent,
        inline_body_at=inline_at,
        docstring_closer=closing or "",
        indented_lines_after=_indented_lines(src.lines, ll.block_end),
        eof_column=_eof_column(src.lines, ll.block_end),
        source=src.source,
        owner=owner,
        file_around=_file_around(src, i),
        context_after=file_context_after(src, i),
        method_of=method_of,
        descriptors=unix_lines("".join(ensure_newline(x) for x in descriptors))
        if method_of else "",
    )


def _enclosing(src: Source, i: int) -> list[tuple[bool, str]]:
    """The blocks that enclose logical line `i`, outermost first, each as (whether it
    is a class, the name of the class or function; "" for another block)."""
    out: list[tuple[bool, str]] = []
    p = src.lls[i].parent
    while p is not None:
        cls = _CLASS.match(src.lls[p].text)
        m = cls or DEF.match(src.lls[p].text)
        out.append((cls is not None, m.group(m.lastindex or 1) if m else ""))
        p = src.lls[p].parent
    return out[::-1]


def _file_around(src: Source, i: int) -> str:
    """The file without the top-level statement (with its decorators and its `else`/
    `except` clauses) that holds logical line `i`."""
    outer = src.top_level(i)
    start, end = next((a, b) for head, a, b in statements(src, None) if head == outer)
    return unix_lines(src.text(0, start) + src.text(end, len(src.lines)))


def _body_indent(src: Source, i: int, doc: int | None, body: list[int]) -> str:
    first = doc if doc is not None else (body[0] if body else None)
    indent = src.lls[i].indent
    if first is not None and src.lls[first].indent.startswith(indent):
        return src.lls[first].indent
    # No body yet: follow the file's habit (a tab if any indented line starts with one).
    for ll in src.lls:
        if ll.indent:
            return indent + ("\t" if ll.indent.startswith("\t") else "    ")
    return indent + "    "


def _indented_lines(lines: list[str], start: int) -> int:
    """How many lines from `start` on hold only indentation, each with its line end."""
    n = 0
    for line in lines[start:]:
        text = line.rstrip("\r\n")
        if not text or text.strip() or text == line:
            break
        n += 1
    return n


def _eof_column(lines: list[str], end: int) -> int | None:
    """The length of line `end - 1` when it is the file's last and has no line end."""
    if end != len(lines) or not lines or lines[-1].endswith(("\n", "\r")):
        return None
    return len(lines[-1])
