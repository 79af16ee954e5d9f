"""The prompts for solutions and tests, by template version.

Version 2 (chat): the code (file context and function) in a user message with
an instruction, and the assistant's turn prefilled: solutions with an opening
fence and the function's own prompt, tests with an opening fence and
`assert <entry_point>(`. The function's text is sent twice.

A method's tests (every version) start with `assert <Class>(` instead (a static
or class method's with `assert <Class>.<method>(`), and the test request asks
for asserts that build the class: the sandbox runs a method's candidates put
back in their class (methods.executable_solution).

Version 3 (completion): no chat template. A solution's prompt is the code
itself, as it stands in the file, and the model continues the function's body;
a test's prompt is the same code followed by a comment and
`assert <entry_point>(`, so the two prompts of a stage share all of the code
and the backend evaluates it once. The function's text is sent once.

Version 4 (chat, code once): one user message, the same for both prompts,
asks for the function `<entry_point>` completed and then for asserts; the
assistant's turn is prefilled with an opening fence and the code (file context
and function), for tests followed by a comment and `assert <entry_point>(`. The
two prompts of a stage share everything up to the end of the code, and the
function's text is sent once.

Version 5 (chat, docstring once): as version 2, but the prefilled function's
docstring is replaced by a one-line "See above." docstring (the user turn
holds the real one); its tests are version 2's.

Every way, the model writes only the body (no restated docstring, no
explanation: the stop rule ends it at a fence or where the function ends), a
test's first line calls the function under test, and the test prompt does not
depend on l: a test is cut after its l-th assert, so one cached test serves
every l.

The version keys every cache of generations: add one whenever a prompt, a
prefix or a stop rule changes for every task. (A cache key also holds each
request's text, so a change that only some tasks see, as the method tests were,
re-samples only those.) A calibration samples with one and records it in
its plan, and the cascade sends the template of its plan (`Plan.template`);
PROMPT_TEMPLATE_VERSION is the default of both. Measured on HumanEval (greedy,
`benchmarks/template_bench.py`), versions 3 to 5 send 20 to 60% fewer prompt
tokens but cost the 0.5B about 12 points of pass@1: version 2 stays the default.
"""

from __future__ import annotations

from .examples import docstring_span
from .extract import AssertStop, CodeStop, assert_lines, assert_subject, is_valid_rule_assert
from .types import Message, SampleSpec, Task

PROMPT_TEMPLATE_VERSION = 2
TEMPLATES = {
    2: "chat: the code in the user turn, again in the prefilled answer",
    3: "completion: the code once, continued as it stands in the file",
    4: "chat, code once: one request, the code once in the prefilled answer",
    5: "chat, docstring once: the code in the user turn, the answer prefilled without "
       "the function's docstring",
}

MAX_SOLUTION_TOKENS = 512
MAX_TEST_TOKENS = 192
SAMPLE_TEMPERATURE = 0.8
SAMPLE_TOP_P = 0.95
# Sampled tests are cached with up to this many asserts (docs/method.md 4.2).
MAX_ASSERTS = 4

# Both requests open with the code, so the two prompts of a stage share their
# first tokens (system prompt and code) and the backend evaluates them once.
_SOLUTION_REQUEST = (
    "```python\n{code}```\n\n"
    "Complete the Python function above. Reply with the complete function in one "
    "```python code block, with no explanation and no example usage."
)
_TEST_REQUEST = (
    "```python\n{code}```\n\n"
    "Write assert statements that check that `{entry}` above is correct, one per line, "
    "each calling `{entry}` with concrete arguments and comparing the result with the "
    "expected value. Reply with only the assert lines in one ```python code block."
)

# A method's tests build its class (or call a static or class method through it).
_METHOD_TEST_REQUEST = (
    "```python\n{code}```\n\n"
    "Write assert statements that check that the method `{subject}` above is correct, one "
    "per line, each building a `{cls}` object with concrete arguments, using its `{entry}` "
    "and comparing the result with the expected value. Reply with only the assert lines in "
    "one ```python code block."
)
_CLASS_METHOD_TEST_REQUEST = (
    "```python\n{code}```\n\n"
    "Write assert statements that check that the method `{subject}` above is correct, one "
    "per line, each calling `{subject}` with concrete arguments and comparing the result "
    "with the expected value. Reply with only the assert lines in one ```python code block."
)

# Template 4: one request for both prompts (they share it and the code after it).
_ANSWER_REQUEST = (
    "Complete the Python function `{entry}`, then write assert statements that check that "
    "it is correct, one per line, each calling `{entry}` with concrete arguments and "
    "comparing the result with the expected value. Reply in one ```python code block, "
    "with no explanation."
)


