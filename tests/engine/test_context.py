"""cascode.engine.context on real-looking files, parsing and not."""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import pytest

from cascode.engine import context as ctx
from cascode.engine.context import body_edit, function_at, insert_body, last_function, scanner

GEOMETRY = '''\
"""Geometry helpers."""
import math
from dataclasses import dataclass

SCALE = 2.0
print("loaded")


@dataclass
class Rect:
    w: float
    h: float

    @property
    def area(self) -> float:
        """The area."""

    def scaled(self, k: float = SCALE) -> "Rect":
        return Rect(self.w * k, self.h * k)


def outer(xs: list[int]) -> int:
    total = 0

    def inner(x):
        """Square x."""
        ...

    return sum(inner(x) for x in xs) + total


async def fetch(url: str,
                timeout: float = 1.0,
                ) -> bytes:
    \'\'\'Fetch a url.\'\'\'
    raise NotImplementedError


if __name__ == "__main__":
    main()
'''


def lines_of(source: str, text: str) -> int:
    """0-based number of the first line containing `text`."""
    for i, line in enumerate(source.splitlines()):
        if text in line:
            return i
    raise AssertionError(text)


def check_prompt_parses(fc: ctx.FunctionContext) -> None:
    # The prompt plus a body must be a valid function at column 0.
    ast.parse(fc.prompt + ("    pass\n" if fc.is_stub else ""))
    ast.parse(fc.context)


# ---------------------------------------------------------------------------
# Finding the function


@pytest.mark.parametrize(
    ("marker", "name"),
    [
        ("@property", "area"),
        ("def area", "area"),
        ('"""The area."""', "area"),
        ("def scaled", "scaled"),
        ("return Rect(", "scaled"),
        ("total = 0", "outer"),
        ("def inner", "inner"),
        ('"""Square x."""', "inner"),
        ("return sum(", "outer"),
        ("async def fetch", "fetch"),
        ("timeout: float", "fetch"),
        (") -> bytes:", "fetch"),
        ("raise NotImplementedError", "fetch"),
    ],
)
def test_innermost_function_at_each_line(marker: str, name: str) -> None:
    fc = function_at(GEOMETRY, lines_of(GEOMETRY, marker))
    assert fc is not None and fc.name == name


@pytest.mark.parametrize(
    "marker", ['"""Geometry', "import math", "SCALE = 2.0", "class Rect", "    w: float",
               "if __name__", "main()"]
)
def test_outside_functions_is_none(marker: str) -> None:
    assert function_at(GEOMETRY, lines_of(GEOMETRY, marker)) is None


def test_positions_past_the_end_and_on_blank_lines() -> None:
    last = len(GEOMETRY.splitlines())
    assert function_at(GEOMETRY, last + 5) is None
    # The blank line after a finished function belongs to it only when the cursor
    # is indented deeper than its def.
    after_fetch = lines_of(GEOMETRY, "raise NotImplementedError") + 1
    assert function_at(GEOMETRY, after_fetch) is None
    fc = function_at(GEOMETRY, after_fetch, character=4)
    assert fc is not None and fc.name == "fetch"
    # The line right after a docstring-only stub belongs to it at any column.
    fc = function_at(GEOMETRY, lines_of(GEOMETRY, '"""The area."""') + 1)
    assert fc is not None and fc.name == "area"


def test_spans_method_with_decorator() -> None:
    fc = function_at(GEOMETRY, lines_of(GEOMETRY, "def area"))
    assert fc is not None
    assert fc.start_line == lines_of(GEOMETRY, "@property")
    assert fc.end_line == lines_of(GEOMETRY, '"""The area."""') + 1
    assert fc.body_start_line == fc.end_line
    assert fc.indent == "    " and fc.body_indent == "        "
    assert fc.is_stub and not fc.is_async
    # Dedented; @property dropped so the function stays callable on its own.
    assert fc.prompt == 'def area(self) -> float:\n    """The area."""\n'
    check_prompt_parses(fc)


