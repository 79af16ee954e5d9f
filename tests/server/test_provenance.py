"""Provenance: what the client is told about an answer."""

from __future__ import annotations

from dataclasses import replace

from cascode.engine.types import (
    Escalating,
    Example,
    Executing,
    Finished,
    Result,
    StageStarted,
    StageTrace,
)
from cascode.server.provenance import event_message, markdown, provenance


def _stage(member: str, *, k: int, l: int,  # noqa: E741 - the method's name
           suite: tuple[str, ...], passed: tuple[bool, ...],
           accepted: bool, last: bool, verified: bool = True) -> StageTrace:
    return StageTrace(
        member=member, k=k, l=l, solutions=("def f(): return 1\n",) * max(k, 1), tests=(),
        suite=suite, pass_matrix=(passed,) * max(k, 1) if verified and suite else (),
        scores=(sum(passed),) * max(k, 1), best=0, best_score=sum(passed),
        threshold=0.9 * max(k, 1) * len(suite), theta=0.9, accepted=accepted, last=last,
        prompt_tokens=30, generated_tokens=20, prompt_seconds=0.5, decode_seconds=1.0,
        sandbox_seconds=0.25, verified=verified)


def test_a_verified_escalated_answer():
    small = _stage("small", k=1, l=2, suite=("assert f() == 2", "assert f() == 1"),
                   passed=(False, True), accepted=False, last=False)
    large = _stage("large", k=1, l=2, suite=("assert f() == 1",), passed=(True,),
                   accepted=True, last=True)
    result = Result("def f(): return 1\n", "large", "balanced", (small, large), verified=True)
    prov = provenance(result, answer_id="a1", uri="file:///x.py", function="f")
    assert prov["member"] == "large" and prov["tier"] == "balanced"
    assert prov["asserts"] == ["assert f() == 1"]
    assert (prov["score"], prov["threshold"]) == (1, 0.9)
    assert prov["tokens"] == 40 and prov["seconds"] == 3.5
    assert [s["member"] for s in prov["stages"]] == ["small", "large"]
    assert prov["proof"] == "1 of 1 generated asserts" and prov["examples"] == []
    text = markdown(prov)
    assert text.splitlines()[0] == "**1 of 1 generated asserts**"
    assert "`large`" in text and "assert f() == 1" in text and "small → large" in text
    assert "Unverified" not in text


def test_an_unverified_answer_says_why():
    stage = _stage("small", k=1, l=2, suite=("assert f() == 1",), passed=(True,),
                   accepted=False, last=False, verified=False)
    result = Result("def f(): return 1\n", "small", "fast", (stage,), verified=False,
                    note="execution unavailable: the answer was not tested")
    prov = provenance(result, answer_id="a2", uri="file:///x.py", function="f", cached=True)
    assert prov["verified"] is False and prov["asserts"] == []
    assert prov["proof"] == "unverified: execution unavailable: the answer was not tested"
    text = markdown(prov)
    assert text.startswith("**Unverified: execution unavailable") and "from cache" in text


EXAMPLES = (
    Example("assert f() == 1\n", "assert f() == 1"),
    Example("assert f() > 0\n", "assert f() > 0"),
    Example("from m import f\nassert f() != 2\n", "assert f() != 2", "tests/test_m.py"),
)


def test_the_examples_prove_an_answer_and_are_listed():
    stage = replace(
        _stage("small", k=1, l=2, suite=("assert f() == 1",), passed=(True,),
               accepted=True, last=False),
        example_matrix=((True, True, True),), n_examples=3)
    result = Result("def f(): return 1\n", "small", "fast", (stage,), verified=True,
                    examples=EXAMPLES, answer_stage=0)
    prov = provenance(result, answer_id="a3", uri="file:///x.py", function="f")
    assert prov["proof"] == (
        "passed your 2 examples and 1 from tests/test_m.py and 1 of 1 generated asserts")
    assert prov["examples"] == [
        {"text": "assert f() == 1", "origin": "docstring", "passed": True},
        {"text": "assert f() > 0", "origin": "docstring", "passed": True},
        {"text": "assert f() != 2", "origin": "tests/test_m.py", "passed": True},
    ]
    text = markdown(prov)
    assert text.splitlines()[0] == (
        "**Passed your 2 examples and 1 from tests/test_m.py and 1 of 1 generated asserts**")
    assert "Your examples:" in text and "Generated assert passed:" in text
    assert "assert f() != 2  # tests/test_m.py" in text and "failed" not in text


