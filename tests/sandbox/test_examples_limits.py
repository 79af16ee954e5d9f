"""Examples the user wrote run under the same limits as generated asserts: one that
hangs or eats memory fails its line in the real sandbox, never the request."""

from __future__ import annotations

from cascode.engine.backends.scripted import ScriptedBackend
from cascode.engine.cascade import Cascade
from cascode.engine.plans import parse_plan
from cascode.engine.sandbox.process import ProcessSandbox
from cascode.engine.types import SampleSpec, Task, Verdict

PLAN = """\
family:
  - {name: small, backend: llama_cpp, model: /m/small.gguf}
tiers:
  greedy: {theta: 1.0, stages: {small: {k: 0}}}
"""

# The expected values of the first two examples hang (a Python loop: the per-assert
# timer stops it) and exhaust memory (the address-space limit stops it).
PROMPT = '''def double(x: int) -> int:
    """Twice x.

    double(1) -> next(i for i in iter(int, 1) if i)
    double(2) == len([0] * 10 ** 11)
    >>> double(3)
    6
    """
'''


class OneAnswer(ScriptedBackend):
    name = "small"

    def pick(self, spec: SampleSpec, i: int) -> str:
        return "    return 2 * x\n"


def test_hanging_and_greedy_examples_fail_their_lines(sandbox: ProcessSandbox) -> None:
    cascade = Cascade(parse_plan(PLAN, "p.yaml"), {"small": OneAnswer()}, sandbox)
    result = cascade.run(Task(PROMPT, "double"), "greedy")
    assert [e.text for e in result.examples][2] == "assert double(3) == 6"
    stage = result.accepted_stage
    assert stage.example_matrix == ((False, False, True),)
    assert not result.verified
    assert "failed 2 of 3 example" in result.note
    # The sandbox is still usable afterwards.
    again = sandbox.run_matrix(["def double(x):\n    return 2 * x\n"], ["assert double(4) == 8"])
    assert again.verdicts == ((Verdict.PASSED,),)