def test_method_context_has_module_items_and_class_without_the_method() -> None:
    fc = function_at(GEOMETRY, lines_of(GEOMETRY, "def area"))
    assert fc is not None
    assert fc.context.startswith("import math\nfrom dataclasses import dataclass\n")
    assert "SCALE = 2.0" in fc.context
    assert "print(" not in fc.context and "__main__" not in fc.context
    assert "@dataclass\nclass Rect:" in fc.context
    assert "def scaled" in fc.context and "def area" not in fc.context
    assert "def outer" not in fc.context  # below the function
    check_prompt_parses(fc)
    # A test can call the method as a function of an instance.
    ns: dict[str, object] = {}
    exec(fc.context + fc.prompt + "    return self.w * self.h\n", ns)
    assert eval("area(Rect(2, 3))", ns) == 6


def test_nested_function() -> None:
    fc = function_at(GEOMETRY, lines_of(GEOMETRY, "def inner"))
    assert fc is not None
    assert fc.prompt == 'def inner(x):\n    """Square x."""\n'
    assert fc.is_stub and fc.indent == "    "
    assert fc.end_line == lines_of(GEOMETRY, "        ...") + 1
    assert fc.body_start_line == fc.end_line - 1  # the `...` is replaced
    # The enclosing function, without the nested one, is context.
    assert "def outer(xs: list[int]) -> int:\n    total = 0\n" in fc.context
    assert "def inner" not in fc.context and "return sum(" in fc.context
    check_prompt_parses(fc)


def test_outer_function_with_partial_body_keeps_it() -> None:
    fc = function_at(GEOMETRY, lines_of(GEOMETRY, "total = 0"))
    assert fc is not None and not fc.is_stub
    assert fc.prompt.startswith("def outer(xs: list[int]) -> int:\n    total = 0\n")
    assert fc.prompt.endswith("return sum(inner(x) for x in xs) + total\n")
    assert fc.body_start_line == lines_of(GEOMETRY, "total = 0")
    assert "class Rect" in fc.context and "def outer" not in fc.context


def test_async_multiline_signature_single_quoted_docstring() -> None:
    fc = function_at(GEOMETRY, lines_of(GEOMETRY, "timeout: float"))
    assert fc is not None
    assert fc.is_async and fc.is_stub and fc.name == "fetch"
    assert fc.prompt == (
        "async def fetch(url: str,\n"
        "                timeout: float = 1.0,\n"
        "                ) -> bytes:\n"
        "    '''Fetch a url.'''\n"
    )
    assert fc.start_line == lines_of(GEOMETRY, "async def fetch")
    assert fc.body_start_line == lines_of(GEOMETRY, "raise NotImplementedError")
    assert fc.end_line == fc.body_start_line + 1
    task = fc.task()
    assert (task.prompt, task.entry_point, task.context) == (fc.prompt, "fetch", fc.context)


@pytest.mark.parametrize(
    ("body", "stub"),
    [
        ("", True),
        ("    pass\n", True),
        ("    ...\n", True),
        ("    raise NotImplementedError\n", True),
        ('    raise NotImplementedError("later")\n', True),
        ("    return 1\n", False),
        ("    pass\n    return 1\n", False),
        ("    raise ValueError\n", False),
    ],
)
def test_stub_detection(body: str, stub: bool) -> None:
    source = 'def f(a: int = 1) -> int:\n    """Doc."""\n' + body
    fc = function_at(source, 0)
    assert fc is not None and fc.is_stub is stub
    assert fc.body_start_line == 2
    assert fc.prompt.startswith('def f(a: int = 1) -> int:\n    """Doc."""\n')
    assert (fc.prompt == 'def f(a: int = 1) -> int:\n    """Doc."""\n') is stub


