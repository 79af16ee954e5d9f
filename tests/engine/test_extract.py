"""Extraction of solutions and test lines, and the stop rules, on realistic replies.

The replies below have the shapes the instruct models produce when their turn
is prefilled with an opening fence and the function's prompt (solutions) or
with `assert <entry_point>(` (tests): the body or the rest of the first assert,
then a closing fence, often an explanation, example calls, a `__main__` block.
"""

from __future__ import annotations

import pytest

from cascode.engine import prompts  # (its test_* helpers would be collected as tests)
from cascode.engine.extract import (
    AssertStop,
    CodeStop,
    assert_lines,
    assert_text_end,
    extract_code,
    is_valid_assert,
    pooled_suite,
    solution_from_reply,
)
from cascode.engine.types import Task

TASK = Task(
    prompt=(
        "def unique(l: list) -> list:\n"
        '    """Return sorted unique elements in a list\n'
        "    >>> unique([5, 3, 5, 2, 3, 3, 9, 0, 123])\n"
        "    [0, 2, 3, 5, 9, 123]\n"
        '    """\n'
    ),
    entry_point="unique",
)
BODY = "    return sorted(set(l))\n"


def stopped(stop: CodeStop | AssertStop, prefix: str, generated: str) -> str:
    """What a backend keeps of `generated` under `stop` (the text is prefix + generated)."""
    full = prefix + generated
    cut = stop.cut(full)
    return full[len(prefix) : cut] if cut is not None else generated


# ---------------------------------------------------------------------------
# Solutions: CodeStop and solution_from_reply


@pytest.mark.parametrize(
    "after",
    [
        "```\n\nThis function first converts the list to a set to remove duplicates, then",
        "```\n",
        "\n\n# Example usage\nprint(unique([5, 3, 5, 2, 3, 3, 9, 0, 123]))\n```\n",
        "\n\nprint(unique([5, 3, 5]))  # Output: [3, 5]\n",
        '\n\nif __name__ == "__main__":\n    import doctest\n    doctest.testmod()\n```',
        "\nThe function uses `set` to drop duplicates and `sorted` to order them.\n",
        "\n\nunique([1, 1])\n",
    ],
)
def test_code_stop_ends_at_fence_or_function_end(after: str) -> None:
    prefix = prompts.solution_prefix(TASK)
    kept = stopped(CodeStop(body_start=len(prefix)), prefix, BODY + after)
    assert kept.strip() == BODY.strip()
    assert solution_from_reply(TASK.prompt, BODY + after) == TASK.prompt + BODY


def test_code_stop_keeps_helpers_and_imports_after_the_function() -> None:
    prefix = prompts.solution_prefix(TASK)
    generated = (
        "    return _dedupe(l)\n\n\n"
        "import itertools\n\n\n"
        "@functools.cache\n"
        "def _dedupe(xs):\n"
        "    return sorted(set(xs))\n\n\n"
        "class Box:\n"
        "    pass\n\n\n"
        "print(unique([1, 1]))\n"
    )
    kept = stopped(CodeStop(body_start=len(prefix)), prefix, generated)
    assert kept.rstrip().endswith("class Box:\n    pass")
    assert "print(" not in kept
    solution = solution_from_reply(TASK.prompt, generated)
    assert solution.endswith("class Box:\n    pass\n") and "import itertools" in solution


def test_code_stop_waits_for_complete_lines() -> None:
    prefix = prompts.solution_prefix(TASK)
    stop = CodeStop(body_start=len(prefix))
    assert stop.cut(prefix + "    return sorted(set(l") is None
    assert stop.cut(prefix + BODY) is None  # the function may go on
    assert stop.cut(prefix + BODY + "\nprint") is None  # not a whole line yet
    assert stop.cut(prefix + BODY + "\nprint(1)\n") == len(prefix + BODY + "\n")
    assert stop.stop_strings == ("```",)


def test_code_stop_with_a_fence_inside_the_prompt_docstring() -> None:
    # The fence that opens the reply is not the one that closes it.
    task = Task('def f():\n    """Return ```x```."""\n', "f")
    prefix = prompts.solution_prefix(task)
    kept = stopped(CodeStop(body_start=len(prefix)), prefix, "    return 'x'\n```\nDone.")
    assert kept == "    return 'x'\n"


def test_solution_without_a_newline_at_the_end() -> None:
    assert solution_from_reply(TASK.prompt, "    return sorted(set(l))") == TASK.prompt + BODY


# ---------------------------------------------------------------------------
# extract_code: whole replies, fenced or bare


def test_extract_code_fenced_with_explanations() -> None:
    reply = (
        "Here is the implementation:\n\n"
        "```python\n"
        "def unique(l: list) -> list:\n"
        "    return sorted(set(l))\n"
        "```\n\n"
        "Explanation: `set` removes duplicates.\n"
    )
    code = extract_code(reply, "unique")
    assert code == "def unique(l: list) -> list:\n    return sorted(set(l))\n"


def test_extract_code_picks_the_block_defining_the_entry_point() -> None:
    reply = (
        "First, a helper:\n```python\nimport math\n```\n"
        "Then:\n```py\ndef unique(l):\n    return sorted(set(l))\n\n"
        "print(unique([2, 2]))\n```\n"
        "And tests:\n```python\nassert unique([1]) == [1]\n```\n"
    )
    assert extract_code(reply, "unique") == "def unique(l):\n    return sorted(set(l))\n"
    assert extract_code(reply) == "import math\n"  # no entry point: the first block


