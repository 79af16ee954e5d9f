"""Example lines E (METHOD.md 7.1): asserts made from what the user already wrote.

Two sources, in this order: the function's docstring (`docstring_examples`) and
the `assert` statements of the project's test files that call the function
(`test_file_examples`, collected and cached per project by `ProjectExamples`).
`task_examples` joins them for one request; the live cascade and the
calibration both call it.

An example is kept only if its assert parses as one `assert` statement that
calls the function under test by name, and every other free name in it
resolves: in the file context (its top-level names, and the prompt's), the
builtins, or the setup lines carried with it (a doctest's earlier `>>> x = ...`
lines, a test file's standard-library imports). Expected values are never
evaluated here: `ast.literal_eval` only checks that a doctest's output is a
literal the sandbox can compare with `==`; the sandbox runs everything.

Docstring forms, in order of appearance:

- doctest: `>>> call` and its expected output (several lines until a blank
  line or the next `>>>`; `...` continuation lines joined) gives
  `assert (call) == output`. `>>>` lines without output are setup, carried
  before every later example of the docstring (doctest's shared namespace).
  A printed output (`>>> print(...)`) gives no line. An expected traceback
  gives a check that the call raises that exception type: a `try` statement
  whose `text` reads `call raises ValueError`;
- lines `call -> value`, `call == value`, `call ➞ value`, `call => value`,
  `call ==> value`, `call returns value` (also after a `#`), after minimal
  noise (`Example:`, `e.g.`, a bullet); the value may be any expression whose
  names resolve, except a bare name (prose such as `returns str`); a JSON-like
  `true`/`false` reads as `True`/`False`;
- `assert` lines written in the docstring.

Google ("Examples:") and NumPy ("Examples\\n--------") sections hold doctests,
which the doctest rule reads at any indentation.
"""

from __future__ import annotations

import ast
import builtins
import doctest
import functools
import inspect
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .extract import is_valid_assert
from .types import Example, Task

log = logging.getLogger(__name__)

__all__ = [
    "ProjectExamples",
    "docstring_examples",
    "find_project_root",
    "task_examples",
    "test_file_examples",
    "top_level_names",
]

BUILTINS = frozenset(dir(builtins))
_MAX_JOINED_LINES = 12  # a call, a value or an assert spread over more lines is not taken


# ---------------------------------------------------------------------------
# One request's E


def task_examples(task: Task, *, use: bool = True) -> tuple[Example, ...]:
    """E for `task`: its docstring's examples, then `task.test_examples`, deduplicated
    by `source` in that order; () when the tier does not use examples."""
    if not use:
        return ()
    return _dedup(
        [*docstring_examples(task.prompt, task.entry_point, task.context), *task.test_examples]
    )


def _dedup(examples: Iterable[Example]) -> tuple[Example, ...]:
    seen: set[str] = set()
    out = []
    for ex in examples:
        if ex.source not in seen:
            seen.add(ex.source)
            out.append(ex)
    return tuple(out)


# ---------------------------------------------------------------------------
# Names


def top_level_names(source: str) -> frozenset[str]:
    """Names a module's top level binds (definitions, imports, assignments). A source
    that does not parse is read chunk by chunk (top-level statements), skipping bad ones."""
    try:
        return frozenset(_bound_names(ast.parse(source).body))
    except (SyntaxError, ValueError):
        pass
    names: set[str] = set()
    for chunk in _top_level_chunks(source):
        try:
            names |= _bound_names(ast.parse(chunk).body)
        except (SyntaxError, ValueError):
            continue
    return frozenset(names)


def _top_level_chunks(source: str) -> Iterator[str]:
    chunk: list[str] = []
    for line in source.splitlines(keepends=True):
        starts = bool(line.strip()) and not line[0].isspace() and line[0] not in ")]}#"
        if starts and chunk and not chunk[-1].startswith("@"):
            yield "".join(chunk)
            chunk = []
        chunk.append(line)
    if chunk:
        yield "".join(chunk)


def _bound_names(body: Sequence[ast.stmt]) -> set[str]:
    """Names bound by statements at one scope (not inside nested functions or classes)."""
    collector = _Bindings()
    for stmt in body:
        collector.visit(stmt)
    return collector.stored | set(collector.imports)


