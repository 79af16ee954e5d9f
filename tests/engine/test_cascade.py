"""The cascade's logic with a scripted backend and an in-process sandbox (no model)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from engine_fakes import InProcessSandbox, ScriptedBackend

from cascode.engine import prompts
from cascode.engine.cancel import CancelToken
from cascode.engine.cascade import Cascade
from cascode.engine.errors import Cancelled
from cascode.engine.extract import CodeStop
from cascode.engine.plans import Plan, parse_plan
from cascode.engine.scoring import accepts
from cascode.engine.types import Escalating, Event, Executing, Finished, StageStarted, Task

PLAN = """\
family:
  - {name: small, backend: llama_cpp, model: /m/small.gguf}
  - {name: large, backend: llama_cpp, model: /m/large.gguf}
tiers:
  two:
    theta: 0.9
    stages: {small: {k: 3, l: 2}, large: {k: 1, l: 2}}
  greedy_last:
    theta: 0.9
    stages: {small: {k: 3, l: 2}, large: {k: 0}}
  alone:
    theta: 1.0
    stages: {small: {k: 3, l: 2}}
"""

TASK = Task(
    prompt='def add(a: int, b: int) -> int:\n    """Add a and b."""\n',
    entry_point="add",
    context="OFFSET = 0\n",
)
RIGHT = "    return a + b + OFFSET\n```\n\nThis adds the numbers."
WRONG = "    return a - b\n```"
# Test generations continue the prefix `assert add(`.
GOOD_TESTS = ["1, 2) == 3\nassert add(2, 2) == 4\nassert add(5, 5) == 99\n```"]
NO_VALID_TESTS = ["1, 2 == 3\nassert sum([1]) == 1\n"]  # unbalanced, then no call of add


@pytest.fixture
def plan() -> Plan:
    return parse_plan(PLAN, "test-plan.yaml")


def run(plan: Plan, backends: dict[str, ScriptedBackend], sandbox: InProcessSandbox | None,
        tier: str, **kwargs: object):  # type: ignore[no-untyped-def]
    events: list[Event] = []
    result = Cascade(plan, dict(backends), sandbox).run(  # type: ignore[arg-type]
        TASK, tier, on_event=events.append, **kwargs  # type: ignore[arg-type]
    )
    return result, events


def test_accept_at_stage_one(plan: Plan, sandbox: InProcessSandbox) -> None:
    small = ScriptedBackend("small", [RIGHT], GOOD_TESTS)
    large = ScriptedBackend("large", [RIGHT], GOOD_TESTS)
    result, _ = run(plan, {"small": small, "large": large}, sandbox, "two")
    assert result.member == "small" and result.tier == "two" and result.verified
    assert result.code == TASK.prompt + "    return a + b + OFFSET\n"
    assert large.calls == []  # never asked
    (stage,) = result.stages
    # 3 tests x first 2 asserts, all valid, pooled with duplicates
    assert stage.n_tests == 6
    assert stage.suite[:2] == ("assert add(1, 2) == 3", "assert add(2, 2) == 4")
    assert stage.pass_matrix == ((True,) * 6,) * 3
    assert stage.scores == (18, 18, 18) and stage.best == 0  # n_s = 6, n_t = 3
    assert stage.threshold == pytest.approx(0.9 * 3 * 6)
    assert stage.accepted and not stage.last
    # the sandbox got the file context and the pooled suite
    (solutions, tests, context), = sandbox.calls
    assert len(solutions) == 3 and tests == list(stage.suite) and context == "OFFSET = 0\n"
    # k = 3: three sampled solutions and three sampled tests, as one call
    (specs,) = small.calls
    assert [(s.n, s.temperature > 0) for s in specs] == [(3, True), (3, True)]
    assert stage.generated_tokens > 0 and stage.seconds > 0


def test_a_file_that_does_not_compile_here_is_not_held_against_the_answer(
        plan: Plan, sandbox: InProcessSandbox) -> None:
    """No line can pass where the file around the function does not compile on the
    sandbox's Python: nothing runs, and the answer says why it is untested, instead of
    every candidate failing and the cascade escalating to its last member."""
    import dataclasses

    from cascode.engine.cascade import context_error

    task = dataclasses.replace(TASK, context="OFFSET = 0\nreturn OFFSET\n")  # parses
    small = ScriptedBackend("small", [RIGHT], GOOD_TESTS)
    large = ScriptedBackend("large", [RIGHT], GOOD_TESTS)
    result = Cascade(plan, {"small": small, "large": large}, sandbox).run(  # type: ignore[dict-item]
        task, "two")
    assert sandbox.calls == [] and large.calls == []
    assert result.member == "small" and not result.verified
    assert result.note.startswith("execution unavailable: the file around the function "
                                  "does not compile on this Python (3.")
    assert "'return' outside function: `return OFFSET`" in result.note
    assert context_error(TASK.context) is None


def test_escalate_to_stage_two(plan: Plan, sandbox: InProcessSandbox) -> None:
    small = ScriptedBackend("small", [WRONG, RIGHT, WRONG], GOOD_TESTS)
    large = ScriptedBackend("large", [RIGHT], GOOD_TESTS)
    result, events = run(plan, {"small": small, "large": large}, sandbox, "two")
    first, second = result.stages
    # small: the right solution passes 6 of 6 lines alone: 6 * 1 = 6 < 16.2
    assert first.scores == (0, 6, 0) and first.best == 1 and not first.accepted
    # large: k = 1, greedy, one test: 2 * 1 >= 0.9 * 1 * 2
    assert second.k == 1 and second.n_tests == 2 and second.accepted and second.last
    assert [(s.n, s.temperature) for s in large.calls[0]] == [(1, 0.0), (1, 0.0)]
    assert result.member == "large" and result.verified
    assert result.code == TASK.prompt + "    return a + b + OFFSET\n"
    assert result.generated_tokens == first.generated_tokens + second.generated_tokens
    assert [type(e) for e in events] == [
        StageStarted, Executing, Escalating, StageStarted, Executing, Finished
    ]
    started = [e for e in events if isinstance(e, StageStarted)]
    assert [(e.member, e.k, e.l, e.index, e.total) for e in started] == [
        ("small", 3, 2, 0, 2), ("large", 1, 2, 1, 2)
    ]
    escalating = next(e for e in events if isinstance(e, Escalating))
    assert (escalating.from_member, escalating.to_member, escalating.best_score) == (
        "small", "large", 6
    )
    assert escalating.threshold == pytest.approx(16.2)
    executing = [e for e in events if isinstance(e, Executing)]
    assert [(e.member, e.n_solutions, e.n_tests) for e in executing] == [
        ("small", 3, 6), ("large", 1, 2)
    ]
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.member == "large"
    assert finished.seconds == pytest.approx(result.seconds)


def test_k_zero_last_member_is_greedy_and_untested(plan: Plan, sandbox: InProcessSandbox) -> None:
    small = ScriptedBackend("small", [WRONG], GOOD_TESTS)
    large = ScriptedBackend("large", [RIGHT])  # no tests scripted: asking for one would fail
    result, events = run(plan, {"small": small, "large": large}, sandbox, "greedy_last")
    assert result.member == "large"
    (specs,) = large.calls
    assert len(specs) == 1 and isinstance(specs[0].stop, CodeStop)
    assert specs[0].n == 1 and specs[0].temperature == 0.0
    last = result.stages[-1]
    assert last.k == 0 and last.n_tests == 0 and last.accepted and last.last
    assert not result.verified and "without tests" in result.note
    assert result.code == TASK.prompt + "    return a + b + OFFSET\n"
    assert len(sandbox.calls) == 1  # only the small stage executed
    assert [type(e) for e in events] == [StageStarted, Executing, Escalating, StageStarted,
                                         Finished]


def test_no_valid_tests_escalates_even_at_theta_zero(sandbox: InProcessSandbox) -> None:
    plan = parse_plan(PLAN.replace("theta: 0.9", "theta: 0.0", 1), "p.yaml")
    small = ScriptedBackend("small", [RIGHT], NO_VALID_TESTS)
    large = ScriptedBackend("large", [RIGHT], GOOD_TESTS)
    result, events = run(plan, {"small": small, "large": large}, sandbox, "two")
    first = result.stages[0]
    assert first.n_tests == 0 and first.best_score == 0 and not first.accepted
    assert len(first.tests) == 3  # tests were generated, none was valid
    assert result.member == "large" and result.verified
    assert Executing not in [type(e) for e in events[:2]]  # nothing to execute for small
    assert len(sandbox.calls) == 1


def test_last_member_accepted_regardless(plan: Plan, sandbox: InProcessSandbox) -> None:
    small = ScriptedBackend("small", [WRONG, WRONG, RIGHT], GOOD_TESTS)
    result, events = run(plan, {"small": small}, sandbox, "alone")
    (stage,) = result.stages
    assert stage.last and stage.accepted
    assert stage.best == 2 and stage.best_score < stage.threshold
    assert result.code == TASK.prompt + "    return a + b + OFFSET\n"
    assert not result.verified and "below its threshold" in result.note
    assert Escalating not in [type(e) for e in events]


@pytest.mark.parametrize("theta", ["0.0", "0.3", "0.4", "0.5", "0.6", "1.0"])
def test_last_members_label_follows_the_exact_rule(theta: str, sandbox: InProcessSandbox) -> None:
    # Three right solutions; each of the 3 tests gives one passing and one
    # failing line: score 3 x 3 = 9 of a possible 3 x 6, so the label flips
    # exactly where 9 >= theta * 3 * 6, at theta = 0.5.
    plan = parse_plan(PLAN.replace("theta: 1.0", f"theta: {theta}"), "p.yaml")
    half = ["1, 2) == 3\nassert add(5, 5) == 99\n```"]
    small = ScriptedBackend("small", [RIGHT, RIGHT, RIGHT], half)
    result, _ = run(plan, {"small": small}, sandbox, "alone")
    (stage,) = result.stages
    assert (stage.best_score, stage.n_tests) == (9, 6)
    exact = bool(accepts(stage.best_score, 3, 6, Fraction(theta)))
    assert exact is (Fraction(theta) <= Fraction(1, 2))
    assert stage.meets_threshold is exact and stage.accepted
    assert result.verified is exact
    assert ("below its threshold" in result.note) is not exact


def test_last_member_without_valid_tests_returns_first_solution(
    plan: Plan, sandbox: InProcessSandbox
) -> None:
    small = ScriptedBackend("small", [WRONG, RIGHT], NO_VALID_TESTS)
    result, _ = run(plan, {"small": small}, sandbox, "alone")
    assert result.code == TASK.prompt + "    return a - b\n"
    assert not result.verified and "no valid test" in result.note


@pytest.mark.parametrize("unavailable", ["raises", "refuses", "missing"])
def test_sandbox_unavailable_gives_first_solution_unverified(
    plan: Plan, unavailable: str
) -> None:
    sandbox = None
    if unavailable != "missing":
        sandbox = InProcessSandbox(unavailable=unavailable == "raises",
                                   refuses=unavailable == "refuses")
    small = ScriptedBackend("small", [WRONG, RIGHT, RIGHT], GOOD_TESTS)
    large = ScriptedBackend("large", [RIGHT], GOOD_TESTS)
    result, events = run(plan, {"small": small, "large": large}, sandbox, "two")
    assert result.member == "small" and len(result.stages) == 1
    assert result.code == TASK.prompt + "    return a - b\n"  # the first solution
    assert not result.verified and "not tested" in result.note
    assert not result.stages[0].verified
    assert large.calls == []
    assert isinstance(events[-1], Finished)


def test_cancelled_before_start(plan: Plan, sandbox: InProcessSandbox) -> None:
    token = CancelToken()
    token.cancel("newer request")
    small = ScriptedBackend("small", [RIGHT], GOOD_TESTS)
    with pytest.raises(Cancelled, match="newer request"):
        run(plan, {"small": small, "large": small}, sandbox, "two", cancel=token)
    assert small.calls == []


def test_cancelled_during_generation(plan: Plan, sandbox: InProcessSandbox) -> None:
    token = CancelToken()
    small = ScriptedBackend("small", [RIGHT], GOOD_TESTS, on_sample=token.cancel)
    with pytest.raises(Cancelled):
        run(plan, {"small": small, "large": small}, sandbox, "two", cancel=token)
    assert sandbox.calls == []


def test_cancelled_between_stages(plan: Plan, sandbox: InProcessSandbox) -> None:
    token = CancelToken()
    small = ScriptedBackend("small", [WRONG], GOOD_TESTS)
    large = ScriptedBackend("large", [RIGHT], GOOD_TESTS)
    events: list[Event] = []

    def on_event(e: Event) -> None:
        events.append(e)
        if isinstance(e, Escalating):
            token.cancel()

    with pytest.raises(Cancelled):
        Cascade(plan, {"small": small, "large": large}, sandbox).run(  # type: ignore[dict-item]
            TASK, "two", cancel=token, on_event=on_event
        )
    assert large.calls == []
    assert not any(isinstance(e, Finished) for e in events)


def test_backends_from_a_callable_and_default_tier(plan: Plan, sandbox: InProcessSandbox) -> None:
    asked: list[str] = []
    backends = {"small": ScriptedBackend("small", [RIGHT], GOOD_TESTS)}

    def get(name: str) -> ScriptedBackend:
        asked.append(name)
        return backends[name]

    result = Cascade(plan, get, sandbox).run(TASK)  # type: ignore[arg-type]
    assert result.tier == "two" and result.member == "small" and asked == ["small"]


def test_method_from_a_file_through_the_cascade_and_back(sandbox: InProcessSandbox) -> None:
    # A method's tests build its class (`Rect(2, 3).area()`), and each candidate runs
    # put back in the class of the file context.
    from cascode.engine.context import body_edit, function_at

    source = (
        "from dataclasses import dataclass\n\n\n"
        "@dataclass\n"
        "class Rect:\n"
        "    w: float\n"
        "    h: float\n\n"
        "    def area(self) -> float:\n"
        '        """The area of the rectangle."""\n'
        "        ...\n"
    )
    fc = function_at(source, 9)
    assert fc is not None and fc.name == "area" and fc.is_stub
    plan = parse_plan(PLAN.replace("theta: 1.0", "theta: 0.5"), "p.yaml")
    small = ScriptedBackend(
        "small",
        ["    return self.w * self.h\n```", "    return self.w + self.h\n```"],
        ["2, 3).area() == 6\nassert Rect(1, 1).area() == 1\n"],
    )
    result = Cascade(plan, {"small": small}, sandbox).run(fc.task(), "alone")  # type: ignore[dict-item]
    assert small.calls[0][1].prefix == "```python\nassert Rect("
    stage = result.stages[0]
    assert stage.suite == ("assert Rect(2, 3).area() == 6", "assert Rect(1, 1).area() == 1") * 3
    assert stage.scores == (12, 0, 12)  # the product passes all 6 lines, the sum none
    assert stage.threshold == 9.0
    assert result.verified and result.code.endswith("return self.w * self.h\n")
    (start, _), (end, _), text = body_edit(fc, result.code)
    lines = source.splitlines(keepends=True)
    done = "".join(lines[:start]) + text + "".join(lines[end:])
    ns: dict[str, object] = {}
    exec(done, ns)
    assert eval("Rect(2, 5).area()", ns) == 10


def test_executable_context_runs_each_top_level_statement_on_its_own():
    from cascode.engine.cascade import executable_context

    ctx = "import os\nfrom mypkg.models import User  # project-local\n\nLIMIT = 3\n"
    out = executable_context(ctx)
    ns: dict = {}
    exec(out, ns)  # the missing project module does not stop the rest
    assert ns["LIMIT"] == 3 and "os" in ns and "User" not in ns
    for plain in ('"""Doc."""\nX = 1\nY = {"a": (1, -2.5)}\n', "def f(x, y=2):\n    return x\n"):
        assert executable_context(plain) == plain  # nothing that may raise: as written
    assert executable_context("def broken(:\n") == "def broken(:\n"  # not parsing: as is


# A user's module as it stands: what it does on import fails in the sandbox (a package
# this machine lacks, a settings file, an argparse exit, its main() run unguarded, a
# decorator naming what the failed import would have bound), none of it the answer's.
SIDE_EFFECTS_FILE = '''"""Prices of an order."""
import argparse
import json

import orders_db as db  # the project's own module: not in the sandbox

SETTINGS = json.load(open("/nonexistent/settings.json"))
ARGS = argparse.ArgumentParser().parse_args(["--no-such-flag"])
TAX = 0.25


@db.cached
def half(x: float) -> float:
    return x / 2


def main() -> None:
    raise RuntimeError("needs a database")


main()
'''

TOTAL = '''def total(price: float, quantity: int) -> float:
    return round(price * quantity * (1 + TAX), 2)
'''


def test_a_file_that_fails_on_import_still_runs_its_examples_in_the_real_sandbox():
    """Before, the first statement that raised failed every line of every candidate,
    the user's examples and the generated asserts alike: a right answer was reported as
    failing the user's example, and the cascade escalated to its last member."""
    from cascode.engine.cascade import executable_context
    from cascode.engine.sandbox import create_sandbox
    from cascode.engine.types import Verdict

    from ..conftest import need_sandbox

    out = executable_context(SIDE_EFFECTS_FILE)
    assert out.startswith('"""Prices of an order."""\n')  # the docstring stays first
    lines = ["assert total(2.0, 3) == 7.5", "assert total(1.0, 0) == 0.0",
             "assert total(1.0, 1) == 1.0", "assert half is not None",
             "assert SETTINGS == {}"]
    # A statement that hangs is ended by the sandbox's own timer, not swallowed.
    hangs = "TAX = 0.25\nwhile True:\n    pass\n"
    with create_sandbox() as sandbox:
        need_sandbox(sandbox)
        matrix = sandbox.run_matrix([TOTAL], lines, context=out)
        raw = sandbox.run_matrix([TOTAL], lines[:1], context=SIDE_EFFECTS_FILE)
        hung = sandbox.run_matrix([TOTAL], lines[:1], context=executable_context(hangs))
    # `half`'s decorator names db, so its def failed too; SETTINGS was never bound.
    assert matrix.verdicts == ((Verdict.PASSED, Verdict.PASSED, Verdict.FAILED,
                                Verdict.FAILED, Verdict.FAILED),)
    assert raw.verdicts == ((Verdict.FAILED,),)  # as the file stands, nothing runs
    assert hung.verdicts[0][0] != Verdict.PASSED


