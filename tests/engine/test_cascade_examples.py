"""The cascade with the user's examples (docs/method.md 7): the stage rule, a non-last
greedy stage, the pool and the labels, with a scripted backend and an in-process
sandbox (no model)."""

from __future__ import annotations

import pytest
from engine_fakes import InProcessSandbox, ScriptedBackend

from cascode.engine.cascade import Cascade
from cascode.engine.plans import Plan, parse_plan
from cascode.engine.types import Example, StageStarted, Task

PLAN = """\
family:
  - {name: small, backend: llama_cpp, model: /m/small.gguf}
  - {name: large, backend: llama_cpp, model: /m/large.gguf}
tiers:
  greedy_then_greedy:
    theta: 1.0
    stages: {small: {k: 0}, large: {k: 0}}
  greedy_then_tests:
    theta: 0.5
    stages: {small: {k: 0}, large: {k: 3, l: 2}}
  papers:
    theta: 0.5
    examples: false
    stages: {small: {k: 0}, large: {k: 0}}
"""

DOC = '''def double(x: int) -> int:
    """Twice x.

    >>> double(2)
    4
    >>> double(5)
    10
    """
'''
NO_DOC = 'def double(x: int) -> int:\n    """Twice x."""\n'
RIGHT = "    return 2 * x\n```"
HALF_RIGHT = "    return 4 if x == 2 else 0\n```"  # passes the first example only
WRONG = "    return x\n```"
TESTS = ["3) == 6\nassert double(1) == 2\n```"]


@pytest.fixture
def plan() -> Plan:
    return parse_plan(PLAN, "examples-plan.yaml")


def _run(plan: Plan, tier: str, prompt: str, small: list[str], large: list[str],
         sandbox: InProcessSandbox, tests: list[str] | None = None):  # type: ignore[no-untyped-def]
    backends = {"small": ScriptedBackend("small", small, tests or TESTS),
                "large": ScriptedBackend("large", large, tests or TESTS)}
    events: list[object] = []
    task = Task(prompt=prompt, entry_point="double")
    result = Cascade(plan, backends, sandbox).run(task, tier, on_event=events.append)
    return result, backends, events


def test_greedy_stage_accepts_on_the_examples(plan: Plan, sandbox: InProcessSandbox) -> None:
    result, backends, _ = _run(plan, "greedy_then_greedy", DOC, [RIGHT], [WRONG], sandbox)
    assert result.member == "small" and result.verified
    assert [e.text for e in result.examples] == ["assert double(2) == 4",
                                                 "assert double(5) == 10"]
    assert result.accepted_stage.examples_passed == 2
    assert not backends["large"].calls  # accepted: the large member never ran


def test_failed_example_escalates_and_the_pool_keeps_the_better(
        plan: Plan, sandbox: InProcessSandbox) -> None:
    # small passes 1 of 2 examples, large passes none: the pool answers with small's.
    result, backends, _ = _run(plan, "greedy_then_greedy", DOC, [HALF_RIGHT], [WRONG], sandbox)
    assert backends["large"].calls
    assert len(result.stages) == 2
    assert result.answer_stage == 0 and result.member == "small"
    assert "return 4 if x == 2" in result.code
    assert not result.verified
    assert "failed 1 of 2 example" in result.note


def test_later_stage_wins_a_tie_and_a_full_pass(plan: Plan, sandbox: InProcessSandbox) -> None:
    result, _, _ = _run(plan, "greedy_then_greedy", DOC, [WRONG], [RIGHT], sandbox)
    assert result.answer_stage == 1 and result.member == "large" and result.verified
    # Both fail everything: the later stage answers (later first on ties).
    result, _, _ = _run(plan, "greedy_then_greedy", DOC, [WRONG], [WRONG], sandbox)
    assert result.answer_stage == 1 and not result.verified


def test_a_candidate_failing_an_example_never_beats_one_passing_all(
        plan: Plan, sandbox: InProcessSandbox) -> None:
    # The large stage's tests would favour WRONG's sibling; ranking puts examples first.
    result, _, _ = _run(plan, "greedy_then_tests", DOC, [WRONG], [WRONG, RIGHT, WRONG], sandbox,
                        tests=["3) == 3\nassert double(1) == 1\n```"])
    stage = result.stages[-1]
    assert stage.solutions[stage.best].endswith("return 2 * x\n")
    assert stage.examples_passed == 2
    # RIGHT passed every example but its generated tests (which WRONG passes) score 0.
    assert not result.verified and "generated tests scored" in result.note


