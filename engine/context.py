"""The function to complete at a position in a Python file, and its file context.

Used by `cascode complete FILE:LINE` and by the language server. The file is
usually being edited, so it often does not parse: every function here works
from a line scanner (strings, brackets, comments and continuations tracked;
blocks found by indentation, as Python's tokenizer does) and uses `ast` only on
small pieces (a docstring, a stub body, a context chunk). The scanner gives the
same spans as `ast` on files that parse (tested on the standard library), so an
answer does not change when one keystroke breaks the parse elsewhere.

Lines and the cursor are 0-based. Lines end at `\\n`, `\\r\\n` or `\\r` (the
Language Server Protocol's rule). `character` is only compared with the
indentation of the cursor's line, so UTF-16 and code-point counts agree.

What `context` holds (it goes into the prompt and is executed in the sandbox
before every solution, so it is made of chunks that parse on their own):

- the module's imports (also those below the function; relative imports are
  left out: executed in the sandbox they would fail every test), and the top-level
  definitions above it: functions, classes, assignments (constants, type
  aliases, loggers), and `try`/`if` blocks made only of imports and
  assignments (`try: import x` / `except ImportError: x = None`). Expression
  statements, loops, `if __name__ == "__main__"` blocks and chunks that do not
  parse are left out;
- for a method or a nested function, the enclosing top-level class or
  function with the function itself removed (an emptied block gets `pass`), so
  the model sees the attributes and sibling methods it may use, and a test can
  call a method as `name(Class(...), ...)`. A nested function's closure
  variables cannot be provided: its tests may fail and the cascade escalates.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

from .types import Task

__all__ = [
    "FunctionContext",
    "body_edit",
    "function_at",
    "insert_body",
    "last_function",
]


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
    `insert_body(...)` gives the completed function (see `body_edit` for a
    body written on the `def` line itself). `body_indent` is the indentation
    of the body in the file (guessed from the file when there is no body yet).
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

    def task(self) -> Task:
        return Task(self.prompt, entry_point=self.name, context=self.context)


# ---------------------------------------------------------------------------
# The scanner: logical lines and their blocks


@dataclass
class _Line:
    """A logical line: one statement's first line and its continuation lines."""

    start: int  # first physical line
    end: int  # physical line after the last one
    indent: str
    text: str  # the first physical line, stripped
    colon: tuple[int, int] | None  # (line, column) of the first `:` outside brackets
    parent: int | None = None  # enclosing logical line (a smaller indentation above)
    block_end: int = 0  # physical line after the last line of its indented block


_RECOVER = re.compile(
    r"(def|class|return|import|pass|raise|try|while|with|del|global|nonlocal|assert|break"
    r"|continue)\b|async\s+def\b|from\s+\S+\s+import\b"
)
_IN_CODE = re.compile(r"[#()\[\]{}'\":\\]")
_IN_STRING = {"'": re.compile(r"[\\']"), '"': re.compile(r'[\\"]')}
_CLOSES_STRING = re.compile(r"(async\s+def|def|class)\s|@")
_DEF = re.compile(r"(async\s+)?def\s+(\w+)")
_CLASS = re.compile(r"class\s+(\w+)")
_STRING_START = re.compile(r"[rRuUbBfF]{0,2}('''|\"\"\"|'|\")")
_DESCRIPTOR_DECORATOR = re.compile(
    r"@\s*((abc\.|functools\.)?(property|classmethod|staticmethod|abstractmethod|cached_property)"
    r"|[\w.]+\.(setter|getter|deleter))\s*(#.*)?$"
)


def _split_lines(source: str) -> list[str]:
    """Physical lines with their endings, split only at \\n, \\r\\n and \\r."""
    return re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", source)


