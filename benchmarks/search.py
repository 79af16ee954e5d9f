"""The split, the Pareto fronts, the savings metric and the theta choice
(METHOD.md 4.1, 4.4-4.6)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .simulate import Grid

VALIDATION_SHARE = 0.3
MAX_GREEDY_GAP = 0.05  # points of greedy pass@1 between the two halves
MAX_DRAWS = 100
WINDOW = 0.01  # +- 1 point of accuracy for the random single-member baseline

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

    def weights(self) -> np.ndarray:
        """[problems, 3]: uniform weights over validation, test and all problems."""
        cols = [self.validation, self.test, np.ones_like(self.validation)]
        w = np.stack([c / max(c.sum(), 1) for c in cols], axis=1)
        return w.astype(float)

    def describe(self) -> str:
        n_v, n = int(self.validation.sum()), len(self.validation)
        head = f"{n_v} validation / {n - n_v} test problems, seed {self.seed}"
        if self.accepted:
            return (f"{head} (draw {self.draws} of at most {MAX_DRAWS}; greedy pass@1 gap "
                    f"{100 * self.gap:.1f} points <= {100 * MAX_GREEDY_GAP:.0f})")
        return (f"{head}: no draw in {MAX_DRAWS} kept every member's greedy pass@1 within "
                f"{100 * MAX_GREEDY_GAP:.0f} points; kept the closest (gap "
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
    for draw in range(MAX_DRAWS):
        seed = base_seed + draw
        val = validation_mask(n, seed)
        gaps = [abs(g[val].mean() - g[~val].mean()) if 0 < n_val < n else 0.0
                for g in greedy_passed]
        gap = float(max(gaps))
        if best is None or gap < best.gap:
            best = Split(val, seed, draw + 1, gap, gap <= MAX_GREEDY_GAP + 1e-12)
        if gap <= MAX_GREEDY_GAP + 1e-12:
            return best
    assert best is not None
    return dataclasses.replace(best, draws=MAX_DRAWS)


def pareto(cost: np.ndarray, acc: np.ndarray, tokens: np.ndarray, rows: np.ndarray) -> list[int]:
    """Indices (from `rows`) of the Pareto points, cheapest first.

    A point is dominated by one with cost <= and accuracy >=, one strictly;
    among identical (cost, accuracy) the fewest tokens, then the first in grid
    order (the row order) is kept.
    """
    order = sorted(rows.tolist(), key=lambda i: (cost[i], -acc[i], tokens[i], i))
    front: list[int] = []
    best_acc = -1.0
    for i in order:
        if acc[i] > best_acc:
            front.append(i)
            best_acc = acc[i]
    return front


@dataclasses.dataclass(frozen=True)
class Saving:
    mean: float | None  # mean saving over the points that have a baseline
    per_point: tuple[float | None, ...]
    skipped: int  # front points with no baseline in their window


def saving_vs_random(
    front: Sequence[int], cost: np.ndarray, acc: np.ndarray, singles: np.ndarray
) -> Saving:
    """METHOD.md 4.6: against the mean cost of all single-member plans within
    +- 1 point of accuracy."""
    per_point: list[float | None] = []
    for i in front:
        window = singles[np.abs(acc[singles] - acc[i]) <= WINDOW + 1e-12]
        if len(window) == 0:
            per_point.append(None)
            continue
        c0 = float(cost[window].mean())
        per_point.append((c0 - float(cost[i])) / c0 if c0 > 0 else None)
    return _saving(per_point)


def saving_vs_front(
    front: Sequence[int], cost: np.ndarray, acc: np.ndarray, single_front: Sequence[int]
) -> Saving:
    """The stricter figure: against the single-member Pareto front, its cost
    interpolated linearly at equal accuracy; points outside its range skipped."""
    xs = np.array([acc[i] for i in single_front])
    ys = np.array([cost[i] for i in single_front])
    per_point: list[float | None] = []
    for i in front:
        a = acc[i]
        if len(xs) == 0 or a > xs[-1] + 1e-12 or a < xs[0] - 1e-12:
            per_point.append(None)
            continue
        c0 = float(np.interp(a, xs, ys))
        per_point.append((c0 - float(cost[i])) / c0 if c0 > 0 else None)
    return _saving(per_point)


def _saving(per_point: list[float | None]) -> Saving:
    values = [v for v in per_point if v is not None]
    return Saving(
        float(np.mean(values)) if values else None, tuple(per_point), per_point.count(None)
    )


@dataclasses.dataclass(frozen=True)
class ThetaChoice:
    theta: tuple[int, ...]  # tenths; one value (global) or one per boundary
    front: list[int]  # grid rows, cheapest first
    savings: dict[tuple[int, ...], Saving]  # validation saving of every theta's front
    reason: str


def choose_theta(grid: Grid, per_boundary: bool = False) -> ThetaChoice:
    """The front on validation for every theta; the theta with the best saving."""
    cost, acc = grid.metric("seconds", VAL), grid.metric("pass_at_1", VAL)
    tokens = grid.metric("tokens", VAL)
    singles = np.flatnonzero(grid.single_member())
    single_front = pareto(cost, acc, tokens, singles)
    if per_boundary:
        front = pareto(cost, acc, tokens, np.arange(len(grid)))
        s = saving_vs_random(front, cost, acc, singles)
        return ThetaChoice((), front, {(): s},
                           "one front over every plan and per-boundary theta")
    fronts: dict[tuple[int, ...], list[int]] = {}
    savings: dict[tuple[int, ...], Saving] = {}
    for theta in sorted(set(grid.thetas)):
        rows = np.array([i for i, t in enumerate(grid.thetas) if t == theta])
        fronts[theta] = pareto(cost, acc, tokens, rows)
        savings[theta] = saving_vs_random(fronts[theta], cost, acc, singles)

    def rank(theta: tuple[int, ...]) -> tuple[float, float, int]:
        s = savings[theta].mean
        return (s if s is not None else -np.inf, max(acc[i] for i in fronts[theta]), theta[0])

    chosen = max(fronts, key=rank)
    s = savings[chosen]
    if s.mean is None:
        reason = (f"no theta's front has a single-member plan within +-{100 * WINDOW:.0f} point; "
                  f"theta = {chosen[0] / 10:.1f} has the most accurate front")
    else:
        reason = (f"theta = {chosen[0] / 10:.1f} gives the best validation saving "
                  f"({100 * s.mean:.1f}% over {len(fronts[chosen]) - s.skipped} front points; "
                  "ties go to the more accurate front, then the higher theta)")
    del single_front
    return ThetaChoice(chosen, fronts[chosen], savings, reason)