def test_tabs() -> None:
    source = "import os\n\nclass A:\n\tdef m(self, x):\n\t\t\"\"\"Twice x.\"\"\"\n\t\tpass\n"
    fc = function_at(source, 4)
    assert fc is not None and fc.name == "m"
    assert fc.indent == "\t" and fc.body_indent == "\t\t"
    assert fc.prompt == 'def m(self, x):\n\t"""Twice x."""\n'
    assert fc.context == "import os\n\n\nclass A:\n\tpass\n"
    text = insert_body(fc, fc.prompt + "\treturn 2 * x\n")
    assert text == "\t\treturn 2 * x\n"
    # Four-space answers are converted to the file's tabs, level by level.
    text = insert_body(fc, fc.prompt + "    if x:\n        return 2 * x\n    return 0\n")
    assert text == "\t\tif x:\n\t\t\treturn 2 * x\n\t\treturn 0\n"


def test_unicode_names_and_docstring() -> None:
    source = (
        "# -*- coding: utf-8 -*-\n"
        "ÉCHELLE = 3\n\n"
        "def größe(wert: float = 1.0) -> str:\n"
        "    \"\"\"Gibt die Größe zurück — 😀 «x».\"\"\"\n"
    )
    fc = function_at(source, 3, character=10)
    assert fc is not None and fc.name == "größe"
    assert fc.prompt == source.split("\n", 3)[3]
    assert fc.context == "ÉCHELLE = 3\n"
    assert function_at(source, 5) is not None  # the line right after the stub


def test_crlf_line_endings() -> None:
    source = 'import os\r\n\r\ndef f(x):\r\n    """Doc."""\r\n    pass\r\n'
    fc = function_at(source, 3)
    assert fc is not None
    assert fc.prompt == 'def f(x):\n    """Doc."""\n'
    assert (fc.start_line, fc.body_start_line, fc.end_line) == (2, 4, 5)
    assert fc.context == "import os\n"


# ---------------------------------------------------------------------------
# Files that do not parse


def test_unfinished_statement_in_the_body() -> None:
    source = (
        "import os\n\n"
        "def f(x):\n"
        '    """Doc."""\n'
        "    y = foo(x,\n"
        "\n"
        "def g():\n"
        "    return os.sep\n"
    )
    fc = function_at(source, 4)
    assert fc is not None and fc.name == "f" and not fc.is_stub
    assert (fc.start_line, fc.body_start_line, fc.end_line) == (2, 4, 5)
    assert fc.prompt == 'def f(x):\n    """Doc."""\n    y = foo(x,\n'
    g = function_at(source, 7)
    assert g is not None and g.name == "g" and (g.start_line, g.end_line) == (6, 8)
    # f does not parse, so it is not in g's context; the import is.
    assert g.context == "import os\n"


def test_docstring_still_being_typed() -> None:
    source = (
        "import re\n\n"
        'WORD = re.compile(r"\\w+")\n\n'
        "def words(text: str) -> list[str]:\n"
        '    """Return the words of text\n'
        "\n"
        "def later():\n"
        "    ...\n"
    )
    fc = function_at(source, 5)
    assert fc is not None and fc.name == "words" and fc.is_stub
    # The docstring is closed in the prompt so that the model gets valid code.
    assert fc.prompt == (
        'def words(text: str) -> list[str]:\n    """Return the words of text\n    """\n'
    )
    assert (fc.start_line, fc.end_line) == (4, 6)
    assert fc.context == 'import re\n\n\nWORD = re.compile(r"\\w+")\n'
    later = function_at(source, 8)
    assert later is not None and later.name == "later"
    # Completing it closes the docstring in the file as well.
    done = apply(source, fc, fc.prompt + "    return WORD.findall(text)\n")
    assert done.startswith(
        'import re\n\nWORD = re.compile(r"\\w+")\n\n'
        'def words(text: str) -> list[str]:\n    """Return the words of text\n    """\n'
        "    return WORD.findall(text)\n\n"
    )
    ns: dict[str, object] = {}
    exec(done, ns)
    assert eval("words('a b')", ns) == ["a", "b"]