def _width(indent: str) -> int:
    """Indentation width as Python counts it (a tab goes to the next multiple of 8)."""
    w = 0
    for ch in indent:
        w = (w // 8 + 1) * 8 if ch == "\t" else w + 1
    return w


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t\f"))]


def _scan(lines: list[str], offset: int = 0) -> list[_Line]:
    """Logical lines of `lines` (numbered from `offset`), tolerant of broken code.

    An unclosed bracket ends where a line starts with a keyword that cannot
    continue an expression (`def`, `return`, `import`, ...). A triple-quoted
    string still open at the end of the file ends before the first later line,
    indented no deeper than the string's first line, that starts a `def`,
    `class` or decorator (the user is typing a docstring).
    """
    out: list[_Line] = []
    depth = 0
    quote = ""  # the open string's quote ('' when none)
    string_row = -1
    continued = False  # a backslash continuation, or an open bracket or string
    for i, raw in enumerate(lines):
        row = i + offset
        line = raw.rstrip("\r\n")
        stripped = line.strip(" \t\f")
        if continued and depth > 0 and not quote and _RECOVER.match(stripped):
            depth, continued = 0, False  # the unclosed bracket was an error
        if not continued:
            if not stripped or stripped.startswith("#"):
                continue
            out.append(_Line(row, row + 1, _indent_of(line), stripped, None))
        current = out[-1]
        current.end = row + 1
        j = 0
        n = len(line)
        backslash = False
        while j < n:
            if quote:
                # Jump to the next backslash or quote character inside the string.
                m = _IN_STRING[quote[0]].search(line, j)
                if m is None:
                    break
                j = m.start()
                if line[j] == "\\":
                    j += 2
                elif line.startswith(quote, j):
                    j += len(quote)
                    quote = ""
                else:
                    j += 1
                continue
            m = _IN_CODE.search(line, j)
            if m is None:
                break
            j = m.start()
            ch = line[j]
            if ch == "#":
                break
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth = max(0, depth - 1)
            elif ch in "'\"":
                quote = ch * 3 if line.startswith(ch * 3, j) else ch
                string_row = i
                j += len(quote)
                continue
            elif ch == ":":
                if depth == 0 and current.colon is None:
                    current.colon = (row, j)
            elif j == n - 1:  # a backslash ending the line
                backslash = True
            j += 1
        if quote and len(quote) == 1 and not line.endswith("\\"):
            quote = ""  # an unterminated one-line string ends with its line
        continued = bool(quote) or depth > 0 or backslash
    for ll in out:
        # A statement left open by an error does not own the blank lines below it.
        while ll.end - 1 > ll.start and not lines[ll.end - 1 - offset].strip():
            ll.end -= 1
    if quote and len(quote) == 3:
        start_indent = _width(_indent_of(lines[string_row]))
        for i in range(string_row + 1, len(lines)):
            text = lines[i].strip()
            if _CLOSES_STRING.match(text) and _width(_indent_of(lines[i])) <= start_indent:
                head = _scan(lines[:i], offset)
                return head + _scan(lines[i:], offset + i)
    return out


def _tree(lls: list[_Line]) -> list[_Line]:
    """Set each logical line's parent and block end (Python's INDENT/DEDENT rule)."""
    stack: list[int] = []
    for i, ll in enumerate(lls):
        w = _width(ll.indent)
        while stack and _width(lls[stack[-1]].indent) >= w:
            stack.pop()
        ll.parent = stack[-1] if stack else None
        ll.block_end = ll.end
        stack.append(i)
        p = ll.parent
        while p is not None:
            lls[p].block_end = max(lls[p].block_end, ll.end)
            p = lls[p].parent
    return lls


class _Source:
    """A file, scanned once."""

    def __init__(self, source: str) -> None:
        self.lines = _split_lines(source)
        self.lls = _tree(_scan(self.lines))
        self._children: dict[int | None, list[int]] = {}
        for i, ll in enumerate(self.lls):
            self._children.setdefault(ll.parent, []).append(i)

    def text(self, start: int, end: int) -> str:
        return "".join(self.lines[start:end])

    def children(self, parent: int | None) -> list[int]:
        return self._children.get(parent, [])

    def first_decorator(self, i: int) -> int:
        """Index of the first decorator line of the statement at index i."""
        ll = self.lls[i]
        j = i
        while (
            j > 0
            and self.lls[j - 1].text.startswith("@")
            and self.lls[j - 1].indent == ll.indent
            and self.lls[j - 1].parent == ll.parent
        ):
            j -= 1
        return j

    def is_def(self, i: int) -> bool:
        return _DEF.match(self.lls[i].text) is not None


# ---------------------------------------------------------------------------
# Public functions


def function_at(source: str, line: int, character: int = 0) -> FunctionContext | None:
    """The innermost function at a 0-based position, or None outside functions.

    A position is in a function when it is on its decorators, signature,
    docstring or body; or on a blank line right below the function with the
    cursor indented deeper than its `def`; or (whatever the column) on the line
    right below a function that has no body yet (only a signature or a
    docstring).
    """
    src = _Source(source)
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
    src = _Source(source)
    defs = [i for i in src.children(None) if src.is_def(i)]
    return _build(src, defs[-1]) if defs else None


def _owns_trailing_line(src: _Source, i: int, line: int, character: int) -> bool:
    ll = src.lls[i]
    end = ll.block_end
    if line < end or any(src.lines[r].strip() for r in range(end, min(line + 1, len(src.lines)))):
        return False
    if character > _width(ll.indent):
        return True
    return line == end and not _body_lines(src, i)[1]


# ---------------------------------------------------------------------------
# Building a FunctionContext


def _is_docstring(ll: _Line, text: str) -> bool:
    m = _STRING_START.match(ll.text)
    if not m:
        return False
    try:
        body = ast.parse(textwrap.dedent(text)).body
    except SyntaxError:
        return len(m.group(1)) == 3  # a docstring still being typed
    return (
        len(body) == 1
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    )


def _body_lines(src: _Source, i: int) -> tuple[int | None, list[int]]:
    """(the docstring's logical line or None, the other direct body lines) of a def."""
    body = src.children(i)
    if body and _is_docstring(src.lls[body[0]], src.text(src.lls[body[0]].start,
                                                          src.lls[body[0]].end)):
        return body[0], body[1:]
    return None, body


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


def _ensure_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _unterminated_docstring(src: _Source, doc: int) -> str | None:
    """The closing quotes a docstring still being typed needs, or None."""
    ll = src.lls[doc]
    try:
        ast.parse(textwrap.dedent(src.text(ll.start, ll.end)))
    except SyntaxError:
        m = _STRING_START.match(ll.text)
        return m.group(1) if m else None
    return None


def _build(src: _Source, i: int) -> FunctionContext:
    ll = src.lls[i]
    m = _DEF.match(ll.text)
    assert m is not None
    first = src.first_decorator(i)
    start = src.lls[first].start
    indent = ll.indent
    is_method = ll.parent is not None and _CLASS.match(src.lls[ll.parent].text) is not None
    doc, body = _body_lines(src, i)

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
    for j in range(first, i):  # decorators
        dec = src.lls[j]
        if is_method and _DESCRIPTOR_DECORATOR.match(dec.text):
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
            parts[-1] = _ensure_newline(parts[-1])
            parts.append(body_indent[len(indent):] + closing + "\n")
    if not is_stub and inline_at is None:
        parts.extend(_dedent_line(x, indent) for x in src.lines[body_start : ll.block_end])
    prompt = "".join(_ensure_newline(p) for p in parts)
    return FunctionContext(
        name=m.group(2),
        prompt=_ensure_newline(prompt.replace("\r\n", "\n").replace("\r", "\n")),
        context=_context(src, i),
        indent=indent,
        start_line=start,
        end_line=ll.block_end,
        body_start_line=body_start,
        is_stub=is_stub,
        is_async=m.group(1) is not None,
        body_indent=body_indent,
        inline_body_at=inline_at,
        docstring_closer=closing or "",
    )


def _body_indent(src: _Source, i: int, doc: int | None, body: list[int]) -> str:
    first = doc if doc is not None else (body[0] if body else None)
    indent = src.lls[i].indent
    if first is not None and src.lls[first].indent.startswith(indent):
        return src.lls[first].indent
    # No body yet: follow the file's habit (a tab if any indented line starts with one).
    for ll in src.lls:
        if ll.indent:
            return indent + ("\t" if ll.indent.startswith("\t") else "    ")
    return indent + "    "


# ---------------------------------------------------------------------------
# File context


_CONTEXT_LEAVES = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.Pass)


