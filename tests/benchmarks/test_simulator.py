"""The offline simulator, the Pareto search and the savings metric."""

from __future__ import annotations

import numpy as np
import pytest

from cascode.benchmarks import calibrate as cal
from cascode.benchmarks.search import (
    MAX_DRAWS,
    VAL,
    pareto,
    saving_vs_front,
    saving_vs_random,
    split,
)
from cascode.benchmarks.simulate import METRICS, all_plans, member_options
from cascode.benchmarks.synthetic import ArithmeticSandbox, synthetic_dataset
from cascode.engine.plans import parse_plan

from .conftest import Factory, family_plan


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    plan = parse_plan(family_plan(["small", "medium", "large"]))
    settings = cal.Settings(out=out, progress=False)
    return cal.load_family_data(plan, synthetic_dataset(30), settings,
                                backend_factory=Factory(), sandbox_factory=ArithmeticSandbox)


def test_options_follow_method_section_1():
    assert member_options(10) == [(-1, 0), (0, 0), (1, 2), (1, 4), (3, 2), (3, 4), (5, 2),
                                  (5, 4), (10, 2), (10, 4)]
    assert member_options(3) == [(-1, 0), (0, 0), (1, 2), (1, 4), (3, 2), (3, 4)]  # k > N skipped


def test_grid_has_every_valid_plan_and_agrees_with_plan_runs(family):
    sim = family.simulator(10)
    masks = split(family.greedy_passed()).masks()
    grid = sim.grid(masks)
    plans = list(all_plans(3, 10))
    assert len(grid) == 11 * len(plans)
    assert set(grid.plans) == set(plans)
    assert grid.sums.dtype == np.int64 and grid.sizes == tuple(masks.sum(axis=0))
    rng = np.random.default_rng(0)
    for row in rng.choice(len(grid), 60, replace=False):
        run = sim.run_plan(grid.plans[row], grid.thetas[row])
        np.testing.assert_array_equal(run.sums(masks), grid.sums[row])  # exact, not close
        per_problem = np.stack([run.passed, run.seconds, run.tokens, run.token_cost])
        weights = masks / masks.sum(axis=0)
        np.testing.assert_allclose(per_problem @ weights, grid.metrics[row], rtol=1e-12)


def test_per_boundary_grid_contains_the_global_one(family):
    sim = family.simulator(10)
    masks = split(family.greedy_passed()).masks()
    glob = sim.grid(masks)
    per = sim.grid(masks, per_boundary=True)
    index = {(p, t): i for i, (p, t) in enumerate(zip(per.plans, per.thetas, strict=True))}
    checked = 0
    for row in range(0, len(glob), 7):
        plan, (theta,) = glob.plans[row], glob.thetas[row]
        active = sum(k >= 0 for k, _ in plan)
        if active > 1:
            other = index[(plan, (theta,) * (active - 1))]
            np.testing.assert_array_equal(per.sums[other], glob.sums[row])
            checked += 1
    assert checked > 50


def test_stricter_theta_escalates_more(family):
    sim = family.simulator(10)
    plan = ((3, 2), (-1, 0), (1, 2))
    low, high = sim.run_plan(plan, (0,)), sim.run_plan(plan, (10,))
    assert (high.answered_by == 2).sum() > (low.answered_by == 2).sum()
    # theta = 0 still escalates when the suite is empty (docs/method.md 2.5).
    assert (high.seconds >= low.seconds).all()


def test_pareto_keeps_non_dominated_points_and_breaks_ties():
    cost = np.array([1.0, 2.0, 2.0, 3.0, 1.0, 4.0])
    acc = np.array([0.5, 0.6, 0.6, 0.55, 0.5, 0.9])
    tokens = np.array([10, 20, 15, 5, 10, 50])
    front = pareto(cost, acc, tokens, np.arange(6))
    assert front == [0, 2, 5]  # 4 ties with 0 (later in grid order), 1 with 2 (more tokens)


def test_savings_against_random_and_front():
    cost = np.array([1.0, 3.0, 2.0, 6.0, 10.0])
    acc = np.array([0.50, 0.70, 0.50, 0.705, 0.80])
    singles = np.array([2, 3, 4])
    s = saving_vs_random([0, 1], cost, acc, singles)
    assert s.per_point == (pytest.approx(0.5), pytest.approx(0.5))
    strict = saving_vs_front([0, 1, 4], cost, acc, [2, 3, 4])
    assert strict.per_point[0] == pytest.approx(0.5)
    assert strict.per_point[1] == pytest.approx(1 - 3 / np.interp(0.70, [0.5, 0.705], [2, 6]))
    assert strict.per_point[2] == pytest.approx(0.0)
    far = saving_vs_random([0], np.array([1.0, 2.0]), np.array([0.1, 0.5]), np.array([1]))
    assert far.mean is None and far.skipped == 1


def test_split_redraws_until_greedy_accuracy_matches():
    rng = np.random.default_rng(1)
    greedy = [rng.random(100) < 0.4, rng.random(100) < 0.7]
    s = split(greedy)
    assert s.accepted and s.validation.sum() == 30
    for g in greedy:
        assert abs(g[s.validation].mean() - g[s.test].mean()) <= 0.05 + 1e-12
    tiny = split([np.array([True, False, True, False, False])])
    assert not tiny.accepted and tiny.draws == MAX_DRAWS and "kept the closest" in tiny.describe()


def test_theta_choice_reports_its_reason(family):
    result = cal.search(family, cal.Settings(out=family.plan and cal.Path("."), progress=False))
    assert result.choice.theta in result.choice.savings
    assert "theta" in result.choice.reason
    acc = result.grid.metric("pass_at_1", VAL)
    front = result.choice.front
    assert all(acc[a] < acc[b] for a, b in zip(front, front[1:], strict=False))
    assert len(result.tiers) <= 4 and result.default in result.tiers
    assert result.tiers == sorted(result.tiers, key=lambda r: acc[r])  # cheapest first
    assert set(METRICS) == {"pass_at_1", "seconds", "tokens", "token_cost"}
