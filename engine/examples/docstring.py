"""Example lines from a function's docstring (`docstring_examples`), and where
that docstring lies in a prompt (`docstring_span`).

Docstring forms, in order of appearance:

- doctest: `>>> call` and its expected output (several lines until a blank
  line or the next `>>>`; `...` continuation lines joined) gives
  `assert (call) == output`. `>>>` lines without output are setup, carried
  before every later example of the docstring (doctest's shared namespace),
  except an import of names the file itself defines (`>>> from mypkg.mod import f`:
  the module importing its own names, already bound where the examples run).
  A printed output (`>>> print(call)`, then the text it prints) gives a check
  that the call prints that text, compared as doctest compares it (`<BLANKLINE>`,
  `NORMALIZE_WHITESPACE`; an `ELLIPSIS` output gives no line). An expected traceback
  gives a check that the call raises that exception type: a `try` statement
  whose `text` reads `call raises ValueError`. A `>>>` line without output whose
  comment states the value (`>>> f(1)  # returns 2`, `# -> 2`) reads as the lines
  below do;
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
import doctest
import functools
import inspect
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..extract import builds_class, is_valid_assert, names_method
from ..types import Example
from .names import BUILTINS, bound_names, dedup, free_names, top_level_names

log = logging.getLogger(__name__)

_MAX_JOINED_LINES = 12  # a call, a value or an assert spread over more lines is not taken


@functools.lru_cache(maxsize=256)
def docstring_examples(prompt: str, entry_point: str, context: str = "",
                       subject: str = "") -> tuple[Example, ...]:
    """The example lines of `entry_point`'s docstring in `prompt`, in order of appearance.
    `subject` is what a line must call (`extract.assert_subject`; the function itself
    when empty): for a method, `Class.method`, and a line may then build the class in a
    doctest's setup (`>>> s = Store()` before `>>> s.add(1)`).

    Never raises: a prompt without the function or its docstring, or one that
    does not parse, gives what can be read (often ())."""
    try:
        found = _find_docstring(prompt, entry_point)
        if found is None:
            return ()
        doc, prompt_names = found
        defined = frozenset(top_level_names(context) | prompt_names | {entry_point})
        return dedup(_DocstringReader(subject or entry_point, defined | BUILTINS,
                                      defined).read(doc))
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
            return (doc, frozenset(bound_names(tree.body))) if doc else None
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
    defined: frozenset[str] = frozenset()  # the file's own top-level names
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
        if not is_valid_assert(assert_source, self.entry_point) and not self._method_line(
                assert_source):
            return None
        if not self._resolves(ast.parse(assert_source)):
            return None
        return Example("".join(self.setup) + assert_source + "\n", text or assert_source)

    def _method_line(self, assert_source: str) -> bool:
        """A method's assert that uses an object its doctest's setup built."""
        try:
            line = ast.parse(assert_source)
        except (SyntaxError, ValueError):
            return False
        return (len(line.body) == 1 and isinstance(line.body[0], ast.Assert)
                and self._uses_subject(line))

    def _uses_subject(self, tree: ast.AST) -> bool:
        """`tree` calls the function; for a method (`Class.method`), it reaches the method
        on its class, built by `tree` or by the doctest's setup."""
        cls, _, method = self.entry_point.rpartition(".")
        if not cls:
            return _calls(tree, self.entry_point)
        if not names_method(tree, method):
            return False
        if builds_class(tree, cls):
            return True
        try:
            return bool(self.setup) and builds_class(ast.parse("".join(self.setup)), cls)
        except (SyntaxError, ValueError):
            return False

    # -- doctest ---------------------------------------------------------------

    def _doctest(self, ex: doctest.Example) -> Example | None:
        example = self._doctest_line(ex)
        if "." in self.entry_point and not ex.options.get(doctest.SKIP):
            self._replay(ex)
        return example

    def _replay(self, ex: doctest.Example) -> None:
        """A method's doctest calls change the object they are made on (`>>> inv.add(2)`
        then `>>> inv.add(1)` gives 3): a call with an output or an exception is carried,
        as doctest runs it, into the setup of the examples after it."""
        if not ex.want.strip() and ex.exc_msg is None:
            return  # already setup, or nothing that runs
        try:
            tree = ast.parse(ex.source)
        except (SyntaxError, ValueError):
            return
        if any(_prints(stmt) for stmt in tree.body) or not self._resolves(tree):
            return
        source = ex.source.rstrip("\n")
        if ex.exc_msg is not None:
            body = "".join(f"    {line}\n" for line in source.splitlines())
            source = f"try:\n{body}except Exception:\n    pass"
        self.setup.append(source + "\n")
        self.setup_names |= bound_names(tree.body)

    def _doctest_line(self, ex: doctest.Example) -> Example | None:
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
            if "#" in source and "\n" not in source:
                # `>>> call  # returns value`: the value stated in a comment, not as output
                stated, _ = self._arrow_line([source], 0)
                if stated is not None:
                    return stated
            if _imports_only(tree, self.defined):
                return None  # the module importing its own names: they are bound already
            if not any(_prints(stmt) for stmt in tree.body) and self._resolves(tree):
                self.setup.append(source + "\n")
                self.setup_names |= bound_names(tree.body)
            return None
        stmt = tree.body[0]
        if single_expr and _prints(stmt):
            return self._printed(tree, source, ex)
        if not single_expr or not isinstance(stmt, ast.Expr):
            return None  # a statement with output: nothing to compare
        want = _literal(ex.want)
        if want is None:
            return None
        return self._example(f"assert {_operand(source, stmt.value)} == {want}")

    def _printed(self, tree: ast.Module, source: str, ex: doctest.Example) -> Example | None:
        """`>>> print(call)` and the text it prints: run under a captured stdout, the
        text compared as doctest compares it."""
        want = re.sub(r"(?m)^<BLANKLINE>$", "", ex.want)
        if ex.options.get(doctest.ELLIPSIS) and "..." in want:
            return None
        if not self._uses_subject(tree) or not self._resolves(tree):
            return None
        got = "_cascode_out.getvalue()"
        compared, expected = got, want
        if ex.options.get(doctest.NORMALIZE_WHITESPACE):
            compared, expected = f"' '.join({got}.split())", " ".join(want.split())
        shown = source if "\n" not in source and "#" not in source else ast.unparse(tree)
        printed = want.removesuffix("\n")
        if "\n" in printed:
            printed = repr(printed)
        body = "".join(f"    {line}\n" for line in source.splitlines())
        check = ("import contextlib as _cascode_contextlib\nimport io as _cascode_io\n"
                 "with _cascode_contextlib.redirect_stdout(_cascode_io.StringIO()) "
                 f"as _cascode_out:\n{body}"
                 f"assert {compared} == {expected!r}, 'printed ' + repr({got})\n")
        return Example("".join(self.setup) + check,
                       f"{shown} prints {printed}")

    def _raises(self, tree: ast.Module, source: str, want: str) -> Example | None:
        exc = _exception_type(want)
        if exc is None or not self._uses_subject(tree) or not self._resolves(tree):
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


def _imports_only(tree: ast.Module, names: frozenset[str]) -> bool:
    """`tree` is one `from M import a, b` of names all in `names` (a doctest's import of
    its own module's names, which the sandbox cannot import: the file is not installed
    there, and an installed copy would be the file on disk, not the answer)."""
    if len(tree.body) != 1 or not isinstance(stmt := tree.body[0], ast.ImportFrom):
        return False
    return (stmt.level == 0 and stmt.module not in (None, "__future__")
            and all(a.name != "*" and a.asname is None and a.name in names
                    for a in stmt.names))


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


def _calls(node: ast.AST, name: str) -> bool:
    return any(
        isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == name
        for sub in ast.walk(node)
    )
