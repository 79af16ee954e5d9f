"""The line scanner: a file's logical lines and their blocks, without `ast`.

Strings, brackets, comments and continuations are tracked; blocks are found by
indentation, as Python's tokenizer does. It tolerates broken code (an unclosed
bracket or docstring, an unfinished `def` line), and gives the same spans as
`ast` on files that parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass
class Line:
    """A logical line: one statement's first line and its continuation lines."""

    start: int  # first physical line
    end: int  # physical line after the last one
    indent: str
    text: str  # the first physical line, stripped
    colon: tuple[int, int] | None  # (line, column) of the first `:` outside brackets
    parent: int | None = None  # enclosing logical line (a smaller indentation above)
    block_end: int = 0  # physical line after the last line of its indented block


DEF = re.compile(r"(async\s+)?def\s+(\w+)")

_RECOVER = re.compile(
    r"(def|class|return|import|pass|raise|try|while|with|del|global|nonlocal|assert|break"
    r"|continue)\b|async\s+def\b|from\s+\S+\s+import\b"
)
_IN_CODE = re.compile(r"[#()\[\]{}'\":\\]")
_IN_STRING = {"'": re.compile(r"[\\']"), '"': re.compile(r'[\\"]')}
_CLOSES_STRING = re.compile(r"(async\s+def|def|class)\s|@")
_CLAUSE = re.compile(r"(except|else|elif|finally)\b")


def split_lines(source: str) -> list[str]:
    """Physical lines with their endings, split only at \\n, \\r\\n and \\r."""
    return re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", source)


def width(indent: str) -> int:
    """Indentation width as Python counts it (a tab goes to the next multiple of 8)."""
    w = 0
    for ch in indent:
        w = (w // 8 + 1) * 8 if ch == "\t" else w + 1
    return w


def indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t\f"))]


def ensure_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def unix_lines(text: str) -> str:
    """`text` with every line end (`\\r\\n`, `\\r`) written `\\n`."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def chunk(text: str) -> str:
    """A chunk of a file as the context holds it: `\\n` line ends, one at its end."""
    return unix_lines(text).rstrip() + "\n"


def scan(lines: list[str], offset: int = 0) -> list[Line]:
    """Logical lines of `lines` (numbered from `offset`), tolerant of broken code.

    An unclosed bracket ends where a line starts with a keyword that cannot
    continue an expression (`def`, `return`, `import`, ...). A triple-quoted
    string still open at the end of the file ends before the first later line,
    indented no deeper than the string's first line, that starts a `def`,
    `class` or decorator (the user is typing a docstring).
    """
    out: list[Line] = []
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
            out.append(Line(row, row + 1, indent_of(line), stripped, None))
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
        start_indent = width(indent_of(lines[string_row]))
        for i in range(string_row + 1, len(lines)):
            text = lines[i].strip()
            if _CLOSES_STRING.match(text) and width(indent_of(lines[i])) <= start_indent:
                head = scan(lines[:i], offset)
                return head + scan(lines[i:], offset + i)
    return out


def tree(lls: list[Line]) -> list[Line]:
    """Set each logical line's parent and block end (Python's INDENT/DEDENT rule)."""
    stack: list[int] = []
    for i, ll in enumerate(lls):
        w = width(ll.indent)
        while stack and width(lls[stack[-1]].indent) >= w:
            stack.pop()
        ll.parent = stack[-1] if stack else None
        ll.block_end = ll.end
        stack.append(i)
        p = ll.parent
        while p is not None:
            lls[p].block_end = max(lls[p].block_end, ll.end)
            p = lls[p].parent
    return lls


class Source:
    """A file, scanned once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = split_lines(source)
        self.lls = tree(scan(self.lines))
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

    def top_level(self, i: int) -> int:
        """The top-level logical line whose block holds logical line `i`."""
        while (parent := self.lls[i].parent) is not None:
            i = parent
        return i

    def is_def(self, i: int) -> bool:
        return DEF.match(self.lls[i].text) is not None


def statements(src: Source, parent: int | None) -> list[tuple[int, int, int]]:
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
