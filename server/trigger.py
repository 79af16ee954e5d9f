"""When an automatic request gets an answer, and how long it waits: pure functions.

An explicit request (the user asked: `Invoked`) always gets one. An automatic
one (`Automatic`: the editor asks as the user types) is declined where a
completion would get in the way:

- in the middle of a word (a letter, digit or `_` right of the cursor);
- with code right of the cursor on its line (closing brackets, quotes, a colon or a
  comma are fine: editors insert them in pairs);
- inside a string or a comment (tokenized from the function's first line to the
  cursor), or while the function's docstring is still open;
- in manual mode (`cascode.trigger: manual`).

Where a function with a body may be continued is `engine.context.continues_at`'s
rule: on its last written line, or on the line right below it indented at least as
deep as its body; a cursor on a blank line after that, or less indented, has moved
past the function and gets nothing.
"""

from __future__ import annotations

import io
import time
import tokenize
from collections.abc import Collection

from cascode.engine.context import FunctionContext

_CLOSERS = set(")]}'\":,")


def decline(lines: list[str], cursor: tuple[int, int], fc: FunctionContext, *,
            automatic: bool, manual: bool, rest: bool, answered: Collection[str]) -> str | None:
    """Why a request gets no answer, or None when it may run: an explicit request always
    may; an automatic one not in manual mode, not where `declined` says so, and not at
    the end of a function that is an answer already given (`answered`: those functions'
    text, as `same_code` gives it)."""
    if not automatic:
        return None
    if manual:
        return "manual mode (cascode.trigger): only explicit requests are answered"
    why = declined(lines, cursor, fc)
    if why is None and rest and same_code(fc.prompt) in answered:
        why = "the function is an answer already given"
    return why


def same_code(code: str) -> str:
    """A function's text for comparison: no trailing whitespace, no blank lines."""
    return "\n".join(x.rstrip() for x in code.strip().splitlines() if x.strip())


def declined(lines: list[str], cursor: tuple[int, int], fc: FunctionContext) -> str | None:
    """Why an automatic request at `cursor` gets no answer, or None when it may."""
    line, col = cursor
    text = lines[line]
    right = text[col:]
    if right[:1].isalnum() or right[:1] == "_":
        return "in the middle of a word"
    if right.strip() and not set(right.strip()) <= _CLOSERS:
        return "code right of the cursor"
    if fc.docstring_closer:
        return "the docstring is still open"
    where = _string_or_comment(lines, fc.start_line, cursor)
    if where:
        return f"inside a {where}"
    return None


def _string_or_comment(lines: list[str], start: int, cursor: tuple[int, int]) -> str | None:
    line, col = cursor
    head = lines[start:line] + [lines[line][:col]]
    source = "\n".join(head)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except tokenize.TokenError as e:
        return "string" if "string" in str(e) else None
    except (SyntaxError, IndentationError):
        return None
    last_row = len(head)
    for tok in tokens:  # an unterminated quote on the cursor's line (Python 3.11)
        if (tok.type == tokenize.ERRORTOKEN and tok.start[0] == last_row
                and tok.string.strip()[:1] in ("'", '"')):
            return "string"
    for tok in reversed(tokens):
        if tok.type in (tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER, tokenize.DEDENT,
                        tokenize.INDENT):
            continue
        if tok.type == tokenize.COMMENT and tok.end == (last_row, len(head[-1])):
            return "comment"
        break
    return None


class Debounce:
    """The wait before an automatic request runs, adapted to the typing speed.

    After a pause (more than a second since the last automatic request on the
    document) half the base; while typing, `factor` times a moving average of the
    intervals, between half and four times the base. The factor 2.5 and the base
    150 ms were chosen on synthetic typing traces (`benchmarks/debounce_bench.py`):
    against 1.5, about half the runs started and then cancelled by the next
    keystroke, for about 0.2 s more wait when the user stops.
    """

    PAUSE_S = 1.0
    FACTOR = 2.5

    def __init__(self, factor: float = FACTOR) -> None:
        self.factor = factor
        self._last: dict[str, float] = {}
        self._average: dict[str, float] = {}

    def delay(self, uri: str, base_ms: int, now: float | None = None) -> float:
        """Seconds to wait for the request on `uri` made at `now`."""
        base = base_ms / 1000
        if base <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        last = self._last.get(uri)
        self._last[uri] = now
        if last is None or now - last > self.PAUSE_S:
            self._average[uri] = base
            return base / 2
        average = 0.7 * self._average.get(uri, base) + 0.3 * (now - last)
        self._average[uri] = average
        return min(max(self.factor * average, base / 2), 4 * base)

    def forget(self, uri: str) -> None:
        self._last.pop(uri, None)
        self._average.pop(uri, None)