class _Bindings(ast.NodeVisitor):
    """Names one scope binds: `imports` (name -> the import statement) and `stored`
    (everything else: assignments, loop targets, definitions, parameters, `except ... as`)."""

    def __init__(self) -> None:
        self.stored: set[str] = set()
        self.imports: dict[str, ast.Import | ast.ImportFrom] = {}
        self.star_imports: list[ast.ImportFrom] = []

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store | ast.Del):
            self.stored.add(node.id)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._definition(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._definition(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._definition(node)

    def _definition(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.stored.add(node.name)
        for deco in node.decorator_list:
            self.visit(deco)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        pass

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.setdefault(alias.asname or alias.name.split(".")[0], node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name == "*":
                self.star_imports.append(node)
            else:
                self.imports.setdefault(alias.asname or alias.name, node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.stored.add(node.name)
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.stored.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.stored.update(node.names)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self.stored.add(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.stored.add(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.stored.add(node.rest)
        self.generic_visit(node)


def free_names(node: ast.AST) -> set[str]:
    """Names `node` reads that it does not bind itself (comprehension and lambda
    variables, `:=` targets are bound inside)."""
    loaded: set[str] = set()
    bound: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            (loaded if isinstance(sub.ctx, ast.Load) else bound).add(sub.id)
        elif isinstance(sub, ast.arg):
            bound.add(sub.arg)
    return loaded - bound


def _calls(node: ast.AST, name: str) -> bool:
    return any(
        isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == name
        for sub in ast.walk(node)
    )


# ---------------------------------------------------------------------------
# Docstrings


@functools.lru_cache(maxsize=256)
def docstring_examples(prompt: str, entry_point: str, context: str = "") -> tuple[Example, ...]:
    """The example lines of `entry_point`'s docstring in `prompt`, in order of appearance.

    Never raises: a prompt without the function or its docstring, or one that
    does not parse, gives what can be read (often ())."""
    try:
        found = _find_docstring(prompt, entry_point)
        if found is None:
            return ()
        doc, prompt_names = found
        known = frozenset(top_level_names(context) | prompt_names | BUILTINS | {entry_point})
        return _dedup(_DocstringReader(entry_point, known).read(doc))
    except Exception:  # noqa: BLE001 - a docstring we cannot read has no examples
        log.debug("reading the examples of %s", entry_point, exc_info=True)
        return ()


_TRIPLE = re.compile(r"""(?<![\w'"])([rRuU]?)('''|\"\"\")""")


@dataclass(frozen=True)
class DocstringSpan:
    """Where the first triple-quoted string after a prompt's last `def <entry_point>`
    lies: the def line's start and indentation, the string's opening (a prefix
    letter included) and the index just past its closing quotes."""

    def_start: int
    def_indent: str
    open: int
    end: int


def docstring_span(prompt: str, entry_point: str) -> DocstringSpan | None:
    """The span of the string after the last `def <entry_point>`, read as text (the
    prompt need not parse), or None."""
    defs = list(re.finditer(rf"^([ \t]*)(?:async[ \t]+)?def[ \t]+{re.escape(entry_point)}\b",
                            prompt, re.M))
    if not defs:
        return None
    m = _TRIPLE.search(prompt, defs[-1].end())
    if m is None:
        return None
    close = prompt.find(m.group(2), m.end())
    if close == -1:
        return None
    return DocstringSpan(defs[-1].start(), defs[-1].group(1), m.start(), close + 3)


def _find_docstring(prompt: str, entry_point: str) -> tuple[str, frozenset[str]] | None:
    """(the cleaned docstring, the prompt's top-level names), or None."""
    tree = _parse_prompt(prompt, entry_point)
    if tree is not None:
        node = None
        for sub in ast.walk(tree):
            if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef) and sub.name == entry_point:
                node = sub  # the last one: the stub comes after earlier versions and helpers
        if node is not None:
            doc = ast.get_docstring(node, clean=True)
            return (doc, frozenset(_bound_names(tree.body))) if doc else None
    # The prompt does not parse even closed with `pass`: read the string literal after the def.
    span = docstring_span(prompt, entry_point)
    if span is None:
        return None
    literal = prompt[span.open : span.end]
    try:
        value = ast.literal_eval(literal)
    except (SyntaxError, ValueError):
        return None
    if not isinstance(value, str):
        return None
    return inspect.cleandoc(value), top_level_names(prompt[:span.def_start]) | {entry_point}


def _parse_prompt(prompt: str, entry_point: str) -> ast.Module | None:
    try:
        return ast.parse(prompt)
    except (SyntaxError, ValueError):
        pass
    # A stub whose body is a partial statement: close it after the docstring.
    span = docstring_span(prompt, entry_point)
    if span is None:
        return None
    line_start = prompt.rfind("\n", 0, span.open) + 1
    indent = prompt[line_start : span.open]
    if indent.strip():
        indent = span.def_indent + "    "
    try:
        return ast.parse(prompt[: span.end] + "\n" + indent + "pass\n")
    except (SyntaxError, ValueError):
        return None


_NOISE = re.compile(
    r"(?:[-*•]\s*|\d+[.)]\s*|(?:for\s+)?examples?\s*\d*\s*[:.-]?\s*|e\.?g\.?\s*[:,]?\s*"
    r"|for\s+instance\s*[:,]?\s*|input\s*:\s*|for\b\s*|>\s*)*",
    re.I,
)
_SEPARATOR = re.compile(
    r"\s*(?:#\s*)?(==>|=>|->|➞|→|==|(?:should\s+)?returns?\b|should\s+be\b)\s*(?::\s*)?"
    r"(.*)$",
    re.S,
)
_JSON_CONSTANTS = {"true": "True", "false": "False", "null": "None"}


@dataclass
class _DocstringReader:
    entry_point: str
    known: frozenset[str]
    setup: list[str] = field(default_factory=list)
    setup_names: set[str] = field(default_factory=set)

    def read(self, doc: str) -> list[Example]:
        out: list[Example] = []
        for piece in _doctest_pieces(doc):
            if isinstance(piece, str):
                out.extend(self._text_lines(piece))
            else:
                ex = self._doctest(piece)
                if ex is not None:
                    out.append(ex)
        return out

    # -- name checks -----------------------------------------------------------

    def _resolves(self, node: ast.AST) -> bool:
        return free_names(node) <= (self.known | self.setup_names)

    def _example(self, assert_source: str, text: str | None = None) -> Example | None:
        if not is_valid_assert(assert_source, self.entry_point):
            return None
        if not self._resolves(ast.parse(assert_source)):
            return None
        return Example("".join(self.setup) + assert_source + "\n", text or assert_source)

    # -- doctest ---------------------------------------------------------------

    def _doctest(self, ex: doctest.Example) -> Example | None:
        if ex.options.get(doctest.SKIP):
            return None
        try:
            tree = ast.parse(ex.source)
        except (SyntaxError, ValueError):
            return None
        source = ex.source.rstrip("\n")
        if ex.exc_msg is not None:
            return self._raises(tree, source, ex.want)
        single_expr = len(tree.body) == 1
        if not ex.want.strip():
            if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert):
                return self._example(source)
            if _is_equality(tree):  # `>>> call == value` written without its `True`
                return self._example(f"assert {source}")
            if not any(_prints(stmt) for stmt in tree.body) and self._resolves(tree):
                self.setup.append(source + "\n")
                self.setup_names |= _bound_names(tree.body)
            return None
        stmt = tree.body[0]
        if not single_expr or not isinstance(stmt, ast.Expr) or _prints(stmt):
            return None  # printed output, or a statement with output: nothing to compare
        want = _literal(ex.want)
        if want is None:
            return None
        return self._example(f"assert {_operand(source, stmt.value)} == {want}")

    def _raises(self, tree: ast.Module, source: str, want: str) -> Example | None:
        exc = _exception_type(want)
        if exc is None or not _calls(tree, self.entry_point) or not self._resolves(tree):
            return None
        if exc.split(".")[0] not in self.known:
            exc = exc.rsplit(".", 1)[-1]
            if exc not in self.known:
                return None
        shown = source if "\n" not in source else ast.unparse(tree)
        body = "".join(f"    {line}\n" for line in source.splitlines())
        check = (f"try:\n{body}except {exc}:\n    pass\nelse:\n"
                 f"    raise AssertionError({f'{shown} did not raise {exc}'!r})")
        return Example("".join(self.setup) + check + "\n", f"{shown} raises {exc}")

    # -- prose lines: `call -> value`, `assert ...` ------------------------------

    def _text_lines(self, text: str) -> Iterator[Example]:
        lines = text.splitlines()
        i = 0
        while i < len(lines):
            stripped = lines[i].strip()
            ex, used = None, 1
            if stripped.startswith("assert"):
                ex, used = self._assert_line(lines, i)
            elif self.entry_point in stripped:
                ex, used = self._arrow_line(lines, i)
            if ex is not None:
                yield ex
            i += max(used, 1)

    def _assert_line(self, lines: list[str], i: int) -> tuple[Example | None, int]:
        for n in range(1, min(_MAX_JOINED_LINES, len(lines) - i) + 1):
            source = "\n".join(line.strip() for line in lines[i : i + n])
            try:
                ast.parse(source)
            except (SyntaxError, ValueError):
                continue
            return self._example(source), n
        return None, 1

    def _arrow_line(self, lines: list[str], i: int) -> tuple[Example | None, int]:
        m = re.search(rf"(?<![\w.]){re.escape(self.entry_point)}\s*\(", lines[i])
        if m is None or _NOISE.fullmatch(lines[i][: m.start()].strip()) is None:
            return None, 1
        text = lines[i][m.start() :]
        n = 1
        end = _call_end(text, m.end() - m.start() - 1)
        while end is None and n < _MAX_JOINED_LINES and i + n < len(lines):
            text += "\n" + lines[i + n].strip()
            n += 1
            end = _call_end(text, m.end() - m.start() - 1)
        if end is None:
            return None, 1
        call = text[:end]
        sep = _SEPARATOR.match(text[end:])
        if sep is None:
            return None, n
        value = sep.group(2)
        for extra in range(_MAX_JOINED_LINES):
            expr = _value_expression(value)
            if expr is not None:
                break
            if i + n + extra >= len(lines) or not lines[i + n + extra].strip():
                return None, n
            value += "\n" + lines[i + n + extra].strip()
        else:
            return None, n
        n += extra
        try:
            call_expr = ast.parse(call, mode="eval").body
        except (SyntaxError, ValueError):
            return None, n
        return self._example(f"assert {_operand(call, call_expr)} == {expr}"), n


def _doctest_pieces(doc: str) -> list[str | doctest.Example]:
    """The docstring as text and doctest examples in order. A docstring the doctest
    parser rejects (bad indentation, `>>>x`) is read block by block (a block ends at a
    blank line or before a `>>>` line); a doctest block it still rejects is left out."""
    parser = doctest.DocTestParser()
    try:
        return [p for p in parser.parse(doc) if p != ""]
    except ValueError:
        pass
    pieces: list[str | doctest.Example] = []
    for block in re.split(r"\n\s*\n|\n(?=[ \t]*>>>)", doc):
        try:
            pieces.extend(p for p in parser.parse(block) if p != "")
        except ValueError:
            if not block.lstrip().startswith(">>>"):
                pieces.append(block)
        pieces.append("\n")
    return pieces


def _is_equality(tree: ast.Module) -> bool:
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return False
    expr = tree.body[0].value
    return isinstance(expr, ast.Compare) and [type(op) for op in expr.ops] == [ast.Eq]


def _prints(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Call)
        and isinstance(stmt.value.func, ast.Name)
        and stmt.value.func.id == "print"
    )


def _literal(want: str) -> str | None:
    """A doctest's expected output as literal source, or None when it is no literal
    (a repr like `<object at 0x..>`, `Point(x=1)`, printed text, an elided `...`)."""
    text = want.strip()
    try:
        tree = ast.parse(text, mode="eval")
        ast.literal_eval(tree)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return None
    if any(isinstance(n, ast.Constant) and n.value is Ellipsis for n in ast.walk(tree)):
        return None
    return _operand(text, tree.body)


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)\s*(?::|$)")


def _exception_type(want: str) -> str | None:
    """The exception type named by an expected traceback (`ValueError: msg` -> ValueError)."""
    for line in want.splitlines()[1:]:
        if line and not line[0].isspace():
            m = _EXCEPTION_LINE.match(line)
            return m.group(1) if m else None
    return None


_PLAIN_OPERANDS = (ast.Call, ast.Name, ast.Attribute, ast.Subscript, ast.Constant, ast.List,
                   ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp, ast.Tuple)


def _operand(source: str, expr: ast.expr) -> str:
    """`expr` (parsed from `source`) as an operand of `==`: as written, without comments
    (unparsed when it spans lines), parenthesized unless it binds tighter."""
    text = ast.get_source_segment(source, expr)
    if text is None or "\n" in text:
        text = ast.unparse(expr)
    if isinstance(expr, ast.Tuple) and not text.startswith("("):
        return f"({text})"
    tighter = isinstance(expr, _PLAIN_OPERANDS) or (
        isinstance(expr, ast.UnaryOp) and not isinstance(expr.op, ast.Not))
    return text if tighter else f"({text})"


def _call_end(text: str, open_paren: int) -> int | None:
    """Index just past the parenthesis that closes the one at `open_paren`, or None.
    Strings are skipped (a `)` or `->` inside an argument does not count)."""
    depth = 0
    i = open_paren
    quote = ""
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif text.startswith(quote, i):
                i += len(quote) - 1
                quote = ""
        elif c in "'\"":
            quote = c * 3 if text.startswith(c * 3, i) else c
            i += len(quote) - 1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        elif c == "#":
            return None
        i += 1
    return None


def _value_expression(value: str) -> str | None:
    """The right side of a `call -> value` line as assert source, or None (prose)."""
    value = value.strip()
    for candidate in (value.rstrip(".,;"), value):  # `returns 8.` ends a sentence
        candidate = _JSON_CONSTANTS.get(candidate, candidate)
        if not candidate:
            continue
        try:
            tree = ast.parse(candidate, mode="eval")
        except (SyntaxError, ValueError):
            continue
        if isinstance(tree.body, ast.Name):
            return None  # `returns str`, `-> result`: prose, not a value
        if any(isinstance(n, ast.Constant) and n.value is Ellipsis for n in ast.walk(tree)):
            return None  # `-> [1, 2, ...]`: elided
        return _operand(candidate, tree.body)
    return None


# ---------------------------------------------------------------------------
# Test files


@dataclass(frozen=True)
class _Scope:
    stored: frozenset[str]
    imports: dict[str, ast.Import | ast.ImportFrom]
    star_imports: tuple[ast.ImportFrom, ...]


@dataclass(frozen=True)
class _Assert:
    text: str  # as written
    source: str  # one statement that parses on its own
    names: frozenset[str]  # free names
    scopes: tuple[_Scope, ...]  # innermost first, the module last


class _TestFile:
    """A test file read once: every `assert` with its free names and enclosing scopes."""

    def __init__(self, text: str, path_parts: tuple[str, ...] = ()) -> None:
        tree = ast.parse(text)
        self.path_parts = path_parts  # the test file's path (relative imports), without .py
        self.asserts: list[_Assert] = []
        self._walk(tree.body, (_scope(tree.body),), text)

    def _walk(self, body: Sequence[ast.stmt], scopes: tuple[_Scope, ...], text: str) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Assert):
                self._add(stmt, scopes, text)
            elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                args = {a.arg for a in ast.walk(stmt.args) if isinstance(a, ast.arg)}
                self._walk(stmt.body, (_scope(stmt.body, args), *scopes), text)
            elif isinstance(stmt, ast.ClassDef):
                self._walk(stmt.body, (_scope(stmt.body), *scopes), text)
            else:
                for name in ("body", "orelse", "finalbody"):
                    self._walk(getattr(stmt, name, ()), scopes, text)
                for handler in getattr(stmt, "handlers", ()):
                    self._walk(handler.body, scopes, text)
                for case in getattr(stmt, "cases", ()):
                    self._walk(case.body, scopes, text)

    def _add(self, stmt: ast.Assert, scopes: tuple[_Scope, ...], text: str) -> None:
        written = ast.get_source_segment(text, stmt) or ast.unparse(stmt)
        try:
            ast.parse(written)
            source = written
        except (SyntaxError, ValueError):
            source = ast.unparse(stmt)
        self.asserts.append(_Assert(written, source, frozenset(free_names(stmt)), scopes))

    def examples(
        self,
        path_label: str,
        entry_point: str,
        context_names: frozenset[str] | None = None,
        source_file: str | None = None,
    ) -> tuple[Example, ...]:
        context = context_names or frozenset()
        out = []
        for a in self.asserts:
            if entry_point not in a.names or not is_valid_assert(a.source, entry_point):
                continue
            carried: list[str] = []
            if all(self._resolve(name, a.scopes, entry_point, context, source_file, carried)
                   for name in sorted(a.names)):
                setup = "".join(line + "\n" for line in dict.fromkeys(carried))
                out.append(Example(setup + a.source + "\n", a.text, path_label))
        return _dedup(out)

    def _resolve(
        self,
        name: str,
        scopes: tuple[_Scope, ...],
        entry_point: str,
        context: frozenset[str],
        source_file: str | None,
        carried: list[str],
    ) -> bool:
        """Whether `name` resolves in the sandbox; the import it needs goes to `carried`."""
        for scope in scopes:
            if name in scope.stored:
                return False  # a local variable, parameter, fixture or the file's own definition
            node = scope.imports.get(name)
            if node is None:
                continue
            if name == entry_point:
                # The function under test is the solution; its import is not carried.
                return not _is_stdlib(node) and self._imports_source(node, source_file)
            if _is_stdlib(node):
                carried.append(_import_line(node, name))
                return True
            return name in context  # a project name: only the file context provides it
        if name == entry_point:
            stars = [n for s in scopes for n in s.star_imports if not _is_stdlib(n)]
            return any(self._imports_source(n, source_file) for n in stars)
        return name in context or name in BUILTINS

    def _imports_source(self, node: ast.Import | ast.ImportFrom, source_file: str | None) -> bool:
        """Whether `node` imports from the module being completed (or a package above it,
        which may re-export it). Unknown source file: assumed."""
        if source_file is None:
            return True
        if not isinstance(node, ast.ImportFrom):
            return False
        parts = tuple(node.module.split(".")) if node.module else ()
        if node.level:
            base = self.path_parts[:-1]
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            parts = base + parts
        if not parts:
            return False
        path = Path(source_file)
        module = path.with_suffix("").parts
        if module and module[-1] == "__init__":
            module = module[:-1]
        packages = module[:-1]
        return module[-len(parts):] == parts or any(
            packages[: k][-len(parts):] == parts for k in range(len(packages), 0, -1)
        )


def _scope(body: Sequence[ast.stmt], args: Iterable[str] = ()) -> _Scope:
    collector = _Bindings()
    for stmt in body:
        collector.visit(stmt)
    return _Scope(frozenset(collector.stored | set(args)), dict(collector.imports),
                  tuple(collector.star_imports))


def _is_stdlib(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").split(".")[0] in sys.stdlib_module_names
    return all(a.name.split(".")[0] in sys.stdlib_module_names for a in node.names)


def _import_line(node: ast.Import | ast.ImportFrom, name: str) -> str:
    """The import statement reduced to the alias that binds `name`."""
    for alias in node.names:
        bound = alias.asname or (alias.name if isinstance(node, ast.ImportFrom)
                                 else alias.name.split(".")[0])
        if bound == name:
            if isinstance(node, ast.ImportFrom):
                return ast.unparse(ast.ImportFrom(node.module, [alias], node.level))
            return ast.unparse(ast.Import([alias]))
    return ast.unparse(node)


def test_file_examples(
    path_label: str,
    text: str,
    entry_point: str,
    context_names: frozenset[str] | None = None,
    source_file: str | None = None,
) -> tuple[Example, ...]:
    """The asserts of one test file that call `entry_point` and resolve in the sandbox.

    A name resolves through a standard-library import of the test file (carried
    as a setup line), the file context's names (`context_names`) or the
    builtins; never through a local variable, parameter or fixture of the test,
    or a definition of the test file. The import of the function under test is
    not carried (the solution defines it); with `source_file` (the completed
    file, relative to the same root as `path_label`), an assert is kept only if
    the test imports the function from that module or a package above it.
    A file that does not parse gives ()."""
    try:
        parsed = _TestFile(text, Path(path_label).with_suffix("").parts)
    except (SyntaxError, ValueError, RecursionError):
        return ()
    return parsed.examples(path_label, entry_point, context_names, source_file)


test_file_examples.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


# ---------------------------------------------------------------------------
# A project's test files

_PROJECT_MARKERS = ("pyproject.toml", "setup.cfg", "setup.py", ".git")
_SKIP_DIRS = frozenset({".venv", "venv", "node_modules", "__pycache__", "site-packages",
                        "build", "dist"})
_TEST_DIRS = frozenset({"tests", "test"})


def find_project_root(path: str | os.PathLike[str]) -> Path | None:
    """The nearest folder at or above `path` holding pyproject.toml, setup.cfg, setup.py
    or .git; None if there is none."""
    here = Path(path).resolve()
    for folder in (here, *here.parents) if here.is_dir() else here.parents:
        if any((folder / marker).exists() for marker in _PROJECT_MARKERS):
            return folder
    return None


def is_test_file(relative: Path) -> bool:
    """pytest's layout: test_*.py, *_test.py, or any .py file under a tests/ or test/ folder."""
    name = relative.name
    if not name.endswith(".py"):
        return False
    return (name.startswith("test_") or name.endswith("_test.py")
            or any(part in _TEST_DIRS for part in relative.parts[:-1]))


@dataclass
class _Cached:
    key: tuple[object, ...]
    parsed: _TestFile | None


class ProjectExamples:
    """The example lines of a project's test files, bounded and cached.

    Test files are only read, never imported or run. The listing of test files
    is cached until `invalidate` or `refresh`; each file is parsed once per
    (mtime, size) on disk, or per version of an editor buffer that overrides it
    (`set_buffer`). A file over `max_bytes` or with a syntax error is skipped
    with one log line per version. Thread-safe: the buffer calls take a short
    lock, so an event loop can call them while `examples` reads on another thread.
    """

    def __init__(
        self,
        roots: Iterable[str | os.PathLike[str]],
        *,
        max_files: int = 200,
        max_bytes: int = 1_000_000,
        max_entries: int = 20_000,
    ) -> None:
        self.roots = [Path(r).resolve() for r in roots]
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._lock = threading.Lock()  # buffers, stale marks
        self._scan_lock = threading.Lock()  # listing and parsed files
        self._buffers: dict[Path, tuple[str, object]] = {}
        self._stale: set[Path] = set()  # files to look at again
        self._relist = False  # the listing must be walked again
        self._listing: list[tuple[Path, Path]] | None = None  # (root, relative path)
        self._parsed: dict[Path, _Cached] = {}

    # -- what the editor says --------------------------------------------------

    def set_buffer(self, path: str | os.PathLike[str], text: str, version: object) -> bool:
        """Use `text` (an unsaved editor buffer) instead of the file on disk.
        Returns False, and keeps nothing, when `path` is no test file of a root."""
        p = Path(path).resolve()
        if self._root_of(p) is None:
            return False
        with self._lock:
            self._buffers[p] = (text, version)
        return True

    def drop_buffer(self, path: str | os.PathLike[str]) -> None:
        """The buffer was closed: the file on disk counts again."""
        p = Path(path).resolve()
        with self._lock:
            self._buffers.pop(p, None)

    def invalidate(self, path: str | os.PathLike[str] | None = None) -> None:
        """A file was saved, created or deleted (None: anything may have changed)."""
        with self._lock:
            if path is None:
                self._relist = True
            else:
                self._stale.add(Path(path).resolve())

    def refresh(self) -> None:
        """Forget the listing and every parsed file."""
        self.invalidate(None)

    def is_test_file(self, path: str | os.PathLike[str]) -> bool:
        return self._root_of(Path(path).resolve()) is not None

    def _root_of(self, p: Path) -> Path | None:
        best = None
        for root in self.roots:
            if p.is_relative_to(root) and is_test_file(p.relative_to(root)):
                if best is None or len(root.parts) > len(best.parts):
                    best = root
        return best

    # -- the examples ------------------------------------------------------------

    def examples(
        self,
        entry_point: str,
        context_names: frozenset[str] | None = None,
        source_file: str | os.PathLike[str] | None = None,
    ) -> tuple[Example, ...]:
        """Every test file's examples for `entry_point`, in the order of their relative
        paths, deduplicated by source. With `source_file` (the file being completed),
        only the root holding it is read, and only asserts that import the function
        from that module (or a package above it) are kept."""
        src = Path(source_file).resolve() if source_file is not None else None
        with self._scan_lock:
            with self._lock:
                buffers = dict(self._buffers)
                stale, self._stale = self._stale, set()
                relist, self._relist = self._relist, False
            self._forget(stale, relist)
            files = self._files(buffers)
            roots = [r for r in self.roots if src is not None and src.is_relative_to(r)]
            if roots:
                deepest = max(roots, key=lambda r: len(r.parts))
                files = [(r, rel) for r, rel in files if r == deepest]
            out: list[Example] = []
            for root, rel in files:
                parsed = self._parse(root / rel, rel, buffers.get(root / rel))
                if parsed is None:
                    continue
                module = (src.relative_to(root).as_posix()
                          if src is not None and src.is_relative_to(root) else None)
                out.extend(parsed.examples(rel.as_posix(), entry_point, context_names, module))
            return _dedup(out)

    def _forget(self, stale: set[Path], relist: bool) -> None:
        if relist:
            self._listing = None
            self._parsed.clear()
            return
        for p in stale:
            self._parsed.pop(p, None)
            root = self._root_of(p)
            if self._listing is not None and root is not None:
                listed = (root, p.relative_to(root)) in self._listing
                if listed != p.is_file():
                    self._listing = None  # a test file was created or deleted

    def _files(self, buffers: dict[Path, tuple[str, object]]) -> list[tuple[Path, Path]]:
        if self._listing is None:
            self._listing = self._walk()
        files = set(self._listing)
        for p in buffers:  # an unsaved new test file counts too
            root = self._root_of(p)
            if root is not None:
                files.add((root, p.relative_to(root)))
        return sorted(files, key=lambda f: (str(f[0]), f[1].as_posix()))

    def _walk(self) -> list[tuple[Path, Path]]:
        found: list[tuple[Path, Path]] = []
        entries = 0
        for root in self.roots:
            pending = [root]
            while pending:
                folder = pending.pop()
                try:
                    with os.scandir(folder) as it:
                        children = sorted(it, key=lambda e: e.name)
                except OSError:
                    continue
                subfolders = []
                for entry in children:
                    entries += 1
                    if entries > self.max_entries or len(found) >= self.max_files:
                        log.info("test files: stopped after %d entries and %d test files "
                                 "(cascode.testScanFiles)", entries - 1, len(found))
                        return found
                    if entry.name.startswith(".") or entry.name in _SKIP_DIRS:
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            subfolders.append(Path(entry.path))
                        elif entry.is_file():
                            rel = Path(entry.path).relative_to(root)
                            if is_test_file(rel):
                                found.append((root, rel))
                    except OSError:
                        continue
                pending.extend(reversed(subfolders))
        return found

    def _parse(self, path: Path, rel: Path, buffer: tuple[str, object] | None) -> _TestFile | None:
        if buffer is not None:
            text: str | None = buffer[0]
            key: tuple[object, ...] = ("buffer", buffer[1])
        else:
            try:
                st = path.stat()
            except OSError:
                self._parsed.pop(path, None)
                return None
            key, text = ("disk", st.st_mtime_ns, st.st_size), None
        cached = self._parsed.get(path)
        if cached is not None and cached.key == key:
            return cached.parsed
        parsed = self._read(path, rel, text)
        self._parsed[path] = _Cached(key, parsed)
        return parsed

    def _read(self, path: Path, rel: Path, text: str | None) -> _TestFile | None:
        try:
            size = len(text.encode("utf-8", "replace")) if text is not None else path.stat().st_size
        except OSError:
            return None
        if size > self.max_bytes:
            log.info("test file %s skipped: %d bytes, over %d", rel.as_posix(), size,
                     self.max_bytes)
            return None
        if text is None:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                log.info("test file %s skipped: cannot read: %s", rel.as_posix(), e)
                return None
        try:
            return _TestFile(text, rel.with_suffix("").parts)
        except (SyntaxError, ValueError, RecursionError) as e:
            line = getattr(e, "lineno", None)
            log.warning("test file %s skipped: does not parse%s", rel.as_posix(),
                        f" (line {line})" if line else "")
            return None
