"""CodeT-style scoring, the stage rule and the pool: docs/method.md 2.4-2.5, 7.2-7.5 and
8.2 (a candidate that fails a static check ranks last and never meets a rule).

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

    A stage with no valid test line never accepts (docs/method.md 2.5). Works on ints
    and, elementwise, on NumPy integer arrays.
    """
    return (best_score * theta.denominator >= theta.numerator * k * n_tests) & (n_tests > 0)


def best_ranked(example_passed: Sequence[int], scores: Sequence[int],
                static_ok: Sequence[bool] = ()) -> int:
    """Index of the best solution by (passes the static checks, example lines passed,
    CodeT score), ties to the solution generated first (docs/method.md 7.2, 8.2). With
    no examples every count is 0, and with no findings every candidate is statically
    sound: this is then `best_solution`."""
    if not scores:
        raise ValueError("no solutions to choose from")
    ok = list(static_ok) or [True] * len(scores)

    def rank(i: int) -> tuple[bool, int, int]:
        return ok[i], example_passed[i], scores[i]

    best = 0
    for i in range(len(scores)):
        if rank(i) > rank(best):
            best = i
    return best


def stage_rule(
    best_score: Any, k: Any, n_tests: Any, theta: Fraction, examples_passed: Any,
    n_examples: Any, generated: bool, static_ok: Any = True,
) -> Any:
    """Whether a stage's best solution meets its stage's rule (docs/method.md 2.5, 7.3-7.4,
    8.2).

    With examples (n_examples > 0): the best passes every example line and, when the
    stage generated tests, the section-2 rule on T holds too. Without examples: the
    section-2 rule alone (a stage that generated no tests then proves nothing). A best
    solution that fails a static check (`static_ok` false) meets no rule.
    Works on ints and, elementwise, on NumPy integer arrays; `k` is the threshold's
    k (max(k, 1)).
    """
    all_examples = examples_passed == n_examples
    if generated:
        return all_examples & accepts(best_score, k, n_tests, theta) & static_ok
    return all_examples & (n_examples > 0) & static_ok


# A statically sound candidate outranks any that is not, whatever its examples: the
# key's top bit (example counts stay far below it).
STATIC_RANK = 1 << 20


def pool_key(examples_passed: Any, met_rule: Any, static_ok: Any = True) -> Any:
    """A candidate's rank in the pool (docs/method.md 7.5, 8.2): whether it passes the
    static checks, then example lines passed, then whether it met its own stage's rule.
    A later stage's candidate replaces the pool's answer when its key is at least as
    high (`pool_replaces`). Elementwise on NumPy arrays."""
    return static_ok * STATIC_RANK + examples_passed * 2 + met_rule


def pool_replaces(new_key: Any, pool: Any) -> Any:
    """Later stage first: a candidate replaces the pool's on an equal or higher key."""
    return new_key >= pool


def skips_stage(k: int, last: bool, n_examples: Any) -> Any:
    """A non-last stage without generated tests proves nothing without examples: it
    is skipped and costs nothing (docs/method.md 7.4). Elementwise on arrays."""
    if k > 0 or last:
        return n_examples < 0  # never (elementwise False)
    return n_examples == 0


class Decision:
    """The outcome of one stage: scores, the best solution, and whether it is accepted."""

    __slots__ = ("scores", "best", "best_score", "n_tests", "threshold", "meets_threshold",
                 "accepted", "example_passed", "n_examples", "static_ok")

    def __init__(
        self,
        scores: list[int],
        best: int,
        n_tests: int,
        threshold: float,
        accepted: bool,
        meets_threshold: bool,
        example_passed: list[int] | None = None,
        n_examples: int = 0,
        static_ok: list[bool] | None = None,
    ) -> None:
        self.scores = scores
        self.best = best
        self.best_score = scores[best] if scores else 0
        self.n_tests = n_tests
        self.threshold = threshold
        self.accepted = accepted
        # The exact rule's verdict, before "the last member accepts regardless".
        self.meets_threshold = meets_threshold
        self.example_passed = example_passed or [0] * len(scores)
        self.n_examples = n_examples
        self.static_ok = static_ok or [True] * len(scores)

    @property
    def examples_passed(self) -> int:
        """Example lines the best solution passed."""
        return self.example_passed[self.best] if self.example_passed else 0

    @property
    def best_static_ok(self) -> bool:
        """The best solution passes the static checks."""
        return self.static_ok[self.best] if self.static_ok else True


def decide_stage(
    passed: Sequence[Sequence[bool]], n_solutions: int, k: int, theta: Fraction, last: bool,
    *, examples: Sequence[Sequence[bool]] = (), n_examples: int = 0, generated: bool = True,
    static_ok: Sequence[bool] = (),
) -> Decision:
    """Score a stage's pass matrices and apply its rule (docs/method.md 2.4-2.5, 7.2-7.4,
    8.2).

    `passed` has one row per solution over T (it may be empty when there are no
    test lines); `examples` one row per solution over the example lines E (empty
    when there are none: `n_examples` is 0). `k` is the threshold's k (max(k, 1));
    `generated` whether the stage generated tests (k >= 1); `static_ok` whether each
    solution passes the static checks (empty: all do). The last active member is
    accepted regardless of its rule.
    """
    n_tests = len(passed[0]) if passed else 0
    scores = solution_scores(passed) if n_tests else [0] * n_solutions
    counts = [sum(1 for ok in row if ok) for row in examples] if n_examples else [0] * n_solutions
    sound = list(static_ok) or [True] * n_solutions
    best = best_ranked(counts, scores, sound)
    ok = bool(stage_rule(scores[best], k, n_tests, theta, counts[best], n_examples, generated,
                         sound[best]))
    return Decision(scores, best, n_tests, accept_threshold(theta, k, n_tests), ok or last, ok,
                    counts, n_examples, sound)
