"""Extraction of code and of test lines from model replies, and the stop rules.

docs/method.md section 2 step 2: from each test take its first l lines that start
with `assert`; a taken line is valid if it parses as one `assert` statement
and calls the function under test; the valid lines of all k tests are pooled
as generated (duplicates kept). The live engine and the simulator both call
`test_suite` here.
"""

from __future__ import annotations

import ast
import re
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .types import Task

FENCE = "```"

# Top-level lines that may follow a function as part of a solution (helpers).
_KEEP_TOP_LEVEL = ("def ", "async def ", "class ", "@", "import ", "from ")
# What a plain completion writes after a function, as stop strings.
_AFTER_A_FUNCTION = ("\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#", "\nassert ", "\n@")
_FENCE_OPEN = re.compile(r"^```[A-Za-z0-9_+-]*[ \t]*\n", re.MULTILINE)


# ---------------------------------------------------------------------------
# Stop rules (see types.StopRule)


class NoStop:
    """A stop rule that never cuts: generation runs to its token budget (a health
    check's or a test's fixed-length request)."""

    stop_strings: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return "NoStop()"

    def cut(self, text: str) -> int | None:
        return None


@dataclass(frozen=True)
class CodeStop:
    """A solution ends at the closing fence or where the function ends.

    The text starts with the prefix (an opening fence and the function's
    prompt, or the whole code of a plain completion); everything from
    `body_start` on is generated. The function ends at the first top-level
    line that is not a definition, decorator or import: explanations, example
    calls, `if __name__ == ...` blocks and prints are never generated past
    that point. A line is judged as soon as its first characters rule out a
    helper (the rest of it is not generated). With `helpers=False` (a plain
    completion, where what follows the function is the rest of a file: tests,
    a `main`, the next function) it ends at the first top-level line of any
    kind.
    """

    body_start: int = 0
    helpers: bool = True

    @property
    def stop_strings(self) -> tuple[str, ...]:
        # Where a plain completion usually goes on after the function (a server cuts
        # there; the rule itself then cuts exactly).
        return (FENCE,) if self.helpers else (FENCE, *_AFTER_A_FUNCTION)

    def __repr__(self) -> str:
        # The repr keys sampling caches: a field at its default is left out, so
        # the keys of caches written before the field existed still match.
        extra = "" if self.helpers else ", helpers=False"
        return f"CodeStop(body_start={self.body_start}{extra})"

    def cut(self, text: str) -> int | None:
        fence = text.find(FENCE, max(self.body_start, _after_opening_fence(text)))
        end_of_lines = text.rfind("\n") if fence == -1 else fence
        pos = self.body_start
        # Only complete lines are judged (a line is complete once its newline is in).
        while pos <= end_of_lines:
            nl = text.find("\n", pos)
            if nl == -1 or nl > end_of_lines:
                break
            line = text[pos:nl]
            if line and not line[0].isspace() and (
                not self.helpers or not line.startswith(_KEEP_TOP_LEVEL)
            ):
                if pos > self.body_start or not _continues_prompt_line(text, pos):
                    return pos
            pos = nl + 1
        if fence == -1 and pos < len(text) and not text[pos].isspace():
            # A line begun at column 0 that cannot become a helper ends the function
            # already: no need to generate the rest of it.
            partial = text[pos:]
            ends = not self.helpers or not any(
                k.startswith(partial) or partial.startswith(k) for k in _KEEP_TOP_LEVEL)
            if ends and (pos > self.body_start or not _continues_prompt_line(text, pos)):
                return pos
        return fence if fence != -1 else None