FUTURE_FILE = '''"""Sizes, as humans read them."""
from __future__ import annotations

from .units import Unit  # the project's own module: not importable in the sandbox

SUFFIXES: dict[int, str] = {1: "st", 2: "nd", 3: "rd"}
'''

ORDINAL = '''def ordinal(value: int | Unit) -> str:
    if 10 <= value % 100 <= 20:
        return f"{value}th"
    return f"{value}{SUFFIXES.get(value % 10, 'th')}"
'''


def test_a_future_import_stays_first_and_the_file_runs_in_the_real_sandbox():
    """`from __future__ import annotations` must stay the module's first statement:
    guarded in a try, it is a SyntaxError that failed every line of every candidate,
    examples and generated asserts alike, so that no answer in such a file was ever
    verified (a fifth to a half of the real-code problems)."""
    from cascode.engine.cascade import executable_context
    from cascode.engine.sandbox import create_sandbox
    from cascode.engine.types import Verdict

    from ..conftest import need_sandbox

    out = executable_context(FUTURE_FILE)
    assert out.splitlines()[1] == "from __future__ import annotations"
    ns: dict = {"__name__": "__main__"}
    exec(out + ORDINAL, ns)  # the annotation names a module that is not there
    assert ns["ordinal"](11) == "11th" and ns["ordinal"](22) == "22nd"
    lines = ["assert ordinal(1) == '1st'", "assert ordinal(111) == '111th'",
             "assert ordinal(2) == '2rd'"]
    with create_sandbox() as sandbox:
        need_sandbox(sandbox)
        matrix = sandbox.run_matrix([ORDINAL], lines, context=out)
    assert matrix.verdicts == ((Verdict.PASSED, Verdict.PASSED, Verdict.FAILED),)


