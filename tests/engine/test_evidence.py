"""The label's three states (engine/evidence.py, docs/method.md 8.3): what an answer's
evidence is, what the plan's measured rates let it claim, and how the rates are read,
written and refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from engine_fakes import InProcessSandbox, ScriptedBackend

from cascode.engine import evidence as ev
from cascode.engine.cascade import Cascade
from cascode.engine.errors import PlanError
from cascode.engine.plans import load_plan, parse_plan
from cascode.engine.types import Task

ROOT = Path(__file__).resolve().parents[2]
PLAN = """\
family:
  - {name: small, backend: llama_cpp, model: /m/small.gguf}
tiers:
  tested:
    theta: 0.5
    stages: {small: {k: 1, l: 2}}
  greedy:
    theta: 0.5
    stages: {small: {k: 0}}
"""
WITH_EXAMPLE = Task(
    prompt='def add(a, b):\n    """Add a and b.\n\n    >>> add(1, 2)\n    3\n    """\n',
    entry_point="add")
NO_EXAMPLE = Task(prompt='def add(a, b):\n    """Add a and b."""\n', entry_point="add")
RIGHT = "    return a + b\n```"
WRONG = "    return a - b\n```"
TESTS = ["1, 2) == 3\nassert add(2, 2) == 4\n```"]


def _answer(task: Task, tier: str, solution: str = RIGHT):  # type: ignore[no-untyped-def]
    plan = parse_plan(PLAN, "evidence-plan.yaml")
    small = ScriptedBackend("small", [solution], TESTS)
    return Cascade(plan, {"small": small}, InProcessSandbox()).run(task, tier)


def _rates(**by_kind: tuple[int, int]) -> ev.Evidence:
    return ev.Evidence("realcode validation split, 41 problems",
                       {"tested": {k.replace("_", " "): ev.Rate(*v) for k, v in by_kind.items()}})


def test_the_kind_of_evidence_live_and_elementwise_agree() -> None:
    cases = [(True, False), (True, True), (False, True), (False, False)]
    named = [ev.evidence_kind(h, t) for h, t in cases]
    assert named == [ev.EXAMPLES, ev.EXAMPLES_AND_TESTS, ev.OWN_TESTS, ev.OWN_TESTS]
    h = np.array([int(c[0]) for c in cases])
    t = np.array([int(c[1]) for c in cases])
    assert [ev.KINDS[i] for i in ev.evidence_kind(h, t)] == named
    # A live answer: examples and its stage's own tests.
    result = _answer(WITH_EXAMPLE, "tested")
    assert result.verified and ev.result_kind(result) == ev.EXAMPLES_AND_TESTS
    assert ev.result_kind(_answer(NO_EXAMPLE, "tested")) == ev.OWN_TESTS
    assert ev.result_kind(_answer(WITH_EXAMPLE, "tested", WRONG)) is None


def test_verified_only_with_evidence_measured_right_nine_times_in_ten() -> None:
    result = _answer(NO_EXAMPLE, "tested")
    assert result.verified  # its stage's rule was met ...
    # ... which claims nothing until it is measured.
    assert ev.label(result, None).state == "likely"
    assert "not measured" in ev.label(result, None).text
    low = ev.label(result, _rates(own_tests_only=(4, 13)))
    assert low.state == "likely" and low.rate == ev.Rate(4, 13)
    assert low.text == ("likely: answers resting on own tests only were right 31% of the "
                        "time (4 of 13, realcode validation split, 41 problems)")
    few = ev.label(result, _rates(own_tests_only=(5, 5)))
    assert few.state == "likely" and "too few to verify" in few.text
    high = ev.label(result, _rates(own_tests_only=(27, 30)))
    assert high.state == "verified" and high.text.startswith(
        "verified: answers resting on own tests only were right 90% of the time (27 of 30")
    # Another kind's rate, or another tier's, says nothing about this answer.
    assert ev.label(result, _rates(examples=(30, 30))).state == "likely"
    failed = _answer(WITH_EXAMPLE, "tested", WRONG)
    assert ev.label(failed, _rates(own_tests_only=(30, 30))).state == "unverified"
    assert high.to_json() == {
        "state": "verified", "evidence": "own tests only", "right": 27, "of": 30,
        "precision": 0.9, "percent": 90, "measuredOn": "realcode validation split, 41 problems",
        "text": high.text}


def _signed(plan_path: Path, rates: ev.Evidence) -> ev.Evidence:
    plan = load_plan(plan_path)
    return ev.Evidence(rates.measured_on, rates.tiers,
                       {t: plan.tier_signature(t) for t in rates.tiers})


def test_rates_are_read_next_to_the_plan_and_bad_ones_name_the_file(tmp_path: Path,
                                                                    caplog) -> None:
    plan_path = tmp_path / "team.yaml"
    plan_path.write_text(PLAN)
    assert load_plan(plan_path).evidence is None
    rates = _signed(plan_path, _rates(own_tests_only=(4, 13)))
    written = ev.write_evidence(plan_path, rates)
    assert written == tmp_path / "team.evidence.json"
    assert load_plan(plan_path).evidence == rates
    # Rates measured for other stages are not the tier's: left out, with a warning.
    plan_path.write_text(PLAN.replace("theta: 0.5\n    stages: {small: {k: 1",
                                      "theta: 0.7\n    stages: {small: {k: 1"))
    with caplog.at_level("WARNING"):
        assert load_plan(plan_path).evidence == ev.Evidence(rates.measured_on, {},
                                                            rates.signatures)
    assert "the rates of tier 'tested' were measured for other stages" in caplog.text
    plan_path.write_text(PLAN)
    bad = {
        "{not json": "cannot read",
        json.dumps({"tiers": {}}): "measured_on",
        json.dumps({"measured_on": "x", "tiers": {"tested": {"guesses": {"right": 1, "of": 2}}}}):
            "tiers.tested.guesses: unknown evidence",
        json.dumps({"measured_on": "x", "tiers": {"tested": {"examples": {"right": 3, "of": 2}}}}):
            "tiers.tested.examples: expected {right: n, of: m}",
    }
    for text, message in bad.items():
        written.write_text(text)
        with pytest.raises(PlanError) as e:
            ev.load_evidence(plan_path)
        assert str(e.value).startswith(str(written)) and message in str(e.value)
        # The plan itself still loads: its labels claim less, and the log says why.
        caplog.clear()
        with caplog.at_level("WARNING"):
            assert load_plan(plan_path).evidence is None
        assert str(written) in caplog.text and message in caplog.text


def test_evaluate_writes_the_rates_and_never_from_the_test_split(tmp_path, monkeypatch,
                                                                 capsys) -> None:
    from cascode import cli

    monkeypatch.chdir(ROOT)
    plan = tmp_path / "default.yaml"
    shutil.copy(ROOT / "plans" / "default.yaml", plan)
    base = ["evaluate", str(plan), "--offline", "--no-progress", "--out", str(tmp_path)]
    # The test split, alone or within all.
    for split in (["realcode:test"], ["realcode", "--split", "all"]):
        assert cli.main([*base, "--dataset", *split, "--samples", "3", "--cache",
                         "benchmarks/results/realcode", "--write-evidence"]) == 1
        assert "the test split measures the labels" in capsys.readouterr().err
    assert not (tmp_path / "default.evidence.json").exists()
    assert cli.main([*base, "--dataset", "everyday", "--cache", "benchmarks/results/humaneval",
                     "--write-evidence"]) == 3
    rates = load_plan(plan).evidence
    assert rates is not None and rates.measured_on == "everyday all split, 35 problems"
    assert set(rates.tiers) == set(load_plan(plan).tiers)  # every tier's signature matches
    # The report's table of what verified answers rest on, as rates.
    report = (tmp_path / "default-everyday-all.md").read_text()
    balanced = rates.tiers["balanced"]
    assert sum(r.of for r in balanced.values()) > 0
    assert set(balanced) == set(ev.KINDS) and report