def test_the_answering_stage_gives_the_examples_verdicts():
    # The pool picked the first stage's candidate: its verdicts are the ones shown.
    first = replace(
        _stage("small", k=1, l=2, suite=("assert f() == 1",), passed=(True,),
               accepted=False, last=False),
        example_matrix=((True, False, True),), n_examples=3)
    last = replace(
        _stage("large", k=0, l=0, suite=(), passed=(), accepted=True, last=True),
        example_matrix=((False, False, False),), n_examples=3)
    result = Result("def f(): return 1\n", "small", "balanced", (first, last), verified=False,
                    note="small's answer failed 1 of 3 example line(s)",
                    examples=EXAMPLES, answer_stage=0)
    prov = provenance(result, answer_id="a4", uri="file:///x.py", function="f")
    assert [e["passed"] for e in prov["examples"]] == [True, False, True]
    assert prov["proof"] == "unverified: small's answer failed 1 of 3 example line(s)"
    text = markdown(prov)
    assert "assert f() > 0  # failed" in text
    assert "assert f() != 2  # tests/test_m.py" in text
    # A stage that never ran the examples: none passed, none is marked.
    unrun = replace(result, stages=(replace(first, example_matrix=()),))
    prov = provenance(unrun, answer_id="a5", uri="file:///x.py", function="f")
    assert [e["passed"] for e in prov["examples"]] == [False, False, False]
    assert "# failed" not in markdown(prov)


def test_progress_messages():
    assert event_message(StageStarted("qwen-0.5b", 3, 2, 0, 2)) == "qwen-0.5b: 3 solutions, 3 tests"
    assert event_message(StageStarted("qwen-1.5b", 0, 0, 1, 2)) == "qwen-1.5b: 1 solution, no tests"
    assert event_message(Executing("qwen-0.5b", 3, 4)) == "running 12 asserts"
    assert event_message(Escalating("qwen-0.5b", "qwen-1.5b", 0, 9.0)) == "escalating to qwen-1.5b"
    assert event_message(Finished("qwen-0.5b", 1.0)) is None


def test_the_label_states_the_measured_rate_of_the_answers_evidence():
    from cascode.engine.evidence import Evidence, Rate

    stage = _stage("large", k=1, l=2, suite=("assert f() == 1",), passed=(True,),
                   accepted=True, last=True)
    result = Result("def f(): return 1\n", "large", "balanced", (stage,), verified=True)
    measured = Evidence("realcode validation split, 41 problems",
                        {"balanced": {"own tests only": Rate(4, 13)}})
    prov = provenance(result, answer_id="a3", uri="file:///x.py", function="f",
                      evidence=measured)
    assert prov["verified"] is True  # the stage's rule was met ...
    assert prov["label"]["state"] == "likely"  # ... on evidence right 31% of the time
    assert (prov["label"]["right"], prov["label"]["of"]) == (4, 13)
    text = markdown(prov)
    assert text.splitlines()[2] == (
        "Likely: answers resting on own tests only were right 31% of the time (4 of 13, "
        "realcode validation split, 41 problems).")
    unmeasured = provenance(result, answer_id="a4", uri="file:///x.py", function="f")
    assert unmeasured["label"]["state"] == "likely" and unmeasured["label"]["of"] is None
    failed = provenance(replace(result, verified=False, note="scored 0 below 0.9"),
                        answer_id="a5", uri="file:///x.py", function="f", evidence=measured)
    assert failed["label"]["state"] == "unverified"
    assert "Likely" not in markdown(failed)


def test_an_answer_from_a_cheaper_tier_says_why():
    large = _stage("large", k=1, l=2, suite=("assert f() == 1",), passed=(True,),
                   accepted=True, last=True)
    why = "server busy: large 3 running, 2 waiting; fast tier (about 9 s) instead of balanced"
    result = Result("def f(): return 1\n", "large", "fast", (large,), verified=True, load=why)
    prov = provenance(result, answer_id="a1", uri="file:///x.py", function="f")
    assert prov["tier"] == "fast" and prov["load"] == why
    assert "_Server busy: large 3 running, 2 waiting; fast tier" in markdown(prov)
    plain = provenance(replace(result, load=""), answer_id="a2", uri="file:///x.py",
                       function="f")
    assert plain["load"] is None and "busy" not in markdown(plain)
