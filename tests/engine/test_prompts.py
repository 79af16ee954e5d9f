"""The prompt templates: what each sends, where each stops, and the keys of old caches."""

from __future__ import annotations

import pytest

from cascode.engine import prompts
from cascode.engine.backends.chat import apply_stop, compile_template, render_prompt
from cascode.engine.extract import AssertStop, CodeStop
from cascode.engine.types import Task

CONTEXT = "import math\n\n\ndef area(r):\n    return math.pi * r * r\n\nassert area(0) == 0\n"
TASK = Task(
    'def total_area(rs):\n    """Sum of the areas of circles of radii rs.\n\n'
    '    >>> total_area([0])\n    0.0\n    """\n',
    "total_area",
    context=CONTEXT,
)
CHATML = compile_template(
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_the_completion_template_sends_the_code_once_and_shares_it_with_the_test_prompt():
    solution = prompts.solution_spec(TASK, 1, sampled=False, template=3)
    test = prompts.unit_test_spec(TASK, 1, 4, sampled=False, template=3)
    assert solution.messages == () and test.messages == ()
    # Plain completion: the prompt is the code as it stands in the file, once.
    assert render_prompt(CHATML, solution) == solution.prefix
    assert solution.prefix.count("def total_area(") == 1
    assert solution.prefix.startswith(CONTEXT.rstrip()) and solution.prefix.endswith(TASK.prompt)
    # The test prompt continues the same code: everything but its last line is shared.
    assert test.prefix.startswith(solution.prefix)
    assert test.prefix.endswith("\nassert total_area(")


def test_the_code_once_template_shares_one_request_and_the_code_between_both_prompts():
    solution = prompts.solution_spec(TASK, 1, sampled=False, template=4)
    test = prompts.unit_test_spec(TASK, 1, 4, sampled=False, template=4)
    assert solution.messages == test.messages and len(solution.messages) == 1
    assert "def " not in solution.messages[0].content  # the request holds no code
    rendered_solution = render_prompt(CHATML, solution)
    rendered_test = render_prompt(CHATML, test)
    assert rendered_solution.count("def total_area(") == 1
    assert rendered_solution.endswith("<|im_start|>assistant\n```python\n" + CONTEXT.rstrip()
                                      + "\n\n\n" + TASK.prompt)
    # The test prompt is the solution prompt and one more line after the code.
    assert rendered_test.startswith(rendered_solution)
    assert rendered_test.endswith("# Tests of `total_area`\nassert total_area(")
    # The file's own assert is not one of the test's.
    text, cut = apply_stop(test, "[0]) == 0.0\nassert total_area([]) == 0\n```\n")
    assert cut and text.count("assert") == 1
    assert apply_stop(solution, "    return 0.0\n```\nDone.") == ("    return 0.0\n", True)


def test_the_chat_template_sends_the_function_twice():
    solution = prompts.solution_spec(TASK, 1, sampled=False, template=2)
    rendered = render_prompt(CHATML, solution)
    assert rendered.count("def total_area(") == 2
    assert rendered.startswith("<|im_start|>user\n```python\n")


def test_a_completion_ends_at_the_first_character_of_a_top_level_line():
    spec = prompts.solution_spec(TASK, 1, sampled=False, template=3)
    body = "    return sum(area(r) for r in rs)\n\n\n"
    for after in ("d", "def check(candidate):\n    pass\n", "print(total_area([1]))\n", "# x"):
        text, cut = apply_stop(spec, body + after)
        assert cut and text == body, after
    # A helper defined after the function is the rest of a file, not the answer.
    assert prompts.solution_text(TASK, apply_stop(spec, body + "def helper():\n")[0]).endswith(
        "return sum(area(r) for r in rs)\n")
    # Indented lines and blank lines go on.
    assert apply_stop(spec, "    x = 1\n\n    return x\n") == ("    x = 1\n\n    return x\n", False)


def test_the_chat_template_still_keeps_a_helper_after_the_function():
    spec = prompts.solution_spec(TASK, 1, sampled=False, template=2)
    reply = "    return helper(rs)\n\ndef helper(rs):\n    return 0.0\n```\n"
    text, cut = apply_stop(spec, reply)
    assert cut and text == "    return helper(rs)\n\ndef helper(rs):\n    return 0.0\n"


def test_a_completion_test_counts_only_its_own_asserts_and_ends_at_other_code():
    spec = prompts.unit_test_spec(TASK, 1, 2, sampled=False, template=3)
    assert "assert area(0) == 0" in spec.prefix  # an assert of the file, not of the test
    text, cut = apply_stop(spec, "[0]) == 0.0\nassert total_area([]) == 0\nassert x\n")
    assert cut and text == "[0]) == 0.0\nassert total_area([]) == 0\n"
    text, cut = apply_stop(spec, "[0]) == 0.0\n# more\nprint(total_area([1]))\n")
    assert cut and text == "[0]) == 0.0\n# more\n"
    assert prompts.unit_test_text(TASK, text).startswith("assert total_area([0]) == 0.0\n")


def test_the_keys_of_caches_sampled_with_template_2_do_not_change():
    # Stop rules key the caches by their repr: the fields added for template 3 are
    # left out at their defaults, as every template-2 cache was keyed.
    assert repr(CodeStop(body_start=12)) == "CodeStop(body_start=12)"
    assert repr(AssertStop(4)) == "AssertStop(l=4)"
    spec = prompts.unit_test_spec(TASK, 1, 4, sampled=False, template=2)
    assert repr(spec.stop) == "AssertStop(l=4)"
    assert repr(prompts.solution_spec(TASK, 1, sampled=False, template=3).stop).endswith(
        ", helpers=False)")


METHOD_FILE = '''\
class Store:
    def __init__(self, items=()):
        self.items = list(items)

    def add(self, x):
        """Append x; the new length."""

    @classmethod
    def empty(cls):
        """A store with nothing in it."""
'''


def _method(line: int) -> Task:
    from cascode.engine.context import function_at

    fc = function_at(METHOD_FILE, line)
    assert fc is not None
    return fc.task()


def test_a_method_s_tests_build_its_class():
    add, empty = _method(4), _method(8)
    assert (add.method_of, add.descriptors, empty.descriptors) == ("Store", "", "@classmethod\n")
    # Its tests start by building the class, and the request says so.
    assert prompts.unit_test_prefix(add) == "```python\nassert Store("
    request = prompts.unit_test_spec(add, 1, 4, sampled=False).messages[0].content
    assert "the method `Store.add` above" in request
    assert "each building a `Store` object with concrete arguments, using its `add`" in request
    assert prompts.unit_test_text(add, "[1]).add(2) == 2\n") == "assert Store([1]).add(2) == 2\n"
    # A class method is called through its class.
    assert prompts.unit_test_prefix(empty) == "```python\nassert Store.empty("
    assert "each calling `Store.empty` with concrete arguments" in prompts.unit_test_spec(
        empty, 1, 4, sampled=False).messages[0].content
    assert prompts.unit_test_prefix(add, template=3).endswith(
        "# Tests of `Store.add`\nassert Store(")
    # The solution's prompt is the one every method had before.
    assert prompts.solution_prefix(add) == "```python\n" + add.prompt


def test_a_function_nested_in_a_method_is_tested_as_a_function():
    src = "class A:\n    def m(self):\n        def inner(x):\n            return x\n"
    from cascode.engine.context import function_at

    fc = function_at(src, 2)
    assert fc is not None and fc.name == "inner"
    task = fc.task()
    assert task.owner == "A.m" and task.method_of == ""
    assert prompts.unit_test_prefix(task) == "```python\nassert inner("
    # A class inside a function cannot be reached from the module: no method either.
    fc = function_at("def make():\n    class B:\n        def get(self):\n            return 1\n", 2)
    assert fc is not None and fc.task().method_of == ""


def test_an_unknown_template_is_refused_by_name():
    with pytest.raises(ValueError, match="prompt template 9 is not one of 2, 3, 4"):
        prompts.solution_spec(TASK, 1, sampled=False, template=9)


def test_stop_strings_for_servers_that_take_them():
    assert CodeStop(helpers=True).stop_strings == ("```",)
    assert "\ndef " in CodeStop(helpers=False).stop_strings
    assert AssertStop(2, start=5).stop_strings[0] == "```"