def _code(task: Task) -> str:
    context = task.context if task.prompt_context is None else task.prompt_context
    code = (context.rstrip() + "\n\n\n" if context.strip() else "") + task.prompt
    return code if code.endswith("\n") else code + "\n"


# Templates whose test prompt is the solution prompt's code followed by the asserts.
_CODE_THEN_TESTS = (3, 4)


def _check_template(template: int) -> None:
    if template not in TEMPLATES:
        known = ", ".join(str(v) for v in TEMPLATES)
        raise ValueError(f"prompt template {template!r} is not one of {known}")


def solution_prefix(task: Task, template: int = PROMPT_TEMPLATE_VERSION) -> str:
    """The text the model continues: the whole prompt for the completion template,
    the start of the assistant's turn for the chat template."""
    _check_template(template)
    if template == 3:
        return _code(task)
    if template == 4:
        return "```python\n" + _code(task)
    prompt = task.prompt if task.prompt.endswith("\n") else task.prompt + "\n"
    if template == 5:
        parts = _without_docstring(prompt, task.entry_point)
        if parts is not None:
            return "```python\n" + parts
    return "```python\n" + prompt


def _without_docstring(prompt: str, entry_point: str) -> str | None:
    """The function from its `def` on, its docstring replaced by a pointer to the
    user turn's copy (None when it has no docstring where one is expected)."""
    span = docstring_span(prompt, entry_point)
    if span is None:
        return None
    line_start = prompt.rfind("\n", 0, span.open) + 1
    header, indent = prompt[span.def_start:line_start], prompt[line_start:span.open]
    if indent.strip() or not header.rstrip().endswith(":"):
        return None  # the string is not the function's first statement
    return header + indent + '"""See above."""' + prompt[span.end:]


def unit_test_prefix(task: Task, template: int = PROMPT_TEMPLATE_VERSION) -> str:
    _check_template(template)
    if template in _CODE_THEN_TESTS:
        tests = f"\n\n# Tests of `{assert_subject(task)}`\n{_assert_start(task)}"
        return solution_prefix(task, template) + tests
    return f"```python\n{_assert_start(task)}"


def _messages(task: Task, template: int, kind: str) -> tuple[Message, ...]:
    """The user turn of a `kind` ("solution" or "test") prompt; none for a plain
    completion."""
    if template == 3:
        return ()
    if template == 4:
        request = _ANSWER_REQUEST.format(entry=assert_subject(task))
    elif kind == "solution":
        request = _SOLUTION_REQUEST.format(code=_code(task))
    elif not task.method_of:
        request = _TEST_REQUEST.format(code=_code(task), entry=task.entry_point)
    else:
        form = _CLASS_METHOD_TEST_REQUEST if _called_on_class(task) else _METHOD_TEST_REQUEST
        request = form.format(code=_code(task), subject=assert_subject(task),
                              cls=task.method_of, entry=task.entry_point)
    return (Message("user", request),)


def solution_spec(task: Task, n: int, *, sampled: bool, seed: int = 0,
                  template: int = PROMPT_TEMPLATE_VERSION) -> SampleSpec:
    """n solutions: greedy (n must be 1) or sampled at temperature 0.8, top-p 0.95."""
    prefix = solution_prefix(task, template)
    return SampleSpec(
        messages=_messages(task, template, "solution"),
        prefix=prefix,
        n=n,
        max_tokens=MAX_SOLUTION_TOKENS,
        stop=CodeStop(body_start=len(prefix), helpers=template != 3),
        temperature=SAMPLE_TEMPERATURE if sampled else 0.0,
        top_p=SAMPLE_TOP_P if sampled else 1.0,
        seed=seed,
    )


def unit_test_spec(task: Task, n: int, l: int, *, sampled: bool, seed: int = 0,
                   template: int = PROMPT_TEMPLATE_VERSION) -> SampleSpec:
    """n tests, each stopped after its l-th assert line."""
    prefix = unit_test_prefix(task, template)
    return SampleSpec(
        messages=_messages(task, template, "test"),
        prefix=prefix,
        n=n,
        max_tokens=MAX_TEST_TOKENS,
        # A plain completion's code may hold asserts: count from the test's own.
        stop=AssertStop(l, start=len(prefix) - len(_assert_start(task))
                        if template in _CODE_THEN_TESTS else 0),
        temperature=SAMPLE_TEMPERATURE if sampled else 0.0,
        top_p=SAMPLE_TOP_P if sampled else 1.0,
        seed=seed + 1_000_003 if sampled else seed,
    )


def solution_text(task: Task, generated: str) -> str:
    """The whole solution function from a generation that continued the prefix."""
    from .extract import solution_from_reply

    return solution_from_reply(task.prompt, generated)