def test_syntax_error_elsewhere_and_unfinished_def_line() -> None:
    source = (
        "def broken(:\n"
        "    pass\n\n"
        "def h(a: int = 3, *, b: dict[str, int] | None = None) -> int:\n"
        '    """Triple a."""\n'
        "\n"
        "def typing_now(x,\n"
    )
    with pytest.raises(SyntaxError):
        ast.parse(source)
    fc = function_at(source, 4)
    assert fc is not None and fc.name == "h" and fc.is_stub
    assert fc.context == ""
    check_prompt_parses(fc)
    right_after = function_at(source, 5)  # the empty line under the docstring
    assert right_after is not None and right_after.name == "h"
    t = function_at(source, 6)
    assert t is not None and t.name == "typing_now" and t.end_line == 7


def test_file_ending_inside_a_bracket_keeps_earlier_functions() -> None:
    source = "def a():\n    return 1\n\nx = [1, 2,\n\ndef b(y):\n    '''B.'''\n"
    fc = function_at(source, 6)
    assert fc is not None and fc.name == "b"
    assert fc.context == "def a():\n    return 1\n"


# ---------------------------------------------------------------------------
# Context


def test_context_keeps_imports_constants_and_guarded_imports() -> None:
    source = (
        '"""Module doc."""\n'
        "from __future__ import annotations\n"
        "import os\n"
        "from . import siblings\n"
        "try:\n"
        "    import numpy as np\n"
        "except ImportError:\n"
        "    np = None\n\n"
        "LIMIT: int = 10\n"
        "for i in range(3):\n"
        "    pass\n"
        "setup()\n\n"
        "def helper(x):\n"
        "    return x + LIMIT\n\n"
        "def target(x):\n"
        '    """Use helper."""\n\n'
        "def after():\n"
        "    pass\n\n"
        "import json\n"
    )
    fc = function_at(source, lines_of(source, "def target"))
    assert fc is not None
    assert fc.context == (
        "from __future__ import annotations\n"
        "import os\n\n\n"
        "try:\n    import numpy as np\nexcept ImportError:\n    np = None\n\n\n"
        "LIMIT: int = 10\n\n\n"
        "def helper(x):\n    return x + LIMIT\n\n\n"
        "import json\n"
    )


def test_the_definitions_below_the_function_run_after_it_never_prompted() -> None:
    source = (
        "import os\n\n"
        "class Store:\n"
        "    def get(self, key):\n"
        '        """Look key up."""\n\n'
        "    def put(self, key, value):\n"
        "        self.data[key] = value\n\n"
        "def _normalise(key):\n"
        "    return key.lower()\n\n"
        "DEFAULT = Store()\n"
        "try:\n    import ujson as json\nexcept ImportError:\n    import json\n\n"
        "for i in range(3):\n    pass\n"
        "main()\n"
        "from . import siblings\n"
        "if __name__ == '__main__':\n    main()\n\n"
        "class Sub(Store):\n"
        "    pass\n"
    )
    fc = function_at(source, lines_of(source, "def get"))
    assert fc is not None
    # The class holding the method is the context's; what follows it, of the context's
    # kinds, runs after each candidate.
    assert fc.context_after == (
        "def _normalise(key):\n    return key.lower()\n\n\n"
        "DEFAULT = Store()\n\n\n"
        "try:\n    import ujson as json\nexcept ImportError:\n    import json\n\n\n"
        "class Sub(Store):\n    pass\n"
    )
    task = fc.task(context_tokens=1024)
    assert task.context_after == fc.context_after
    assert "_normalise" not in task.context and "_normalise" not in task.prompt
    assert "_normalise" not in "".join(task.context_budget.shared)  # type: ignore[union-attr]
    last = function_at("def helper():\n    return 1\n\ndef last(x):\n    \"\"\"Last.\"\"\"\n", 4)
    assert last is not None and last.name == "last" and last.context_after == ""


def test_last_function_humaneval_prompt() -> None:
    prompt = (
        "from typing import List\n\n\n"
        "def encode(s: str) -> str:\n"
        "    return s[::-1]\n\n\n"
        "def decode(s: str) -> str:\n"
        '    """ Inverse of encode.\n'
        "    >>> decode(encode('abc'))\n"
        "    'abc'\n"
        '    """\n'
    )
    fc = last_function(prompt)
    assert fc is not None and fc.name == "decode" and fc.is_stub
    assert fc.prompt == prompt[prompt.index("def decode"):]
    assert fc.context == (
        "from typing import List\n\n\ndef encode(s: str) -> str:\n    return s[::-1]\n"
    )
    assert last_function("x = 1\n") is None


