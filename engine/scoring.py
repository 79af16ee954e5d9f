"""CodeT-style scoring and the acceptance rule: METHOD.md section 2, steps 4 and 5.

Pure functions, shared by the live cascade and the offline simulator. The
acceptance test is written so that it works elementwise on NumPy integer
arrays as well as on Python ints (the simulator vectorizes over problems).
Thresholds are exact: theta is held as a Fraction, so theta = 0.9 compares
`10 * score >= 9 * k * N_t` in integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any


def as_fraction(theta: float | Fraction | str) -> Fraction:
    """theta as an exact fraction: 0.9 -> 9/10 (from its shortest decimal form)."""
    if isinstance(theta, Fraction):
        return theta
    return Fraction(str(theta)).limit_denominator(10**6)


def solution_scores(passed: Sequence[Sequence[bool]]) -> list[int]:
    """score(s) = n_s * n_t for every solution s of the pass matrix P[s][t].

    n_s: the lines s passes; n_t: the most solutions that pass any one of those
    lines (0 when s passes none).
    """
    if not passed:
        return []
    n_lines = len(passed[0])
    solves = [sum(1 for row in passed if row[t]) for t in range(n_lines)]
    scores = []
    for row in passed:
        lines = [t for t in range(n_lines) if row[t]]
        n_s = len(lines)
        n_t = max((solves[t] for t in lines), default=0)
        scores.append(n_s * n_t)
    return scores


def best_solution(scores: Sequence[int]) -> int:
    """Index of the highest score; ties go to the solution generated first."""
    if not scores:
        raise ValueError("no solutions to choose from")
    best = 0
    for i, s in enumerate(scores):
        if s > scores[best]:
            best = i
    return best


def accept_threshold(theta: float | Fraction, k: int, n_tests: int) -> float:
    """theta * k * N_t, the score the best solution must reach (for display)."""
    return float(as_fraction(theta) * k * n_tests)


def accepts(best_score: Any, k: Any, n_tests: Any, theta: Fraction) -> Any:
    """Accept iff score(best) >= theta * k * N_t and N_t > 0.

    A stage with no valid test line never accepts (METHOD.md 2.5). Works on ints
    and, elementwise, on NumPy integer arrays.
    """
    return (best_score * theta.denominator >= theta.numerator * k * n_tests) & (n_tests > 0)


class Decision:
    """The outcome of one stage: scores, the best solution, and whether it is accepted."""

    __slots__ = ("scores", "best", "best_score", "n_tests", "threshold", "meets_threshold",
                 "accepted")

    def __init__(
        self,
        scores: list[int],
        best: int,
        n_tests: int,
        threshold: float,
        accepted: bool,
        meets_threshold: bool,
    ) -> None:
        self.scores = scores
        self.best = best
        self.best_score = scores[best] if scores else 0
        self.n_tests = n_tests
        self.threshold = threshold
        self.accepted = accepted
        # The exact rule's verdict, before "the last member accepts regardless".
        self.meets_threshold = meets_threshold


def decide_stage(
    passed: Sequence[Sequence[bool]], n_solutions: int, k: int, theta: Fraction, last: bool
) -> Decision:
    """Score a stage's pass matrix and apply the acceptance rule (METHOD.md 2.4-2.5).

    `passed` has one row per solution (it may be empty when there are no test
    lines); the last active member is accepted regardless of its score.
    """
    n_tests = len(passed[0]) if passed else 0
    scores = solution_scores(passed) if n_tests else [0] * n_solutions
    best = best_solution(scores)
    ok = bool(accepts(scores[best], k, n_tests, theta))
    return Decision(scores, best, n_tests, accept_threshold(theta, k, n_tests), ok or last, ok)