def _called_on_class(task: Task) -> bool:
    return any(d in task.descriptors for d in ("staticmethod", "classmethod"))


def _assert_start(task: Task) -> str:
    """How every test starts: the function's call, or for a method its class's."""
    if task.method_of and not _called_on_class(task):
        return f"assert {task.method_of}("
    return f"assert {assert_subject(task)}("


def unit_test_text(task: Task, generated: str) -> str:
    """The test's text (from its first `assert`) from a generation that continued the
    prefix: the same under every template."""
    return _assert_start(task) + generated


# -- Asserts written per rule of the docstring (docs/method.md 8.1) ---------------------
#
# One request, independent of the prompt template: the model restates each rule the
# docstring states in words (what it returns for which input, which exception for which
# input, boundaries, empty input) as a numbered `# Rule n:` comment, then checks it with
# one assert; the request shows the form on a two-rule example of another function.
# An exception is checked with `raises(ExceptionType, callable, *args)`, defined by
# RULES_HELPER where the asserts run. The version keys every cache of rule asserts.

RULES_VERSION = 1
MAX_RULES = 6
MAX_RULE_TOKENS = 384


def rules_prefix(task: Task) -> str:
    """The start of the reply: the rules named as the function's, the first one opened
    and numbered (without it the 0.5B restated one rule until its token limit)."""
    return f"```python\n# Rules of `{assert_subject(task)}`, each checked by one assert.\n# Rule 1:"


_RULES_REQUEST = (
    "```python\n{code}```\n\n"
    "List the rules that the docstring of `{subject}` above states in words: what it "
    "returns for which kind of input, which exception it raises and when, what happens at "
    "a boundary or with empty input. For each rule, write a comment line `# Rule: ...` "
    "that restates it, then one assert statement that checks it on concrete arguments, "
    "{how}. To check that an exception is raised, write `assert raises(ExceptionType, "
    "{callable}, arg1, arg2)`. For example, for a function `div(a, b)` whose docstring "
    "says that b = 0 raises ZeroDivisionError and that the result is rounded down:\n\n"
    "```python\n"
    "# Rule: b = 0 raises ZeroDivisionError.\n"
    "assert raises(ZeroDivisionError, div, 1, 0)\n"
    "# Rule: the result is rounded down.\n"
    "assert div(7, 2) == 3\n"
    "```\n\n"
    "Reply with only the comments and the assert lines for `{subject}` in one ```python "
    "code block."
)

# Where rule asserts run, after the file context: the exception check they may use
# (a name the file itself defines is left alone).
RULES_HELPER = '''
if "raises" not in globals():
    def raises(exception, function, *args, **kwargs):
        try:
            function(*args, **kwargs)
        except exception:
            return True
        except BaseException:
            return False
        return False
'''


def rule_test_spec(task: Task) -> SampleSpec:
    """One greedy reply of up to MAX_RULES rule asserts for `task`'s docstring."""
    if task.method_of and not _called_on_class(task):
        how = f"each building a `{task.method_of}` object and using its `{task.entry_point}`"
        callable_ = f"{task.method_of}(...).{task.entry_point}"
    else:
        how = f"each calling `{assert_subject(task)}`"
        callable_ = assert_subject(task)
    request = _RULES_REQUEST.format(code=_code(task), subject=assert_subject(task), how=how,
                                    callable=callable_)
    return SampleSpec(
        messages=(Message("user", request),),
        prefix=rules_prefix(task),
        n=1,
        max_tokens=MAX_RULE_TOKENS,
        stop=AssertStop(MAX_RULES),
        temperature=0.0,
        top_p=1.0,
        seed=0,
    )


def rule_lines(task: Task, generated: str) -> list[str]:
    """The valid rule asserts of a reply that continued `rules_prefix`: each calls the
    function under test (`is_valid_assert`) or checks it with `raises` (one line each,
    unique, in order)."""
    found: list[str] = []
    for line in assert_lines(rules_prefix(task) + generated, MAX_RULES):
        if is_valid_rule_assert(line, assert_subject(task)) and line not in found:
            found.append(line)
    return found


def stage_specs(task: Task, k: int, l: int, *, seed: int = 0,
                template: int = PROMPT_TEMPLATE_VERSION) -> list[SampleSpec]:
    """What a stage generates: docs/method.md 1 (k = 0: one greedy solution; k = 1: one
    greedy solution and one greedy test; k > 1: k sampled of each)."""
    if k == 0:
        return [solution_spec(task, 1, sampled=False, template=template)]
    sampled = k > 1
    return [
        solution_spec(task, k, sampled=sampled, seed=seed, template=template),
        unit_test_spec(task, k, l, sampled=sampled, seed=seed, template=template),
    ]
