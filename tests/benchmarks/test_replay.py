"""The simulator against the live cascade: cached generations replayed through
`engine.cascade.Cascade` take the same decisions as the offline simulation."""

from __future__ import annotations

import pytest

from cascode.benchmarks import calibrate as cal
from cascode.benchmarks.replay import CachedBackend, replay, tier_option
from cascode.benchmarks.synthetic import ArithmeticSandbox, synthetic_dataset
from cascode.engine.plans import parse_plan
from cascode.engine.prompts import stage_specs

from .conftest import Factory, family_plan

# Every (k, l) on each member, escalations at several thetas, a greedy last member.
TIERS = """\
  a: {theta: 0.5, stages: {small: {k: 1, l: 2}, medium: {k: 3, l: 4}, large: {k: 0, l: 0}}}
  b: {theta: 0.2, stages: {small: {k: 3, l: 2}, large: {k: 1, l: 4}}}
  c: {theta: 0.6, stages: {small: {k: 5, l: 4}, medium: {k: 10, l: 2}, large: {k: 3, l: 2}}}
  d: {theta: 1.0, stages: {small: {k: 10, l: 4}, large: {k: 5, l: 4}}}
  e: {theta: [0.3, 0.8], stages: {small: {k: 5, l: 2}, medium: {k: 1, l: 2}, large: {k: 10, l: 4}}}
  f: {theta: 0.7, stages: {medium: {k: 0, l: 0}}}
"""


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    plan = parse_plan(family_plan(["small", "medium", "large"], TIERS))
    settings = cal.Settings(out=tmp_path_factory.mktemp("replay"), progress=False)
    return cal.load_family_data(plan, synthetic_dataset(24), settings,
                                backend_factory=Factory(), sandbox_factory=ArithmeticSandbox)


def test_live_cascade_takes_the_simulators_decisions(family):
    sim = family.simulator(10)
    assert replay(family.plan, sim) == []
    # The check is not vacuous: tiers escalate, not always, and every member answers.
    mixed, answering = 0, set()
    for tier in family.plan.tiers:
        run = sim.run_plan(*tier_option(family.plan, tier))
        answered = set(run.answered_by.tolist())
        mixed += len(answered) > 1
        answering |= answered
    assert mixed >= 3 and answering == {0, 1, 2}


def test_calibrated_tiers_replay_identically(family, tmp_path):
    result = cal.search(family, cal.Settings(out=tmp_path, progress=False, max_tiers=5))
    from cascode.benchmarks.planfile import write_plan_file

    plan = parse_plan(write_plan_file(result))
    assert replay(plan, result.sim) == []


def test_cached_backend_cuts_tests_by_the_live_stop_rule(family):
    data = family.data[0][3]
    backend = CachedBackend("small", family.data[0])
    solutions, tests = backend.sample(stage_specs(data.problem.task, 3, 2))
    assert [g.text for g in solutions] == [g.text for g in data.samples.solutions[:3]]
    for cut, full in zip(tests, data.samples.tests[:3], strict=True):
        assert full.text.startswith(cut.text) and len(cut.text) < len(full.text)
        assert cut.text.count("\n") == 2 and cut.generated_tokens < full.generated_tokens
