"""Scoring and acceptance (docs/method.md section 2, steps 4 and 5) on hand-built pass matrices."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from cascode.engine.scoring import (
    accept_threshold,
    accepts,
    as_fraction,
    best_solution,
    decide_stage,
    solution_scores,
)

T, F = True, False
HALF = Fraction(1, 2)


def test_scores_by_hand() -> None:
    # solves(t) = [2, 1, 1]
    passed = [
        [T, T, F],  # n_s = 2, n_t = max(2, 1) = 2 -> 4
        [T, F, F],  # n_s = 1, n_t = 2 -> 2
        [F, F, T],  # n_s = 1, n_t = 1 -> 1
        [F, F, F],  # passes nothing -> 0
    ]
    assert solution_scores(passed) == [4, 2, 1, 0]
    assert best_solution(solution_scores(passed)) == 0


def test_consensus_beats_a_lone_solution_passing_more_lines() -> None:
    # Solution 2 passes three lines alone; solutions 0 and 1 agree on two lines.
    passed = [
        [T, T, F, F, F],
        [T, T, F, F, F],
        [F, F, T, T, T],
    ]
    # 0 and 1: n_s = 2, n_t = 2 -> 4; 2: n_s = 3, n_t = 1 -> 3
    assert solution_scores(passed) == [4, 4, 3]
    assert best_solution([4, 4, 3]) == 0


def test_figure_4_worked_example() -> None:
    # MBPP 57, theta = 0.5. Member 1: k = 3, l = 2, N_t = 6, nothing passes.
    first = decide_stage([[F] * 6 for _ in range(3)], 3, 3, HALF, last=False)
    assert first.scores == [0, 0, 0] and first.best_score == 0
    assert first.threshold == 9.0
    assert not first.accepted
    # Member 2: k = 1, l = 2, N_t = 2, its solution passes both lines.
    second = decide_stage([[T, T]], 1, 1, HALF, last=False)
    assert second.scores == [2]  # n_s = 2, n_t = 1
    assert second.threshold == 1.0
    assert second.accepted


@pytest.mark.parametrize(
    ("scores", "best"),
    [([3, 3, 3], 0), ([0, 5, 5], 1), ([1, 2, 2, 1], 1), ([0, 0], 0), ([7], 0)],
)
def test_ties_go_to_the_first_solution(scores: list[int], best: int) -> None:
    assert best_solution(scores) == best


def test_tie_in_a_stage_picks_the_first_generated() -> None:
    d = decide_stage([[F, T], [T, F], [F, T], [T, F]], 4, 4, Fraction(0), last=False)
    assert d.scores == [2, 2, 2, 2]
    assert d.best == 0


def test_no_solutions_is_an_error() -> None:
    with pytest.raises(ValueError):
        best_solution([])


@pytest.mark.parametrize("theta", [Fraction(0), HALF, Fraction(1)])
def test_no_test_lines_never_accepts(theta: Fraction) -> None:
    # theta * k * 0 = 0 would accept anything: docs/method.md rules it out.
    assert not accepts(0, 3, 0, theta)
    assert not accepts(100, 1, 0, theta)
    d = decide_stage([], 3, 3, theta, last=False)
    assert d.n_tests == 0 and d.scores == [0, 0, 0] and d.best == 0
    assert not d.accepted


def test_last_member_is_accepted_regardless() -> None:
    nothing = [[F, F], [F, F], [F, F]]
    assert not decide_stage(nothing, 3, 3, Fraction(1), last=False).accepted
    d = decide_stage(nothing, 3, 3, Fraction(1), last=True)
    assert d.accepted and d.best == 0 and d.best_score == 0
    # With no tests at all (k = 0 greedy last member): the first solution.
    d = decide_stage([], 1, 1, Fraction(1), last=True)
    assert d.accepted and d.best == 0


def test_theta_zero_accepts_any_stage_with_tests() -> None:
    assert accepts(0, 3, 6, Fraction(0))
    assert decide_stage([[F, F]], 1, 1, Fraction(0), last=False).accepted


def test_exact_threshold_comparison() -> None:
    theta = as_fraction(0.9)
    assert theta == Fraction(9, 10)
    # k = 10, N_t = 10: the threshold is exactly 90.
    assert accepts(90, 10, 10, theta)
    assert not accepts(89, 10, 10, theta)
    # Where floating point overshoots an integer threshold, the exact rule does not:
    # 0.1 * 3 * 10 == 3.0000000000000004 in floats.
    assert 0.1 * 3 * 10 > 3
    assert accepts(3, 3, 10, as_fraction(0.1))
    assert 0.2 * 3 * 5 > 3
    assert accepts(3, 3, 5, as_fraction(0.2))
    assert not accepts(2, 3, 5, as_fraction(0.2))
    assert accept_threshold(0.9, 3, 6) == pytest.approx(16.2)


@pytest.mark.parametrize("text", ["0.9", "0.1", "1", "0", "0.35"])
def test_as_fraction_from_decimal_text(text: str) -> None:
    assert as_fraction(float(text)) == Fraction(text)
    assert as_fraction(Fraction(text)) == Fraction(text)


def test_vectorized_accepts_equals_scalar() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    k = rng.choice([1, 3, 5, 10], size=n)
    n_tests = rng.integers(0, 41, size=n)
    best = rng.integers(0, 400, size=n)
    for tenths in range(11):
        theta = Fraction(tenths, 10)
        vec = accepts(best, k, n_tests, theta)
        assert vec.dtype == np.bool_ and vec.shape == (n,)
        scalar = [bool(accepts(int(b), int(kk), int(t), theta))
                  for b, kk, t in zip(best, k, n_tests, strict=True)]
        assert vec.tolist() == scalar
        # and against the definition, in exact arithmetic
        expected = [t > 0 and b >= theta * kk * t
                    for b, kk, t in zip(best.tolist(), k.tolist(), n_tests.tolist(), strict=True)]
        assert scalar == expected


def test_scores_of_empty_matrix_and_single_column() -> None:
    assert solution_scores([]) == []
    assert solution_scores([[T], [T], [F]]) == [2, 2, 0]


def test_a_statically_unsound_solution_ranks_last_and_meets_no_rule() -> None:
    from cascode.engine.scoring import best_ranked, decide_stage, pool_key, stage_rule

    # The unsound one passes more examples and scores higher: it still ranks last.
    assert best_ranked([3, 1, 1], [9, 4, 2], [False, True, True]) == 1
    assert best_ranked([3, 1], [9, 4], [False, False]) == 0  # none sound: as before
    assert best_ranked([3, 1], [9, 4]) == 0  # no findings given: every one is sound
    assert stage_rule(9, 1, 3, Fraction(1, 2), 2, 2, True, True)
    assert not stage_rule(9, 1, 3, Fraction(1, 2), 2, 2, True, False)
    assert not stage_rule(0, 1, 0, Fraction(0), 2, 2, False, False)
    # Elementwise on arrays, as the simulator applies it.
    met = stage_rule(np.array([9, 9]), 1, np.array([3, 3]), Fraction(1, 2), np.array([2, 2]),
                     np.array([2, 2]), True, np.array([True, False]))
    assert met.tolist() == [True, False]
    # The pool: a sound candidate that passed no example outranks an unsound one that
    # passed them all and "met" its rule.
    assert pool_key(0, 0, True) > pool_key(50, 1, False)
    d = decide_stage([[True, True], [True, False]], 2, 2, Fraction(1, 2), False,
                     static_ok=[False, True])
    assert d.best == 1 and d.best_static_ok and d.static_ok == [False, True]
    d = decide_stage([[True, True]], 1, 1, Fraction(0), False, static_ok=[False])
    assert not d.meets_threshold and not d.accepted and not d.best_static_ok
