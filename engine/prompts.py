"""Chat prompts for solutions and tests.

Both prompts prefill the assistant's turn: solutions with an opening fence and
the function's own prompt, so the model writes only the body (no restated
docstring, no explanation: the stop rule ends it at the fence or the
function's end); tests with an opening fence and `assert <entry_point>(`, so
the first line is a call of the function under test. The test prompt does not
depend on l: a test is cut after its l-th assert, so one cached test serves
every l.

PROMPT_TEMPLATE_VERSION keys every cache of generations: change it whenever a
prompt, a prefix or a stop rule changes.
"""

from __future__ import annotations

from .extract import AssertStop, CodeStop
from .types import Message, SampleSpec, Task

PROMPT_TEMPLATE_VERSION = 2

MAX_SOLUTION_TOKENS = 512
MAX_TEST_TOKENS = 192
SAMPLE_TEMPERATURE = 0.8
SAMPLE_TOP_P = 0.95
# Sampled tests are cached with up to this many asserts (METHOD.md 4.2).
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


def _code(task: Task) -> str:
    context = task.context if task.prompt_context is None else task.prompt_context
    code = (context.rstrip() + "\n\n\n" if context.strip() else "") + task.prompt
    return code if code.endswith("\n") else code + "\n"


def solution_prefix(task: Task) -> str:
    prompt = task.prompt if task.prompt.endswith("\n") else task.prompt + "\n"
    return "```python\n" + prompt


def unit_test_prefix(task: Task) -> str:
    return f"```python\nassert {task.entry_point}("


def solution_spec(task: Task, n: int, *, sampled: bool, seed: int = 0) -> SampleSpec:
    """n solutions: greedy (n must be 1) or sampled at temperature 0.8, top-p 0.95."""
    prefix = solution_prefix(task)
    return SampleSpec(
        messages=(Message("user", _SOLUTION_REQUEST.format(code=_code(task))),),
        prefix=prefix,
        n=n,
        max_tokens=MAX_SOLUTION_TOKENS,
        stop=CodeStop(body_start=len(prefix)),
        temperature=SAMPLE_TEMPERATURE if sampled else 0.0,
        top_p=SAMPLE_TOP_P if sampled else 1.0,
        seed=seed,
    )


def unit_test_spec(task: Task, n: int, l: int, *, sampled: bool, seed: int = 0) -> SampleSpec:
    """n tests, each stopped after its l-th assert line."""
    return SampleSpec(
        messages=(
            Message("user", _TEST_REQUEST.format(code=_code(task), entry=task.entry_point)),
        ),
        prefix=unit_test_prefix(task),
        n=n,
        max_tokens=MAX_TEST_TOKENS,
        stop=AssertStop(l),
        temperature=SAMPLE_TEMPERATURE if sampled else 0.0,
        top_p=SAMPLE_TOP_P if sampled else 1.0,
        seed=seed + 1_000_003 if sampled else seed,
    )


def solution_text(task: Task, generated: str) -> str:
    """The whole solution function from a generation that continued the prefix."""
    from .extract import solution_from_reply

    return solution_from_reply(task.prompt, generated)


def unit_test_text(task: Task, generated: str) -> str:
    """The test's text (without the fence) from a generation that continued the prefix."""
    return unit_test_prefix(task).split("\n", 1)[1] + generated


def stage_specs(task: Task, k: int, l: int, *, seed: int = 0) -> list[SampleSpec]:
    """What a stage generates: METHOD.md 1 (k = 0: one greedy solution; k = 1: one
    greedy solution and one greedy test; k > 1: k sampled of each)."""
    if k == 0:
        return [solution_spec(task, 1, sampled=False)]
    sampled = k > 1
    return [
        solution_spec(task, k, sampled=sampled, seed=seed),
        unit_test_spec(task, k, l, sampled=sampled, seed=seed),
    ]