@dataclass(frozen=True)
class AssertStop:
    """A test ends after its l-th line starting with `assert`, or at the closing fence.

    Lines are counted from `start` (where the test's first `assert` begins in a
    plain completion prompt, whose code may hold asserts of its own), or after
    the opening fence. With a `start` (no fence to close), the test also ends
    at the first top-level line that is neither an assert nor a comment.
    """

    l: int
    start: int = 0

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return (FENCE, *_AFTER_A_FUNCTION[:4]) if self.start else (FENCE,)

    def __repr__(self) -> str:
        # Keys sampling caches: `start` at its default is left out (see CodeStop).
        return f"AssertStop(l={self.l}" + (f", start={self.start})" if self.start else ")")

    def cut(self, text: str) -> int | None:
        start = max(self.start, _after_opening_fence(text))
        fence = text.find(FENCE, start)
        limit = len(text) if fence == -1 else fence
        seen = 0
        pos = start
        while pos < limit:
            nl = text.find("\n", pos, limit)
            if nl == -1:
                break
            line = text[pos:nl]
            if line.lstrip().startswith("assert"):
                seen += 1
                if seen >= self.l:
                    return nl + 1
            elif self.start and line and not line[0].isspace() and not line.startswith("#"):
                # A plain completion has no closing fence: the tests end at the
                # first other top-level statement.
                return pos
            pos = nl + 1
        return fence if fence != -1 else None


def _after_opening_fence(text: str) -> int:
    m = _FENCE_OPEN.match(text)
    return m.end() if m else 0


def _continues_prompt_line(text: str, pos: int) -> bool:
    # The first generated characters may finish a line the prefix started.
    return pos > 0 and text[pos - 1] != "\n"


# ---------------------------------------------------------------------------
# Solutions