@pytest.mark.parametrize("template", [None, 2, 3, 4, 5])
def test_the_cascade_sends_the_template_the_plan_was_calibrated_with(
        sandbox: InProcessSandbox, template: int | None) -> None:
    calibrated = PLAN if template is None else PLAN + f"calibration: {{template: {template}}}\n"
    plan = parse_plan(calibrated, "calibrated.yaml")
    small = ScriptedBackend("small", [RIGHT], GOOD_TESTS)
    large = ScriptedBackend("large", [RIGHT], GOOD_TESTS)
    result, _ = run(plan, {"small": small, "large": large}, sandbox, "two")
    solution, test = small.calls[0]
    # An uncalibrated plan gets the default template, 2.
    assert solution == prompts.solution_spec(TASK, 3, sampled=True, template=template or 2)
    assert test == prompts.unit_test_spec(TASK, 3, 2, sampled=True, template=template or 2)
    # Every template reads the same scripted body and asserts into the same answer.
    assert result.member == "small" and result.code == TASK.prompt + "    return a + b + OFFSET\n"
    assert result.stages[0].suite[:2] == ("assert add(1, 2) == 3", "assert add(2, 2) == 4")


# docs/method.md 8.2: a candidate that fails a static check ranks below every one that
# passes, never meets a rule, and its provenance names the check.
UNSOUND = "    return a + b + OFFSETS\n```"  # OFFSETS is defined nowhere