# ---------------------------------------------------------------------------
# Putting the answer back


def apply(
    source: str, fc: ctx.FunctionContext, solution: str, cursor: tuple[int, int] | None = None
) -> str:
    (l0, c0), (l1, c1), text = body_edit(fc, solution, cursor)
    lines = source.splitlines(keepends=True) + [""]
    start = sum(len(x) for x in lines[:l0]) + c0
    end = sum(len(x) for x in lines[:l1]) + c1
    return source[:start] + text + source[end:]


def test_insert_body_method_with_helper() -> None:
    fc = function_at(GEOMETRY, lines_of(GEOMETRY, "def area"))
    assert fc is not None
    solution = fc.prompt + (
        "    return _mul(self.w, self.h)\n\n\ndef _mul(a, b):\n    return a * b\n"
    )
    text = insert_body(fc, solution)
    assert text == (
        "        def _mul(a, b):\n"
        "            return a * b\n"
        "        return _mul(self.w, self.h)\n"
    )
    done = apply(GEOMETRY, fc, solution)
    ns: dict[str, object] = {"main": lambda: None}
    exec(compile(done, "geometry.py", "exec"), ns)
    assert eval("Rect(2, 3).area", ns) == 6


def test_insert_body_replaces_stub_and_keeps_the_rest() -> None:
    fc = function_at(GEOMETRY, lines_of(GEOMETRY, "async def fetch"))
    assert fc is not None
    solution = fc.prompt + (
        "    import asyncio\n    await asyncio.sleep(0)\n    return url.encode()\n"
    )
    done = apply(GEOMETRY, fc, solution)
    assert "raise NotImplementedError" not in done
    assert "    '''Fetch a url.'''\n    import asyncio\n" in done
    assert done.endswith('if __name__ == "__main__":\n    main()\n')
    ast.parse(done)


def test_insert_body_nested_and_one_line_stub() -> None:
    fc = function_at(GEOMETRY, lines_of(GEOMETRY, "def inner"))
    assert fc is not None
    done = apply(GEOMETRY, fc, fc.prompt + "    return x * x\n")
    ns: dict[str, object] = {"main": lambda: None}
    exec(compile(done, "geometry.py", "exec"), ns)
    assert eval("outer([1, 2, 3])", ns) == 14

    source = "class P:\n    def f(self) -> int: ...\n\nX = 1\n"
    fc = function_at(source, 1)
    assert fc is not None and fc.is_stub and fc.prompt == "def f(self) -> int:\n"
    done = apply(source, fc, fc.prompt + "    return 42\n")
    assert done == "class P:\n    def f(self) -> int:\n        return 42\n\nX = 1\n"


def test_insert_body_partial_body_and_empty_solution() -> None:
    source = "def f(xs):\n    total = 0\n    for x in xs:\n"
    fc = function_at(source, 2)
    assert fc is not None and not fc.is_stub and fc.body_start_line == 1
    solution = fc.prompt + "        total += x\n    return total\n"
    assert apply(source, fc, solution) == solution
    assert insert_body(fc, "def other():\n    pass\n") == ""
    # A model that restates the whole function after the body: the copy is dropped.
    again = fc.prompt + "        total += x\n    return total\n\n\n" + solution
    assert apply(source, fc, again) == solution


def test_body_edit_replaces_the_indentation_line_the_cursor_waits_on() -> None:
    doc = 'def add(a, b):\n    """Return the sum of a and b."""\n'
    solution = doc + "    return a + b\n"
    source = doc + "    \n  \t\n\nX = 1\n"
    for line, expected in [(2, "  \t\n\nX = 1\n"), (3, "\nX = 1\n")]:
        fc = function_at(source, line, 4)
        assert fc is not None and fc.indented_lines_after == 2
        assert apply(source, fc, solution, (line, 4)) == solution + expected
    fc = function_at(source, 1, 4)  # the cursor on the docstring: the lines below stay
    assert fc is not None
    assert apply(source, fc, solution, (1, 4)) == solution + "    \n  \t\n\nX = 1\n"
    assert apply(source, fc, solution) == solution + "    \n  \t\n\nX = 1\n"