def extract_code(reply: str, entry_point: str | None = None) -> str:
    """The code of a reply: a fenced block (the one defining `entry_point` if
    several) or the bare text, cut where the function ends."""
    blocks = _fenced_blocks(reply)
    if blocks:
        code = blocks[0]
        if entry_point is not None:
            for block in blocks:
                if re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\s*\(", block, re.M):
                    code = block
                    break
    else:
        code = reply
    end = _function_end(code)
    return code[:end].rstrip() + "\n"


def solution_from_reply(prompt: str, generated: str) -> str:
    """The solution when the assistant turn was prefilled with the prompt: the
    prompt followed by the generated body, cut at the fence or the function's end."""
    text = prompt + generated
    cut = CodeStop(body_start=len(prompt)).cut(text + "\n")
    if cut is not None:
        text = text[:cut]
    return text.rstrip() + "\n"


def _fenced_blocks(reply: str) -> list[str]:
    blocks = []
    for m in _FENCE_OPEN.finditer(reply):
        if _inside_block(reply, m.start()):
            continue
        end = reply.find(FENCE, m.end())
        blocks.append(reply[m.end() : end if end != -1 else len(reply)])
    return blocks


def _inside_block(reply: str, pos: int) -> bool:
    # An odd number of fences before pos means pos is a closing fence.
    return reply.count(FENCE, 0, pos) % 2 == 1


def _function_end(code: str) -> int:
    """Index where trailing top-level non-definition lines begin (after the first def)."""
    pos = 0
    seen_def = False
    for line in code.splitlines(keepends=True):
        stripped = line.rstrip("\n")
        if stripped and not stripped[0].isspace():
            if stripped.startswith(_KEEP_TOP_LEVEL):
                seen_def = seen_def or stripped.startswith(("def ", "async def ", "class "))
            elif seen_def:
                return pos
        pos += len(line)
    return len(code)


# ---------------------------------------------------------------------------
# Tests


def assert_lines(test: str, l: int) -> list[str]:
    """The first l lines of a test that start with `assert` (after indentation)."""
    taken = []
    for line in test.splitlines():
        stripped = line.strip()
        if stripped.startswith("assert"):
            taken.append(stripped)
            if len(taken) >= l:
                break
    return taken


def assert_subject(task: Task) -> str:
    """What a test line must call (`is_valid_assert`): the function, or for a method
    `Class.method`, its class built (or the method called through it)."""
    return f"{task.method_of}.{task.entry_point}" if task.method_of else task.entry_point


def is_valid_assert(line: str, entry_point: str) -> bool:
    """One `assert` statement that calls the function under test.

    `entry_point` is a function's name, or for a method `Class.method`
    (`assert_subject`): the line must then call the class or something
    reached through it (`Class(...)`, `Class.make(...)`) and, unless the method is a
    dunder (called by Python: `__init__`, `__add__`), name the method.
    """
    statement = _one_assert(line)
    if statement is None:
        return False
    root, _, method = entry_point.rpartition(".")
    if not root:
        return any(
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == entry_point
            for node in ast.walk(statement)
        )
    return builds_class(statement, root) and names_method(statement, method)


_QUIET = threading.Lock()  # warnings.catch_warnings swaps process-wide state


def parse_generated(source: str) -> ast.Module:
    """`ast.parse` of code a model wrote (or a file around it), without the warnings of
    its invalid escapes (`"\\d"` in a string): they would go to the language server's
    stderr once per line."""
    with _QUIET, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(source)


def _one_assert(line: str) -> ast.Assert | None:
    """The line's statement when it is exactly one `assert`."""
    try:
        tree = parse_generated(line)
    except (SyntaxError, ValueError):
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    return tree.body[0]


def is_valid_rule_assert(line: str, entry_point: str) -> bool:
    """A rule assert (prompts.rule_test_spec): a valid assert (`is_valid_assert`), or
    `assert raises(Exception, f, *args)` with the function under test as `f` (for a
    method, something reached through its class built, naming the method)."""
    if is_valid_assert(line, entry_point):
        return True
    statement = _one_assert(line)
    if statement is None:
        return False
    test = statement.test
    if not (isinstance(test, ast.Call) and isinstance(test.func, ast.Name)
            and test.func.id == "raises" and len(test.args) >= 2):
        return False
    target = test.args[1]
    root, _, method = entry_point.rpartition(".")
    if not root:
        return isinstance(target, ast.Name) and target.id == entry_point
    return (isinstance(target, ast.Attribute) and target.attr == method
            and (builds_class(target, root) or _root_name(target) == root.split(".")[0]))


def builds_class(tree: ast.AST, cls: str) -> bool:
    """`tree` calls class `cls` (dotted) or something reached through it."""
    first = cls.split(".")[0]
    return any(isinstance(node, ast.Call) and _root_name(node.func) == first
               for node in ast.walk(tree))


def names_method(tree: ast.AST, method: str) -> bool:
    """`tree` reaches `method` by name, or it is a dunder (Python calls those)."""
    return (method.startswith("__") and method.endswith("__")) or any(
        isinstance(node, ast.Attribute) and node.attr == method for node in ast.walk(tree))


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def taken_lines(test: str, entry_point: str, l: int) -> list[str | None]:
    """The first l assert lines of a test, each kept when valid (None when not): what
    a stage takes from one test. The live stage and the calibration's execution
    cache both read tests through this."""
    return [line if is_valid_assert(line, entry_point) else None
            for line in assert_lines(test, l)]


def pooled_suite(tests: Iterable[str], entry_point: str, l: int) -> list[str]:
    """T: the valid lines among the first l asserts of each test, pooled as generated."""
    suite: list[str] = []
    for test in tests:
        suite.extend(line for line in taken_lines(test, entry_point, l) if line is not None)
    return suite


def assert_text_end(test: str, l: int) -> int:
    """Characters of `test` up to and including its l-th assert line (its cost)."""
    seen = 0
    pos = 0
    for line in test.splitlines(keepends=True):
        pos += len(line)
        if line.strip().startswith("assert"):
            seen += 1
            if seen >= l:
                return pos
    return len(test)


def join_tests(prefix: str, generations: Sequence[str]) -> list[str]:
    """Tests as full text when the assistant turn was prefilled with `prefix`."""
    return [prefix + g for g in generations]
