"""The plan search is exact: the same caches give the same fronts and theta on every
machine, whatever the order in which problems are summed (docs/method.md 4.4).

Float sums of the same numbers differ in their last bits with the summation order
(numpy's SIMD dispatch and the BLAS blocking of a matrix product vary by CPU), and a
plan that ties another in pass@1 or cost then enters or leaves a front by chance.
The simulator sums integers (passes, microseconds, tokens, picodollars) and the
search compares fractions of them.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from cascode.benchmarks import calibrate as cal
from cascode.benchmarks.search import VAL, choose_theta, pareto, saving_vs_random, split
from cascode.benchmarks.simulate import (
    MICROS,
    Grid,
    PlanRun,
    Simulator,
    exact_units,
    stage_micros,
)
from cascode.benchmarks.synthetic import ArithmeticSandbox, synthetic_dataset
from cascode.engine.plans import parse_plan

from .conftest import Factory, family_plan


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    out = tmp_path_factory.mktemp("exact")
    plan = parse_plan(family_plan(["small", "medium", "large"]))
    settings = cal.Settings(out=out, progress=False)
    return cal.load_family_data(plan, synthetic_dataset(30), settings,
                                backend_factory=Factory(), sandbox_factory=ArithmeticSandbox)


def _permuted(family, order: np.ndarray) -> Simulator:
    data = [[member_data[p] for p in order] for member_data in family.data]
    return Simulator(family.members, data, family.prices, 10)


@pytest.mark.parametrize("how", ["reversed", "shuffled"])
def test_grid_and_theta_choice_do_not_depend_on_the_summation_order(family, how):
    masks = split(family.greedy_passed()).masks()
    n = len(masks)
    order = np.arange(n)[::-1] if how == "reversed" else np.random.default_rng(7).permutation(n)
    base = family.simulator(10).grid(masks)
    other = _permuted(family, order).grid(masks[order])
    assert base.plans == other.plans and base.thetas == other.thetas
    np.testing.assert_array_equal(base.sums, other.sums)  # bit for bit, not close
    for name in ("pass_at_1", "seconds", "tokens", "token_cost"):
        np.testing.assert_array_equal(base.metric(name, VAL), other.metric(name, VAL))
    a, b = choose_theta(base), choose_theta(other)
    assert (a.theta, a.front, a.reason) == (b.theta, b.front, b.reason)
    assert {t: s.exact for t, s in a.savings.items()} == {t: s.exact for t, s in b.savings.items()}


def _grid(runs: list[PlanRun], plans, thetas, masks: np.ndarray) -> Grid:
    return Grid(tuple(plans), tuple(thetas), np.stack([r.sums(masks) for r in runs]),
                tuple(int(c) for c in masks.sum(axis=0)))


def _run(passed, seconds, tokens) -> PlanRun:
    n = len(passed)
    return PlanRun(np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64),
                   np.array(passed, dtype=bool),
                   np.array([exact_units(s, MICROS) for s in seconds], dtype=np.int64),
                   np.array(tokens, dtype=np.int64), np.zeros(n, dtype=np.int64))


A = ((0, 0), (-1, 0))
B = ((-1, 0), (0, 0))


def test_a_cost_tie_that_floats_break_is_decided_by_the_documented_tie_break():
    # The same per-problem costs in another order: float sums differ in the last bit.
    costs_a, costs_b = [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]
    assert sum(costs_a) != sum(costs_b)  # 0.6000000000000001 vs 0.6
    masks = np.ones((3, 1), dtype=bool)
    for tokens_a, tokens_b, kept in ((10, 20, 0), (20, 10, 1), (10, 10, 0)):
        runs = [_run([1, 1, 0], costs_a, [tokens_a, 0, 0]),
                _run([0, 1, 1], costs_b, [tokens_b, 0, 0])]
        g = _grid(runs, [A, B], [(5,), (5,)], masks)
        assert g.exact("seconds", 0)[0] == g.exact("seconds", 0)[1] == Fraction(6, 30)
        front = pareto(g.exact("seconds", 0), g.exact("pass_at_1", 0), g.exact("tokens", 0),
                       np.arange(2))
        # equal cost and pass@1: the fewest tokens, then the first in grid order
        assert front == [kept]


def test_an_accuracy_tie_keeps_a_costlier_plan_off_the_front_and_the_theta_tie_goes_up():
    """The shipped calibration's case: a cascade passing as many validation problems as
    a single-member plan, at a higher cost. Summed as floats with weights 1/49 the two
    pass@1 may differ in the last bit, and the cascade then joined the front at some
    thetas on some CPUs. Exact: it is dominated at every theta; every theta's front and
    saving are then equal, and the documented tie-break takes the higher theta."""
    n = 49
    masks = np.ones((n, 1), dtype=bool)
    cheap = [True] * 27 + [False] * 22
    single = [True] * 34 + [False] * 15
    cascade = [False] * 15 + [True] * 34  # as many passes, other problems
    accurate = [True] * 37 + [False] * 12
    runs, plans, thetas = [], [], []
    for theta in (5, 10):
        for plan, passed, seconds in (
            (((0, 0), (-1, 0)), cheap, 0.004),
            (((1, 2), (-1, 0)), cheap, 0.005),
            (((-1, 0), (3, 4)), single, 0.020),
            (((-1, 0), (5, 2)), single, 0.023),
            (((-1, 0), (5, 4)), accurate, 0.028),
            (((1, 2), (5, 4)), cascade, 0.0235),
        ):
            runs.append(_run(passed, [seconds] * n, [1] * n))
            plans.append(plan)
            thetas.append((theta,))
    g = _grid(runs, plans, thetas, masks)
    acc = g.exact("pass_at_1", VAL)
    assert acc[2] == acc[5] == Fraction(34, 49)
    choice = choose_theta(g)
    assert choice.theta == (10,)
    assert [plans[i] for i in choice.front] == [((0, 0), (-1, 0)), ((-1, 0), (3, 4)),
                                                ((-1, 0), (5, 4))]
    assert choice.savings[(5,)].exact == choice.savings[(10,)].exact
    assert "ties go to the more accurate front, then the higher theta" in choice.reason
    # One more pass (35 of 49) at theta 1.0, and the cascade is on that front.
    runs[11] = _run([True] + cascade[1:], [0.0235] * n, [1] * n)
    assert 11 in choose_theta(_grid(runs, plans, thetas, masks)).front


def test_savings_are_exact_fractions_independent_of_the_front_order():
    cost = [Fraction(1), Fraction(3), Fraction(2), Fraction(6), Fraction(10)]
    acc = [Fraction(1, 2), Fraction(7, 10), Fraction(1, 2), Fraction(71, 100), Fraction(4, 5)]
    singles = np.array([2, 3, 4])
    a = saving_vs_random([0, 1], cost, acc, singles)
    b = saving_vs_random([1, 0], cost, acc, singles)
    assert a.exact == b.exact == Fraction(1, 2)
    # The window is +-1 point, exactly: 0.70 and 0.71 are within it.
    assert a.per_point == (0.5, 0.5) and a.skipped == 0


def test_stage_costs_are_rounded_once_from_their_exact_value():
    # 0.1 s/token x 3 tokens is 0.30000000000000004 in floats; in microseconds 300000.
    assert stage_micros(0, 0.0, 3, 0.1, 0) == 300000
    # Sandbox time: the rows' microseconds scaled exactly; half a microsecond goes to even.
    assert stage_micros(0, 0.0, 0, 0.0, Fraction(1234567, 2)) == 617284
    assert stage_micros(0, 0.0, 0, 0.0, Fraction(1234565, 2)) == 617282
    assert exact_units(0.1234, MICROS) == 123400  # the cache holds 0.1 ms