def _parses(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):
        return None


def _context_kind(tree: ast.Module) -> str | None:
    """'import', 'definition' or None (left out) for a top-level chunk."""
    if len(tree.body) != 1:
        return None
    stmt = tree.body[0]
    if any(isinstance(n, ast.ImportFrom) and n.level > 0 for n in ast.walk(stmt)):
        return None  # a relative import cannot run in the sandbox: it would fail every test
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return "import"
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Assign
                  | ast.AnnAssign):
        return "definition"
    if isinstance(stmt, ast.Try | ast.If):
        if isinstance(stmt, ast.If) and "__name__" in ast.dump(stmt.test):
            return None
        leaves = [
            node for node in ast.walk(stmt)
            if isinstance(node, ast.stmt) and node is not stmt
            and not isinstance(node, ast.Try | ast.If)
        ]
        if leaves and all(isinstance(n, _CONTEXT_LEAVES) for n in leaves):
            return "definition"
    if isinstance(stmt, ast.TypeAlias if hasattr(ast, "TypeAlias") else ()):
        return "definition"
    return None


_CLAUSE = re.compile(r"(except|else|elif|finally)\b")


def _statements(src: _Source, parent: int | None) -> list[tuple[int, int, int]]:
    """(head index, start line, end line) of the statements directly in a block.

    Decorators are joined to the definition below them, and `except`/`else`/
    `elif`/`finally` clauses to the statement they continue.
    """
    out: list[tuple[int, int, int]] = []
    for i in src.children(parent):
        ll = src.lls[i]
        if ll.text.startswith("@"):
            continue  # joined to the definition below it
        if out and _CLAUSE.match(ll.text) and src.lls[out[-1][0]].indent == ll.indent:
            head, start, _ = out[-1]
            out[-1] = (head, start, ll.block_end)
            continue
        out.append((i, src.lls[src.first_decorator(i)].start, ll.block_end))
    return out