def test_extract_code_bare_with_trailing_usage() -> None:
    reply = (
        "from typing import List\n\n"
        "def unique(l: List[int]) -> List[int]:\n"
        "    seen = set()\n"
        "    return sorted(x for x in l if not (x in seen or seen.add(x)))\n\n"
        "# Test\n"
        "print(unique([3, 3, 1]))\n"
    )
    code = extract_code(reply, "unique")
    assert code.startswith("from typing import List\n")
    assert code.endswith("seen.add(x)))\n")
    assert "print" not in code


def test_extract_code_unclosed_fence() -> None:
    reply = "```python\ndef unique(l):\n    return sorted(set(l))\n"
    assert extract_code(reply, "unique") == "def unique(l):\n    return sorted(set(l))\n"


# ---------------------------------------------------------------------------
# Tests: AssertStop, assert lines and the pooled suite


@pytest.mark.parametrize(
    ("generated", "n_asserts", "kept"),
    [
        # stops right after the l-th assert line
        (
            "[5, 3, 5]) == [3, 5]\nassert unique([]) == []\nassert unique([1]) == [1]\n",
            2,
            "[5, 3, 5]) == [3, 5]\nassert unique([]) == []\n",
        ),
        # comments and blank lines do not count
        (
            "[1, 1]) == [1]\n\n# empty input\nassert unique([]) == []\nassert unique([2]) == [2]\n",
            2,
            "[1, 1]) == [1]\n\n# empty input\nassert unique([]) == []\n",
        ),
        # a closing fence ends the test early, explanations are dropped
        ("[1, 1]) == [1]\n```\n\nThese asserts check duplicates.", 4, "[1, 1]) == [1]\n"),
        # indented asserts (inside a test function) count too
        (
            "[1]) == [1]\n\ndef test():\n    assert unique([2, 2]) == [2]\n    assert 1\n",
            2,
            "[1]) == [1]\n\ndef test():\n    assert unique([2, 2]) == [2]\n",
        ),
    ],
)
def test_assert_stop(generated: str, n_asserts: int, kept: str) -> None:
    assert stopped(AssertStop(n_asserts), prompts.unit_test_prefix(TASK), generated) == kept


def test_assert_stop_waits_for_the_end_of_the_line() -> None:
    prefix = prompts.unit_test_prefix(TASK)
    stop = AssertStop(2)
    assert stop.cut(prefix + "[1]) == [1]\nassert unique([2]) == [") is None
    assert stop.cut(prefix + "[1]) == [1]\nassert unique([2]) == [2]\n") is not None


def test_test_text_restores_the_first_assert() -> None:
    text = prompts.unit_test_text(TASK, "[1, 1]) == [1]\nassert unique([]) == []\n")
    assert text == "assert unique([1, 1]) == [1]\nassert unique([]) == []\n"


def test_assert_lines_takes_the_first_l_only() -> None:
    test = (
        "assert unique([1, 1]) == [1]\n"
        "x = [3, 2]\n"
        "    assert unique(x) == [2, 3]\n"
        "assert unique([]) == []\n"
        "assert unique([0]) == [0]\n"
    )
    assert assert_lines(test, 2) == ["assert unique([1, 1]) == [1]", "assert unique(x) == [2, 3]"]
    assert len(assert_lines(test, 4)) == 4
    assert assert_lines("print(1)\n", 2) == []


@pytest.mark.parametrize(
    ("line", "valid"),
    [
        ("assert unique([1, 1]) == [1]", True),
        ('assert unique([1, 1]) == [1], "duplicates"', True),
        ("assert(unique([2]) == [2])", True),
        ("assert len(unique([1, 1])) == 1", True),
        ("assert unique(unique([1])) == [1]", True),
        ("assert sorted(set([1])) == [1]", False),  # does not call the function
        ("assert unique", False),  # names it, does not call it
        ("assert obj.unique([1]) == [1]", False),  # a method of something else
        ("assert unique([1,", False),  # the first line of a multi-line assert
        ("assert unique([1]) == [1]; print('ok')", False),  # two statements
        ("assert unique([1]) = [1]", False),  # does not parse
        ("assertEqual(unique([1]), [1])", False),  # not an assert statement
        ("assert unique([1]) == [1]  # comment", True),
    ],
)
def test_valid_assert_lines(line: str, valid: bool) -> None:
    assert is_valid_assert(line, "unique") is valid


def test_pooled_suite_keeps_order_and_duplicates() -> None:
    tests = [
        "assert unique([1, 1]) == [1]\nassert unique([]) == []\nassert unique([9]) == [9]\n",
        "assert unique([1, 1]) == [1]\nassert sorted([2]) == [2]\n",  # second line invalid
        "assert unique([3,\n    3]) == [3]\nassert unique([4]) == [4]\n",  # multi-line first
        "",  # a test with no assert at all
    ]
    suite = pooled_suite(tests, "unique", 2)
    assert suite == [
        "assert unique([1, 1]) == [1]",
        "assert unique([]) == []",
        "assert unique([1, 1]) == [1]",  # duplicates are kept
        "assert unique([4]) == [4]",
    ]
    # An invalid line still counts as one of the l taken: asserts beyond l never enter.
    assert "assert unique([9]) == [9]" not in suite
    assert len(pooled_suite(tests, "unique", 4)) == 5


def test_assert_text_end_counts_up_to_the_lth_assert() -> None:
    test = "assert unique([1]) == [1]\n# two\nassert unique([]) == []\nassert unique([2]) == [2]\n"
    assert assert_text_end(test, 2) == test.index("assert unique([2])")
    assert assert_text_end(test, 4) == len(test)