def test_non_last_greedy_stage_is_skipped_without_examples(
        plan: Plan, sandbox: InProcessSandbox) -> None:
    result, backends, events = _run(plan, "greedy_then_greedy", NO_DOC, [RIGHT], [RIGHT],
                                     sandbox)
    assert not backends["small"].calls  # it could prove nothing
    assert [e.member for e in events if isinstance(e, StageStarted)] == ["large"]
    assert result.member == "large" and not result.verified
    assert result.note.startswith("no examples, and large answered greedily")


def test_examples_false_runs_the_papers_method(plan: Plan, sandbox: InProcessSandbox) -> None:
    result, backends, _ = _run(plan, "papers", DOC, [RIGHT], [RIGHT], sandbox)
    assert result.examples == ()
    assert not backends["small"].calls and result.member == "large"


def test_examples_contradicting_the_text_end_unverified(
        plan: Plan, sandbox: InProcessSandbox) -> None:
    contradicting = DOC.replace("10\n", "11\n")  # double(5) == 11: no right answer passes
    result, _, _ = _run(plan, "greedy_then_greedy", contradicting, [RIGHT], [RIGHT], sandbox)
    assert not result.verified
    assert "failed 1 of 2 example" in result.note


def test_test_file_examples_are_used(plan: Plan, sandbox: InProcessSandbox) -> None:
    example = Example("assert double(7) == 14", "assert double(7) == 14", "tests/test_d.py")
    backends = {"small": ScriptedBackend("small", [WRONG]),
                "large": ScriptedBackend("large", [RIGHT])}
    task = Task(prompt=NO_DOC, entry_point="double", test_examples=(example,))
    result = Cascade(plan, backends, sandbox).run(task, "greedy_then_greedy")
    assert result.examples == (example,)
    assert result.member == "large" and result.verified and len(result.stages) == 2


def test_proof_says_what_the_answer_rests_on(plan: Plan, sandbox: InProcessSandbox) -> None:
    from cascode.engine.proof import proof

    result, _, _ = _run(plan, "greedy_then_greedy", DOC, [RIGHT], [WRONG], sandbox)
    assert proof(result) == "passed your 2 examples"
    result, _, _ = _run(plan, "greedy_then_greedy", DOC, [HALF_RIGHT], [WRONG], sandbox)
    assert proof(result).startswith("unverified: small's answer failed 1 of 2 example")
    example = Example("assert double(7) == 14", "assert double(7) == 14", "tests/test_d.py")
    backends = {"small": ScriptedBackend("small", [RIGHT]),
                "large": ScriptedBackend("large", [RIGHT])}
    task = Task(prompt=DOC, entry_point="double", test_examples=(example,))
    result = Cascade(plan, backends, sandbox).run(task, "greedy_then_greedy")
    assert proof(result) == "passed your 2 examples and 1 from tests/test_d.py"
    task = Task(prompt=NO_DOC, entry_point="double", test_examples=(example,))
    result = Cascade(plan, backends, sandbox).run(task, "greedy_then_tests")
    assert proof(result) == "passed 1 example from tests/test_d.py"


def test_the_pool_keeps_an_earlier_candidate_that_passed_every_example(
        sandbox: InProcessSandbox) -> None:
    # small's 3 solutions pass both examples but its own tests (which expect x) fail
    # them: it passed every example without meeting its rule; large answers wrongly.
    plan = parse_plan("""\
family:
  - {name: small, backend: llama_cpp, model: /m/small.gguf}
  - {name: large, backend: llama_cpp, model: /m/large.gguf}
tiers:
  t: {theta: 1.0, stages: {small: {k: 3, l: 2}, large: {k: 0}}}
""", "pool.yaml")
    backends = {"small": ScriptedBackend("small", [RIGHT], ["3) == 3\nassert double(1) == 1\n```"]),
                "large": ScriptedBackend("large", [WRONG])}
    result = Cascade(plan, backends, sandbox).run(Task(DOC, "double"), "t")
    assert len(result.stages) == 2 and result.answer_stage == 0
    assert result.member == "small" and "return 2 * x" in result.code
    assert result.stages[0].examples_passed == 2 and not result.stages[0].meets_threshold
    assert not result.verified  # passed its examples, but not its own stage's rule
    assert "generated tests scored" in result.note


def test_pool_keys_rank_examples_then_rule_and_later_stages_win_ties() -> None:
    from cascode.engine.scoring import pool_key, pool_replaces, skips_stage

    assert pool_key(2, False) > pool_key(1, True) > pool_key(1, False)
    assert pool_replaces(pool_key(1, False), pool_key(1, False))  # later first on ties
    assert not pool_replaces(pool_key(1, True), pool_key(2, False))
    assert skips_stage(0, False, 0) and not skips_stage(0, False, 2)
    assert not skips_stage(0, True, 0) and not skips_stage(3, False, 0)
