"""The simulator against the live cascade: cached generations replayed through
`engine.cascade.Cascade` take the same decisions as the offline simulation."""

from __future__ import annotations

import dataclasses

import numpy as np
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


# With the user's examples (docs/method.md 7): greedy stages that escalate on them, the
# pool, a tier that leaves them out.
EXAMPLE_TIERS = """\
  g: {theta: 1.0, stages: {small: {k: 0, l: 0}, large: {k: 0, l: 0}}}
  h: {theta: 0.5, stages: {small: {k: 0, l: 0}, medium: {k: 3, l: 2}, large: {k: 0, l: 0}}}
  i: {theta: 0.8, stages: {small: {k: 3, l: 2}, large: {k: 5, l: 4}}}
  j: {theta: 0.5, examples: false, stages: {small: {k: 3, l: 2}, large: {k: 0, l: 0}}}
  k: {theta: 0.9, stages: {medium: {k: 5, l: 2}}}
  m:
    theta: 0.7
    stages: [{member: small, k: 0}, {member: large, k: 0}, {member: large, k: 3, l: 2}]
"""


@pytest.fixture(scope="module")
def family_e(tmp_path_factory):
    plan = parse_plan(family_plan(["small", "medium", "large"], EXAMPLE_TIERS))
    settings = cal.Settings(out=tmp_path_factory.mktemp("replay-e"), progress=False)
    # A file context, as an editor sends it: in the prompt, and run (imports guarded)
    # before every solution, live and in calibration alike.
    base = synthetic_dataset(30, examples=True)
    context = "import math\nfrom fractions import Fraction\n\nSCALE = 1\n"
    dataset = dataclasses.replace(base, problems=tuple(
        dataclasses.replace(p, task=dataclasses.replace(p.task, context=context))
        for p in base.problems))
    return cal.load_family_data(plan, dataset, settings,
                                backend_factory=Factory(), sandbox_factory=ArithmeticSandbox)


def test_live_cascade_and_simulator_agree_with_examples(family_e):
    sim = family_e.simulator(10, repeat_last=True)
    with_examples = [bool(d.examples) for d in sim.data[0]]
    assert sum(with_examples) == 20  # two problems in three
    assert all(d.problem.task.context.startswith("import math") for d in sim.data[0])
    assert replay(family_e.plan, sim) == []
    # Not vacuous: the pool answers from an earlier stage than the last one run.
    from cascode.benchmarks.replay import CachedSandbox
    from cascode.engine.cascade import Cascade

    backends = {name: CachedBackend(name, sim.data[m]) for m, name in enumerate(sim.members)}
    cascade = Cascade(family_e.plan, backends, CachedSandbox(sim.data))
    earlier = [(tier, p) for tier in family_e.plan.tiers for p in range(sim.n_problems)
               if (r := cascade.run(sim.data[0][p].problem.task, tier)).answer_stage
               not in (-1, len(r.stages) - 1)]
    assert earlier, "the pool never kept an earlier stage's candidate"
    options, thetas = tier_option(family_e.plan, "g", sim.slots)
    run = sim.run_plan(options, thetas, examples=True)
    # Without examples the greedy small stage is skipped: large answers everything.
    assert set(run.answered_by[~np.array(with_examples)].tolist()) == {2}


def test_grid_with_examples_agrees_with_plan_runs(family_e):
    from cascode.benchmarks.search import split
    from cascode.benchmarks.simulate import all_plans

    sim = family_e.simulator(10, repeat_last=True)
    masks = split(family_e.greedy_passed()).masks()
    grid = sim.grid(masks, examples=True)
    plans = list(all_plans(3, 10, examples=True, repeat_last=True))
    assert len(grid) == 11 * len(plans) and set(grid.plans) == set(plans)
    # Non-last greedy stages, and the last member's second, sampled stage.
    assert len(list(all_plans(3, 10, examples=True))) > len(list(all_plans(3, 10)))
    assert any(p[3][0] > 0 and p[2] == (0, 0) for p in plans)
    assert not any(p[3][0] >= 0 and p[2] != (0, 0) for p in plans)
    rng = np.random.default_rng(1)
    for row in rng.choice(len(grid), 80, replace=False):
        run = sim.run_plan(grid.plans[row], grid.thetas[row], examples=True)
        np.testing.assert_array_equal(run.sums(masks), grid.sums[row])
    per = sim.grid(masks, per_boundary=True, examples=True)
    for row in rng.choice(len(per), 80, replace=False):
        run = sim.run_plan(per.plans[row], per.thetas[row], examples=True)
        np.testing.assert_array_equal(run.sums(masks), per.sums[row])


def test_calibrated_tiers_with_examples_replay_identically(family_e, tmp_path):
    from cascode.benchmarks.planfile import write_plan_file

    result = cal.search(family_e, cal.Settings(out=tmp_path, progress=False, max_tiers=5))
    assert set(result.grid.groups()) == {False, True}
    assert result.sim.slots == (0, 1, 2, 2)
    plan = parse_plan(write_plan_file(result))
    assert replay(plan, result.sim) == []