def _context(src: _Source, target: int) -> str:
    outer = target
    while src.lls[outer].parent is not None:
        outer = src.lls[outer].parent  # type: ignore[assignment]
    outer_start = src.lls[src.first_decorator(outer)].start
    pieces: list[tuple[str, str]] = []
    for i, start, end in _statements(src, None):
        if i == outer:
            if outer != target:
                enclosing = _without(src, outer, target)
                if enclosing is not None:
                    pieces.append(("definition", enclosing))
            continue
        code = src.text(start, end)
        tree = _parses(code)
        kind = _context_kind(tree) if tree is not None else None
        if kind == "import" or (kind == "definition" and end <= outer_start):
            pieces.append((kind, code))
    out = ""
    previous = ""
    for kind, code in pieces:
        code = code.replace("\r\n", "\n").replace("\r", "\n").rstrip() + "\n"
        if out:
            out += "" if kind == previous == "import" else "\n\n"
        out += code
        previous = kind
    return out


def _without(src: _Source, node: int, target: int) -> str | None:
    """The block of `node` with the function `target` (nested in it) removed.

    First the plain cut (blank lines and comments kept); when the block does not
    parse that way, it is rebuilt from its statements that parse on their own.
    """
    t = src.lls[target]
    start = src.lls[src.first_decorator(node)].start
    cut_from = src.lls[src.first_decorator(target)].start
    cut_to = t.block_end
    while cut_to < src.lls[node].block_end and not src.lines[cut_to].strip():
        cut_to += 1
    text = src.text(start, cut_from) + src.text(cut_to, src.lls[node].block_end)
    if _parses(text) is None:
        text = _ensure_newline(text) + t.indent + "pass\n"
        if _parses(text) is None:
            text = _render_without(src, node, target)
    return text if _parses(text) is not None else None


def _render_without(src: _Source, node: int, target: int) -> str:
    """The header of `node`, then its statements that parse on their own, the one
    holding `target` rendered the same way (recursively) and `target` left out."""
    ll = src.lls[node]
    out = src.text(src.lls[src.first_decorator(node)].start, ll.end)
    t = src.lls[target]
    parts: list[str] = []
    for head, start, end in _statements(src, node):
        if head == target:
            continue
        if start <= t.start < end:
            holder = next(j for j in src.children(node)
                          if src.lls[j].start <= t.start < src.lls[j].block_end)
            if holder != target:
                parts.append(_render_without(src, holder, target))
            continue
        code = src.text(start, end)
        if _parses(textwrap.dedent(code)) is not None or _parses("if 1:\n" + code) is not None:
            parts.append(code)
    if not parts:
        parts.append(t.indent + "pass\n")
    return _ensure_newline(out) + "".join(_ensure_newline(p) for p in parts)


# ---------------------------------------------------------------------------
# Putting a solution back


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
    sol = _Source(solution)
    target = None
    for i in sol.children(None):
        m = _DEF.match(sol.lls[i].text)
        if m and m.group(2) == fc.name:
            target = i
            break
    if target is None:
        return ""
    doc, body = _body_lines(sol, target)
    tll = sol.lls[target]
    helpers = []
    for i, start, end in _statements(sol, None):
        m = _DEF.match(sol.lls[i].text)
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
        out.append(_reindent(sol.text(start, tll.block_end), _width(first.indent),
                             fc.body_indent, unit))
    return "".join(out)


def _reindent(code: str, base: int, to: str, unit: str) -> str:
    """Move `code` (its outermost lines indented `base` columns) to indentation `to`,
    converting each further level of the code's own unit into `unit`."""
    lines = _split_lines(code)
    widths = sorted({_width(_indent_of(x)) - base for x in lines if x.strip()} - {0})
    step = max(1, widths[0]) if widths else 4
    out = []
    for line in lines:
        if not line.strip():
            out.append("\n")
            continue
        indent = _indent_of(line)
        rel = max(0, _width(indent) - base)
        levels, extra = divmod(rel, step)
        out.append(to + unit * levels + " " * extra + line[len(indent):].rstrip("\r\n") + "\n")
    return "".join(out)


def body_edit(fc: FunctionContext, solution: str) -> tuple[tuple[int, int], tuple[int, int], str]:
    """The edit that completes the function: ((line, char), (line, char), new text).

    Normally it replaces the body lines [body_start_line, end_line). For a body
    written on the `def` line (`def f(): ...`), it replaces everything after
    the header's colon, so the result is still valid Python.
    """
    text = insert_body(fc, solution)
    if fc.inline_body_at is not None:
        return (fc.body_start_line - 1, fc.inline_body_at), (fc.end_line, 0), "\n" + text
    return (fc.body_start_line, 0), (fc.end_line, 0), text
