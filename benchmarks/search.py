"""The split, the Pareto fronts, the savings metric and the theta choice
(docs/method.md 4.1, 4.4-4.6).

Everything here compares exact numbers: the grid's `exact` means (fractions of
integer sums), savings as fractions, converted to float only for display, so
that a near-tie is decided the same way on every machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from fractions import Fraction
from numbers import Rational
from typing import Any

import numpy as np

from .simulate import Grid

VALIDATION_SHARE = 0.3
MAX_GREEDY_GAP = Fraction(5, 100)  # points of greedy pass@1 between the two halves
MAX_DRAWS = 100
WINDOW = Fraction(1, 100)  # +- 1 point of accuracy for the random single-member baseline

VAL, TEST, ALL = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Split:
    validation: np.ndarray  # bool per problem
    seed: int
    draws: int  # draws tried
    gap: float  # the largest greedy pass@1 gap between the halves over members
    accepted: bool  # the gap is within MAX_GREEDY_GAP

    @property
    def test(self) -> np.ndarray:
        return ~self.validation

    def masks(self) -> np.ndarray:
        """bool [problems, 3]: the validation, test and all problems (VAL, TEST, ALL)."""
        return np.stack([self.validation, self.test, np.ones_like(self.validation)], axis=1)

    def describe(self) -> str:
        n_v, n = int(self.validation.sum()), len(self.validation)
        head = f"{n_v} validation / {n - n_v} test problems, seed {self.seed}"
        if self.accepted:
            return (f"{head} (draw {self.draws} of at most {MAX_DRAWS}; greedy pass@1 gap "
                    f"{100 * self.gap:.1f} points <= {100 * float(MAX_GREEDY_GAP):.0f})")
        return (f"{head}: no draw in {MAX_DRAWS} kept every member's greedy pass@1 within "
                f"{100 * float(MAX_GREEDY_GAP):.0f} points; kept the closest (gap "
                f"{100 * self.gap:.1f} points)")


def validation_size(n: int) -> int:
    return max(1, min(n - 1, round(VALIDATION_SHARE * n))) if n > 1 else n


def validation_mask(n: int, seed: int) -> np.ndarray:
    """The validation set drawn with `seed` (the split records only the seed)."""
    val = np.zeros(n, dtype=bool)
    val[np.random.default_rng(seed).permutation(n)[: validation_size(n)]] = True
    return val


def split(greedy_passed: Sequence[np.ndarray], base_seed: int = 0) -> Split:
    """A random 30% validation set; redrawn (next seed) until each member's greedy
    pass@1 differs by at most 5 points between the halves; after 100 draws the
    closest split is kept."""
    n = len(greedy_passed[0])
    n_val = validation_size(n)
    best: Split | None = None
    best_gap = Fraction(0)
    for draw in range(MAX_DRAWS):
        seed = base_seed + draw
        val = validation_mask(n, seed)
        gaps = [abs(Fraction(int(g[val].sum()), n_val) - Fraction(int(g[~val].sum()), n - n_val))
                if 0 < n_val < n else Fraction(0) for g in greedy_passed]
        gap = max(gaps)
        if best is None or gap < best_gap:
            best, best_gap = Split(val, seed, draw + 1, float(gap), gap <= MAX_GREEDY_GAP), gap
        if gap <= MAX_GREEDY_GAP:
            return best
    assert best is not None
    return dataclasses.replace(best, draws=MAX_DRAWS)


Number = Any  # an exact number (int, Fraction) or, in tests, a float


def pareto(cost: Sequence[Number], acc: Sequence[Number], tokens: Sequence[Number],
           rows: Sequence[int] | np.ndarray) -> list[int]:
    """Indices (from `rows`) of the Pareto points, cheapest first.

    A point is dominated by one with cost <= and accuracy >=, one strictly;
    among identical (cost, accuracy) the fewest tokens, then the first in grid
    order (the row order) is kept. Give exact values (the grid's `exact`): the
    comparisons are then exact, whatever the machine.
    """
    order = sorted((int(i) for i in np.asarray(rows).tolist()),
                   key=lambda i: (cost[i], -acc[i], tokens[i], i))
    front: list[int] = []
    best_acc: Number = None
    for i in order:
        if best_acc is None or acc[i] > best_acc:
            front.append(i)
            best_acc = acc[i]
    return front


def _exact(x: Number) -> Fraction:
    """A number as an exact fraction (a float as the binary number it is)."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, Rational):
        return Fraction(int(x.numerator), int(x.denominator))
    return Fraction(float(x))


@dataclasses.dataclass(frozen=True)
class Saving:
    mean: float | None  # mean saving over the points that have a baseline (display)
    per_point: tuple[float | None, ...]
    skipped: int  # front points with no baseline in their window
    exact: Fraction | None = None  # the mean, exact: what the theta choice compares


def saving_vs_random(
    front: Sequence[int], cost: Sequence[Number], acc: Sequence[Number],
    singles: Sequence[int] | np.ndarray, groups: Sequence[bool] | None = None,
) -> Saving:
    """docs/method.md 4.6: against the mean cost of all single-member plans within
    +- 1 point of accuracy (exact: the window and the means are fractions).
    With `groups` (per grid row: the plan uses examples), each point is measured
    against the single-member plans of its own group."""
    if groups is not None:
        return _grouped(front, singles, groups,
                        lambda f, s: _random_points(f, cost, acc, s))
    return _saving(_random_points(front, cost, acc, singles))


def _grouped(front: Sequence[int], singles: Sequence[int] | np.ndarray, groups: Sequence[bool],
             points: Any) -> Saving:
    """Per-point savings computed within each group of rows, merged in front order."""
    single_rows = [int(j) for j in np.asarray(singles).tolist()]
    by_row: dict[int, Fraction | None] = {}
    for flag in sorted({bool(groups[i]) for i in front}):
        mine = [i for i in front if bool(groups[i]) == flag]
        same = [j for j in single_rows if bool(groups[j]) == flag]
        by_row.update(zip(mine, points(mine, same), strict=True))
    return _saving([by_row[i] for i in front])


def _random_points(
    front: Sequence[int], cost: Sequence[Number], acc: Sequence[Number],
    singles: Sequence[int] | np.ndarray,
) -> list[Fraction | None]:
    single_rows = [int(j) for j in np.asarray(singles).tolist()]
    per_point: list[Fraction | None] = []
    for i in front:
        a = _exact(acc[i])
        window = [j for j in single_rows if abs(_exact(acc[j]) - a) <= WINDOW]
        if not window:
            per_point.append(None)
            continue
        c0 = sum((_exact(cost[j]) for j in window), Fraction(0)) / len(window)
        per_point.append((c0 - _exact(cost[i])) / c0 if c0 > 0 else None)
    return per_point


def interpolate(a: Fraction, xs: Sequence[Fraction], ys: Sequence[Fraction]) -> Fraction:
    """Linear interpolation at `a` (xs increasing, a within [xs[0], xs[-1]]), exact;
    at a knot its own value (as numpy's `interp`)."""
    for j in range(len(xs)):
        if a == xs[j]:
            return ys[j]
        if j + 1 < len(xs) and xs[j] < a < xs[j + 1]:
            w = (a - xs[j]) / (xs[j + 1] - xs[j])
            return ys[j] + (ys[j + 1] - ys[j]) * w
    raise ValueError("interpolate: outside the range")


def saving_vs_front(
    front: Sequence[int], cost: Sequence[Number], acc: Sequence[Number],
    single_front: Sequence[int] | np.ndarray, groups: Sequence[bool] | None = None,
    tokens: Sequence[Number] | None = None,
) -> Saving:
    """The stricter figure: against the single-member Pareto front, its cost
    interpolated linearly at equal accuracy; points outside its range skipped.
    With `groups`, `single_front` is every single-member row and each point is
    measured against the Pareto front of the single-member plans of its group
    (`tokens` breaks ties as in `pareto`)."""
    if groups is not None:
        tok = tokens if tokens is not None else [0] * len(cost)
        return _grouped(front, single_front, groups,
                        lambda f, s: _front_points(f, cost, acc, pareto(cost, acc, tok, s)))
    return _saving(_front_points(front, cost, acc, single_front))


def _front_points(
    front: Sequence[int], cost: Sequence[Number], acc: Sequence[Number],
    single_front: Sequence[int] | np.ndarray,
) -> list[Fraction | None]:
    xs = [_exact(acc[i]) for i in single_front]
    ys = [_exact(cost[i]) for i in single_front]
    per_point: list[Fraction | None] = []
    for i in front:
        a = _exact(acc[i])
        if not xs or a > xs[-1] or a < xs[0]:
            per_point.append(None)
            continue
        c0 = interpolate(a, xs, ys)
        per_point.append((c0 - _exact(cost[i])) / c0 if c0 > 0 else None)
    return per_point


def _saving(per_point: list[Fraction | None]) -> Saving:
    values = [v for v in per_point if v is not None]
    exact = sum(values, Fraction(0)) / len(values) if values else None
    return Saving(
        None if exact is None else float(exact),
        tuple(None if v is None else float(v) for v in per_point),
        per_point.count(None),
        exact,
    )


@dataclasses.dataclass(frozen=True)
class ThetaChoice:
    theta: tuple[int, ...]  # tenths; one value (global) or one per boundary
    front: list[int]  # grid rows, cheapest first
    savings: dict[tuple[int, ...], Saving]  # validation saving of every theta's front
    reason: str


def choose_theta(grid: Grid, per_boundary: bool = False) -> ThetaChoice:
    """The front on validation for every theta; the theta with the best saving.

    Every comparison is exact (the grid's integer sums as fractions); ties go to
    the more accurate front, then the higher theta."""
    cost, acc = grid.exact("seconds", VAL), grid.exact("pass_at_1", VAL)
    tokens = grid.exact("tokens", VAL)
    singles = np.flatnonzero(grid.single_member())
    groups = grid.groups()
    if per_boundary:
        front = pareto(cost, acc, tokens, np.arange(len(grid)))
        s = saving_vs_random(front, cost, acc, singles, groups)
        return ThetaChoice((), front, {(): s},
                           "one front over every plan and per-boundary theta")
    fronts: dict[tuple[int, ...], list[int]] = {}
    savings: dict[tuple[int, ...], Saving] = {}
    for theta in sorted(set(grid.thetas)):
        rows = np.array([i for i, t in enumerate(grid.thetas) if t == theta])
        fronts[theta] = pareto(cost, acc, tokens, rows)
        savings[theta] = saving_vs_random(fronts[theta], cost, acc, singles, groups)

    def rank(theta: tuple[int, ...]) -> tuple[bool, Fraction, Fraction, int]:
        s = savings[theta].exact
        return (s is not None, s if s is not None else Fraction(0),
                max(acc[i] for i in fronts[theta]), theta[0])

    chosen = max(fronts, key=rank)
    s = savings[chosen]
    if s.mean is None:
        reason = (f"no theta's front has a single-member plan within "
                  f"+-{100 * float(WINDOW):.0f} point; "
                  f"theta = {chosen[0] / 10:.1f} has the most accurate front")
    else:
        reason = (f"theta = {chosen[0] / 10:.1f} gives the best validation saving "
                  f"({100 * s.mean:.1f}% over {len(fronts[chosen]) - s.skipped} front points; "
                  "ties go to the more accurate front, then the higher theta)")
    return ThetaChoice(chosen, fronts[chosen], savings, reason)
