"""Asserts written per rule of the docstring (docs/method.md 8.1): the request, which
lines of a reply count, the `raises` helper in a real sandbox, and a real 0.5B's
rule asserts judging a right and a wrong candidate."""

from __future__ import annotations

from cascode.engine.extract import AssertStop, is_valid_rule_assert
from cascode.engine.prompts import (
    MAX_RULES,
    RULES_HELPER,
    rule_lines,
    rule_test_spec,
    rules_prefix,
)
from cascode.engine.sandbox import create_sandbox
from cascode.engine.types import Task, Verdict

from ..conftest import need_sandbox

PERCENT = '''def percent(part, whole):
    """The share of `whole` that `part` is, in percent, rounded to one decimal.

    Raise ValueError when `whole` is 0 or negative. A negative `part` is an error too
    (ValueError). The result may be above 100.
    """
'''
RIGHT = PERCENT + '''    if whole <= 0 or part < 0:
        raise ValueError("part must be >= 0 and whole > 0")
    return round(100 * part / whole, 1)
'''
# Reads the rule about `whole` and forgets the one about `part`.
WRONG = PERCENT + '''    if whole <= 0:
        raise ValueError("whole must be > 0")
    return round(100 * part / whole, 1)
'''

STORE = '''class Store:
    def __init__(self, size):
        self.size = size
        self.items = {}

    @staticmethod
    def make(size):
        return Store(size)

    def get(self, key):
        """The item stored under `key`; KeyError when there is none."""
'''


def _task(prompt: str, entry: str, **kw: object) -> Task:
    return Task(task_id="t", prompt=prompt, entry_point=entry, **kw)  # type: ignore[arg-type]


def test_the_request_asks_one_assert_per_stated_rule_greedily():
    spec = rule_test_spec(_task(PERCENT, "percent"))
    [message] = spec.messages
    assert message.role == "user" and "def percent(part, whole):" in message.content
    assert "docstring of `percent`" in message.content
    assert "`assert raises(ExceptionType, percent, arg1, arg2)`" in message.content
    assert spec.prefix == rules_prefix(_task(PERCENT, "percent")) and spec.prefix.endswith(
        "# Rules of `percent`, each checked by one assert.\n# Rule 1:")
    assert spec.n == 1 and spec.temperature == 0.0
    # The request shows the form on another function.
    assert "assert raises(ZeroDivisionError, div, 1, 0)" in message.content
    assert spec.stop == AssertStop(MAX_RULES)


def test_a_methods_rule_asserts_build_its_class():
    task = _task(STORE, "get", method_of="Store")
    [message] = rule_test_spec(task).messages
    assert "building a `Store` object and using its `get`" in message.content
    assert "# Rules of `Store.get`" in rule_test_spec(task).prefix
    assert "raises(ExceptionType, Store(...).get, arg1, arg2)" in message.content
    assert is_valid_rule_assert("assert raises(KeyError, Store(2).get, 'x')", "Store.get")
    assert is_valid_rule_assert("assert Store(2).get('x') is None", "Store.get")
    # Another class, another method, a bare class attribute: not the method under test.
    assert not is_valid_rule_assert("assert raises(KeyError, Other(2).get, 'x')", "Store.get")
    assert not is_valid_rule_assert("assert raises(KeyError, Store(2).put, 'x')", "Store.get")
    assert is_valid_rule_assert("assert raises(ValueError, Store.make, -1)", "Store.make")


def test_only_asserts_that_check_the_function_count_once_each():
    reply = (" A zero whole is an error.\n"
             "# Rule 2: not an assert\n"
             "assert raises(ValueError, percent, 1, 0)\n"
             "# Rule: a negative part is an error.\n"
             "assert raises(ValueError, percent, -1, 10)\n"
             "# Rule: the share in percent, one decimal.\n"
             "assert percent(1, 3) == 33.3\n"
             "assert percent(1, 3) == 33.3\n"
             "# Rule: not a check of percent.\n"
             "assert round(1 / 3, 1) == 0.3\n"
             "assert raises(ValueError, int, 'x')\n"
             "assert percent(1, 3) ==\n"
             "```\n")
    assert rule_lines(_task(PERCENT, "percent"), reply) == [
        "assert raises(ValueError, percent, 1, 0)",
        "assert raises(ValueError, percent, -1, 10)",
        "assert percent(1, 3) == 33.3",
    ]


def _verdicts(solution: str, lines: list[str], context: str = "") -> list[Verdict]:
    with create_sandbox() as box:
        need_sandbox(box)
        return list(box.run_matrix([solution], lines, context=context + RULES_HELPER)
                    .verdicts[0])


def test_raises_holds_only_for_the_named_exception():
    lines = ["assert raises(ValueError, percent, -1, 10)",
             "assert raises(TypeError, percent, -1, 10)",
             "assert raises(ValueError, percent, 1, 10)",
             "assert not raises(ValueError, percent, 1, 10)"]
    assert _verdicts(RIGHT, lines) == [Verdict.PASSED, Verdict.FAILED, Verdict.FAILED,
                                       Verdict.PASSED]
    # A file that defines its own `raises` keeps it.
    own = "def raises(*args):\n    return False\n"
    assert _verdicts(RIGHT, lines[:1], context=own) == [Verdict.FAILED]


def test_a_real_05b_states_the_rules_and_they_judge_the_candidates(qwen05b):
    task = _task(PERCENT, "percent")
    [[reply]] = qwen05b.sample([rule_test_spec(task)])
    lines = rule_lines(task, reply.text)
    assert lines, reply.text
    right, wrong = _verdicts(RIGHT, lines), _verdicts(WRONG, lines)
    # The right candidate passes at least as many of them as the one that forgot a rule.
    passed = [sum(v == Verdict.PASSED for v in row) for row in (right, wrong)]
    assert passed[0] >= passed[1], (reply.text, right, wrong)
    assert passed[0] > 0, (reply.text, right)