def test_a_candidate_with_a_bad_name_ranks_below_the_sound_ones(
        plan: Plan, sandbox: InProcessSandbox) -> None:
    # The unsound candidate comes first and would pass as many tests as the right one
    # did it run (the sandbox raises NameError, but here its rank is decided first).
    small = ScriptedBackend("small", [UNSOUND, RIGHT, RIGHT], GOOD_TESTS)
    result, _ = run(plan, {"small": small}, sandbox, "alone")
    (stage,) = result.stages
    assert stage.findings[0] and stage.findings[0][0].kind == "undefined-name"
    assert "OFFSETS" in stage.findings[0][0].message
    assert stage.findings[1:] == ((), ())
    assert stage.best == 1 and result.code.endswith("return a + b + OFFSET\n")


def test_an_unsound_answer_is_never_verified_and_says_why(sandbox: InProcessSandbox) -> None:
    # theta 0: any best meets the section-2 rule, unless it fails a static check.
    plan = parse_plan(PLAN.replace("theta: 1.0", "theta: 0.0"), "test-plan.yaml")
    small = ScriptedBackend("small", [UNSOUND], ["1, 2) == 3\n```"])
    result, _ = run(plan, {"small": small}, sandbox, "alone")
    assert not result.verified and not result.stages[0].meets_threshold
    assert result.note == ("small's answer uses OFFSETS, defined nowhere in the file, its "
                           "imports or the builtins")
    from cascode.engine.proof import proof

    assert proof(result).startswith("unverified: ") and "OFFSETS" in proof(result)


def test_without_examples_a_sound_earlier_answer_beats_an_unsound_last_one(
        plan: Plan, sandbox: InProcessSandbox) -> None:
    # small's right answer scores below its threshold (escalates); large's greedy
    # answer fails a static check: the pool keeps small's, unverified.
    small = ScriptedBackend("small", [WRONG, RIGHT, WRONG], GOOD_TESTS)
    large = ScriptedBackend("large", [UNSOUND], GOOD_TESTS)
    result, _ = run(plan, {"small": small, "large": large}, sandbox, "greedy_last")
    assert [s.member for s in result.stages] == ["small", "large"]
    assert result.member == "small" and result.code.endswith("return a + b + OFFSET\n")
    assert not result.verified and "failed static checks" in result.note


def test_without_a_sandbox_the_answer_is_the_first_sound_candidate(plan: Plan) -> None:
    small = ScriptedBackend("small", [UNSOUND, WRONG, RIGHT], GOOD_TESTS)
    result, _ = run(plan, {"small": small}, None, "alone")
    assert not result.verified and "not tested" in result.note
    assert result.code == TASK.prompt + "    return a - b\n"  # the second: the first is unsound