def test_body_edit_at_the_end_of_a_file_without_a_line_end() -> None:
    solution = 'def f(x):\n    """Twice x."""\n    return 2 * x\n'
    source = 'def f(x):\n    """Twice x."""'
    fc = function_at(source, 1, 4)
    assert fc is not None and fc.eof_column == len('    """Twice x."""')
    assert body_edit(fc, solution, (1, 4)) == ((1, 18), (1, 18), "\n    return 2 * x\n")
    assert apply(source, fc, solution) == solution
    source = "def f(x): ..."
    fc = function_at(source, 0, 4)
    assert fc is not None and fc.eof_column == len(source)
    assert apply(source, fc, solution) == "def f(x):\n    return 2 * x\n"


# ---------------------------------------------------------------------------
# The scanner agrees with `ast` wherever the file parses


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    names = ["textwrap.py", "dataclasses.py", "argparse.py", "asyncio/tasks.py",
             "json/decoder.py", "enum.py", "inspect.py", "typing.py"]
    return [root / n for n in names if (root / n).exists()]


@pytest.mark.parametrize("path", _stdlib_files(), ids=lambda p: p.name)
def test_spans_match_ast_on_the_standard_library(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    expected = {
        (n.name, min([d.lineno for d in n.decorator_list] + [n.lineno]) - 1, n.end_lineno)
        for n in nodes
    }
    src = scanner.Source(source)  # every function of the file from one scan
    scanned = {
        (scanner.DEF.match(ll.text).group(2), src.lls[src.first_decorator(i)].start, ll.block_end)
        for i, ll in enumerate(src.lls)
        if src.is_def(i)
    }
    assert scanned == expected
    for node in (nodes[0], nodes[-1]):  # and two through the public function
        fc = function_at(source, node.lineno - 1, character=node.col_offset + 1)
        assert fc is not None, (path.name, node.name)
        assert (fc.name, fc.end_line) == (node.name, node.end_lineno)
        assert fc.is_async is isinstance(node, ast.AsyncFunctionDef)
        ast.parse(fc.context)


def test_every_prefix_of_a_file_being_typed() -> None:
    # The user types the file from top to bottom: at every stage, every line gives
    # a sane answer (or None), never an exception.
    for cut in range(0, len(GEOMETRY), 13):
        source = GEOMETRY[:cut]
        n_lines = source.count("\n") + 1
        for line in range(n_lines + 1):
            fc = function_at(source, line, character=4)
            if fc is None:
                continue
            assert fc.start_line <= line
            below = source.splitlines()[fc.end_line : line + 1]
            assert line < fc.end_line or not "".join(below).strip()  # blank lines below it
            assert fc.start_line < fc.body_start_line <= fc.end_line + 1
            assert fc.prompt.endswith("\n") and fc.prompt.lstrip().startswith(("def", "async", "@"))
            ast.parse(fc.context)


def test_a_docstring_line_left_of_its_quotes_is_still_a_closed_docstring():
    # A doctest output continued with a backslash, less indented than the quotes.
    source = (
        "class A:\n"
        "    def f(self):\n"
        '        """\n'
        "        >>> A().f()\n"
        "        Version(major=3, \\\n"
        "build=1)\n"
        '        """\n'
        "        x = 1\n"
        "        return x\n"
    )
    fc = function_at(source, 7, 13)
    assert fc is not None and fc.name == "f"
    assert fc.docstring_closer == ""
    assert fc.prompt.count('"""') == 2
    from cascode.engine.context.request import request_at

    request = request_at(source, (8, 16))  # the end of the last written line
    assert request is not None and request.rest
