"""The offline simulator (docs/method.md 4.3-4.4): every plan evaluated from the caches.

A stage's outcome (scores, best solution, N_t, whether the best passes the
hidden tests, its tokens and seconds) does not depend on theta, so it is
computed once per member, (k, l) and subset, by the engine's extraction and
scoring functions. The grid then only applies the engine's `accepts` to whole
arrays (thetas x problems) and walks the members cheapest first, sharing every
plan prefix.

Costs are exact (docs/method.md 4.4): a stage's time cost on a problem is rounded
once, from its exact value, to integer microseconds, and its token cost to
integer picodollars; plans sum those integers over problems, so that the grid,
the fronts and the theta choice are the same whatever the order of summation
(float sums differ in their last bits between CPUs and numpy builds, and a
near-tie would then enter or leave a front by chance).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from fractions import Fraction

import numpy as np

from cascode.engine.plans import K_VALUES, L_VALUES
from cascode.engine.scoring import (
    decide_stage,
    pool_key,
    pool_replaces,
    skips_stage,
    stage_rule,
)

from .execution import ProblemData
from .prices import MemberPrice

THETAS = tuple(range(11))  # tenths: theta = t / 10, exact

MICROS = 10**6  # time cost unit: integer microseconds
PICOS = 10**12  # token cost unit: integer picodollars

Option = tuple[int, int]  # (k, l); k = -1 skips the member
SKIP: Option = (-1, 0)


def theta_fraction(tenths: int) -> Fraction:
    return Fraction(tenths, 10)


def member_options(n_samples: int) -> list[Option]:
    """Every (k, l) of docs/method.md 1 that the cache can serve, in grid order."""
    out: list[Option] = []
    for k in K_VALUES:
        if k > 1 and k > n_samples:
            continue  # plans with k > N are skipped (docs/method.md 4.3)
        for ln in L_VALUES:
            if (ln == 0) == (k <= 0):
                out.append((k, ln))
    return out


@dataclasses.dataclass(frozen=True)
class StageOutcome:
    """One member's stage (k, l) on every problem (arrays over problems)."""

    best: np.ndarray  # int: index of the best solution within the stage
    best_score: np.ndarray  # int
    n_tests: np.ndarray  # int: N_t
    k_eff: int  # solutions in the stage (max(k, 1)), the k of the threshold
    passed: np.ndarray  # bool: the best solution passes the hidden tests
    tokens: np.ndarray  # int: generated tokens (solutions + tests up to the l-th assert)
    micros: np.ndarray  # int: time cost (prompt + decode + sandbox), microseconds
    picodollars: np.ndarray  # int: the papers' token cost, picodollars
    # docs/method.md 7: example lines the best passed, and E's size (0: no examples or
    # a plan that does not use them); whether the stage generated tests (k >= 1).
    examples_passed: np.ndarray | None = None
    n_examples: np.ndarray | None = None
    generated: bool = True
    # bool: the best solution passes the static checks (docs/method.md 8.2); None: all do.
    static_ok: np.ndarray | None = None

    @property
    def seconds(self) -> np.ndarray:
        """float per problem (for display; plans sum `micros`)."""
        return self.micros / MICROS

    @property
    def token_cost(self) -> np.ndarray:
        """float dollars per problem (for display; plans sum `picodollars`)."""
        return self.picodollars / PICOS

    def _examples(self) -> tuple[np.ndarray, np.ndarray]:
        zero = np.zeros_like(self.best_score)
        return (self.examples_passed if self.examples_passed is not None else zero,
                self.n_examples if self.n_examples is not None else zero)

    def accepted(self, thetas: Sequence[int]) -> np.ndarray:
        """bool [len(thetas), problems]: the stage's rule met (the engine's
        `stage_rule`): a non-last stage accepts exactly then."""
        e_passed, n_e = self._examples()
        return np.stack([
            np.asarray(stage_rule(self.best_score, self.k_eff, self.n_tests, theta_fraction(t),
                                  e_passed, n_e, self.generated, self._sound()), dtype=bool)
            for t in thetas
        ])

    def _sound(self) -> np.ndarray:
        return (self.static_ok if self.static_ok is not None
                else np.ones(len(self.best), dtype=bool))

    def pool_keys(self, met: np.ndarray) -> np.ndarray:
        """The pool key of each problem's best candidate (engine's `pool_key`)."""
        e_passed, _ = self._examples()
        out: np.ndarray = pool_key(e_passed, met.astype(np.int64),
                                   self._sound().astype(np.int64))
        return out

    def skipped(self, last: bool) -> np.ndarray:
        """bool per problem: the engine skips this stage (`skips_stage`)."""
        _, n_e = self._examples()
        return np.asarray(skips_stage(self.k_eff if self.generated else 0, last, n_e),
                          dtype=bool) & np.ones(len(self.best), dtype=bool)


def stage_items(k: int, subset: Sequence[int] | None) -> list[int]:
    """Indices into the cached items (0 greedy, 1..N sampled) a stage uses."""
    if k <= 1:
        return [0]
    order = list(subset) if subset is not None else list(range(1, k + 1))
    return order[:k]


def answer_item(k: int, best: int) -> int:
    """The cached item (0 greedy, 1..N sampled) of a first-k stage's best solution."""
    return 0 if k <= 1 else 1 + best


def stage_suite(data: ProblemData, tests: Sequence[int], ln: int) -> list[int]:
    """The suite T as unique-line indices: the valid lines among the first l
    asserts of each test, pooled as generated (duplicates kept), which is what
    `extract.pooled_suite` gives for the cut tests."""
    suite: list[int] = []
    for t in tests:
        suite.extend(i for i in data.ex.test_lines[t][:ln] if i >= 0)
    return suite


def _ratio(value: Fraction | int | float) -> tuple[int, int]:
    """An exact (numerator, denominator > 0): a float is the binary number it is."""
    if isinstance(value, Fraction):
        return value.numerator, value.denominator
    if isinstance(value, int):
        return value, 1
    return float(value).as_integer_ratio()


def _round_half_even(num: int, den: int) -> int:
    """num / den (den > 0) rounded to the nearest integer, ties to even (as `round`)."""
    q, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and q % 2):
        q += 1
    return q


def exact_units(value: Fraction | int | float, unit: int) -> int:
    """`value` in integer units of 1/unit, rounded once (half to even) from its exact
    value: a float is taken as the binary number it is, so the result is the same
    on every machine."""
    num, den = _ratio(value)
    return _round_half_even(num * unit, den)


def stage_micros(
    prompt_tokens: int, prompt_seconds_per_token: float, tokens: int,
    decode_seconds_per_token: float, sandbox_micros: Fraction | int,
) -> int:
    """A stage's time cost on one problem (docs/method.md 3) in integer microseconds:
    prompt tokens x seconds per prompt token + generated tokens x seconds per token
    at the stage's batch, plus the sandbox's microseconds, computed exactly (integer
    arithmetic on the floats' exact values) and rounded once."""
    a, b = _ratio(prompt_seconds_per_token)
    c, d = _ratio(decode_seconds_per_token)
    e, f = _ratio(sandbox_micros)
    num = (prompt_tokens * a * d + tokens * c * b) * MICROS * f + e * b * d
    return _round_half_even(num, b * d * f)


# A plan reached by the grid's walk: plan, thetas (rows), then per row and problem:
# passed, microseconds, tokens, picodollars.
Walked = tuple[tuple[Option, ...], list[tuple[int, ...]], np.ndarray, np.ndarray, np.ndarray,
               np.ndarray]
# The walk's state per row and problem: open, passed, microseconds, tokens, picodollars,
# the pool's key and whether the pool's candidate passes the hidden tests.
State = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
              np.ndarray]


class Simulator:
    """Stage outcomes and plan evaluation over one family's cached data.

    `data[m][p]` is member m's ProblemData for problem p (same problem order
    for every member); `prices[m]` its measured prices.

    A plan has one (k, l) per slot: a slot per member, in the family's order,
    and with `repeat_last` one more for the last member, whose second stage
    samples after its greedy one (docs/method.md 7.4: the greedy answer is checked
    on the examples first). `slots[i]` is slot i's member.
    """

    def __init__(
        self,
        members: Sequence[str],
        data: Sequence[Sequence[ProblemData]],
        prices: Sequence[MemberPrice],
        n_samples: int,
        repeat_last: bool = False,
    ) -> None:
        if len({len(d) for d in data}) != 1:
            raise ValueError("every member needs data for the same problems")
        self.members = tuple(members)
        n = len(self.members)
        self.slots = tuple(range(n)) + ((n - 1,) if repeat_last else ())
        self.slot_names = tuple(self.members[m] for m in self.slots)
        self.data = data
        self.prices = prices
        self.n_samples = n_samples
        self.n_problems = len(data[0])
        self._stages: dict[tuple[int, int, int, int, bool, bool], StageOutcome] = {}
        self._subsets: dict[int, list[list[int]]] = {}
        self._rows: dict[tuple[int, int], list[int]] = {}

    # -- stages ------------------------------------------------------------

    def subsets(self, draw: int) -> list[list[int]] | None:
        """Draw 0 is the first k items; draw d > 0 a random order per problem."""
        if draw == 0:
            return None
        if draw not in self._subsets:
            rng = np.random.default_rng(draw)
            self._subsets[draw] = [
                [int(i) + 1 for i in rng.permutation(self.n_samples)]
                for _ in range(self.n_problems)
            ]
        return self._subsets[draw]

    def stage(self, m: int, k: int, ln: int, draw: int = 0,
              examples: bool = False, warm: bool = False) -> StageOutcome:
        """Member m's stage (k, l). `warm`: the member's previous stage (greedy, run
        where there are examples) evaluated the same solution prompt, which its
        prefix cache still holds (the live backend evaluates none of it again):
        there that prompt costs nothing."""
        key = (m, k, ln, draw if k > 1 else 0, examples, warm)
        if key not in self._stages:
            self._stages[key] = self._stage(m, k, ln, key[3], examples, warm)
        return self._stages[key]

    def _warm(self, slot: int) -> bool:
        """Slot `slot` is a member's second stage (its first one ran the greedy prompt)."""
        return slot > 0 and self.slots[slot] == self.slots[slot - 1]

    def _row_micros(self, m: int, p: int) -> list[int]:
        """Sandbox time of each unique solution over all its lines, integer microseconds."""
        key = (m, p)
        if key not in self._rows:
            self._rows[key] = [exact_units(x, MICROS)
                               for x in self.data[m][p].row_seconds.tolist()]
        return self._rows[key]

    def _stage(self, m: int, k: int, ln: int, draw: int, examples: bool,
               warm: bool) -> StageOutcome:
        n = self.n_problems
        best = np.zeros(n, dtype=np.int64)
        best_score = np.zeros(n, dtype=np.int64)
        n_tests = np.zeros(n, dtype=np.int64)
        e_best = np.zeros(n, dtype=np.int64)
        n_e = np.zeros(n, dtype=np.int64)
        passed = np.zeros(n, dtype=bool)
        sound = np.ones(n, dtype=bool)
        tokens = np.zeros(n, dtype=np.int64)
        prompt_tokens = np.zeros(n, dtype=np.int64)
        sandbox: list[Fraction | int] = [0] * n  # microseconds, exact
        subsets = self.subsets(draw)
        for p, data in enumerate(self.data[m]):
            items = stage_items(k, subsets[p] if subsets else None)
            rows = [data.ex.solution_index[s] for s in items]
            suite = stage_suite(data, items, ln) if k > 0 else []
            on_suite: list[list[bool]] = []
            if suite:
                on_suite = data.passed[np.ix_(rows, suite)].tolist()
                # The rows' time over every unique line, scaled to the suite's size;
                # summed as integer microseconds (the cache holds them to 0.1 ms).
                row_micros = sum(self._row_micros(m, p)[r] for r in rows)
                sandbox[p] = Fraction(row_micros * len(suite), data.passed.shape[1])
            on_examples: list[list[bool]] = []
            if examples and data.examples:
                if data.example_passed is None or data.example_seconds is None:
                    raise LookupError(f"{self.members[m]}: {data.problem.task_id}: "
                                      "the examples are not executed")
                on_examples = data.example_passed[rows].tolist()
                sandbox[p] += sum(exact_units(float(data.example_seconds[r]), MICROS)
                                  for r in rows)
                n_e[p] = len(data.examples)
            # The engine's own decision (scores, ranking, rule); theta does not change
            # the best solution, so it is taken at theta = 1 here and the rule is
            # re-applied per theta by `accepted`.
            static_ok = ([bool(data.static_ok[r]) for r in rows]
                         if data.static_ok is not None else [])
            d = decide_stage(on_suite, len(rows), max(k, 1), Fraction(1), False,
                             examples=on_examples, n_examples=int(n_e[p]), generated=k > 0,
                             static_ok=static_ok)
            best[p], best_score[p], n_tests[p] = d.best, d.best_score, d.n_tests
            e_best[p] = d.examples_passed
            sound[p] = d.best_static_ok
            passed[p] = data.hidden[rows[d.best]]
            sols = data.samples.all_solutions
            tokens[p] = sum(sols[s].generated_tokens for s in items)
            # Warm only where the greedy stage before it ran: it is skipped without examples.
            prompt_tokens[p] = 0 if warm and n_e[p] > 0 else sols[items[0]].prompt_tokens
            if k > 0:
                tokens[p] += sum(data.test_tokens(t, ln) for t in items)
                prompt_tokens[p] += data.samples.test_prompt_tokens
        price = self.prices[m]
        batch = 1 if k <= 0 else 2 * k
        decode = price.decode_seconds_per_token(batch)
        micros = np.array(
            [stage_micros(pt, price.prompt_seconds_per_token, t, decode, sb)
             for pt, t, sb in zip(prompt_tokens.tolist(), tokens.tolist(), sandbox, strict=True)],
            dtype=np.int64,
        )
        num, den = _ratio(price.dollars_per_token)
        picodollars = np.array(
            [_round_half_even(num * t * PICOS, den) for t in tokens.tolist()], dtype=np.int64
        )
        return StageOutcome(
            best, best_score, n_tests, max(k, 1), passed, tokens, micros, picodollars,
            e_best, n_e, k > 0, sound,
        )

    # -- plans -------------------------------------------------------------

    def run_plan(
        self, plan: Sequence[Option], thetas: Sequence[int], draw: int = 0,
        examples: bool = False,
    ) -> PlanRun:
        """One plan on every problem, as the live cascade runs it: the stage whose
        candidate answers (the pool's, docs/method.md 7.5), its best solution, pass and
        costs. `thetas` has one value, or one per member boundary."""
        active = [(m, k, ln) for m, (k, ln) in enumerate(plan) if k >= 0]
        if not active:
            raise ValueError("a plan needs an active member")
        if len(plan) > len(self.slots):
            raise ValueError(f"a plan of {len(plan)} slots; this simulator has {len(self.slots)}")
        n = self.n_problems
        answered_by = np.full(n, -1, dtype=np.int64)  # the answering stage's slot
        best = np.zeros(n, dtype=np.int64)
        passed = np.zeros(n, dtype=bool)
        micros = np.zeros(n, dtype=np.int64)
        tokens = np.zeros(n, dtype=np.int64)
        picodollars = np.zeros(n, dtype=np.int64)
        open_ = np.ones(n, dtype=bool)
        key = np.full(n, -1, dtype=np.int64)  # the pool's candidate: its key, member, best
        pool_member = np.full(n, -1, dtype=np.int64)
        pool_best = np.zeros(n, dtype=np.int64)
        pool_passed = np.zeros(n, dtype=bool)
        pool_met = np.zeros(n, dtype=bool)
        verified = np.zeros(n, dtype=bool)
        for pos, (m, k, ln) in enumerate(active):
            last = pos == len(active) - 1
            st = self.stage(self.slots[m], k, ln, draw, examples, self._warm(m))
            run = open_ & ~st.skipped(last)
            micros += np.where(run, st.micros, 0)
            tokens += np.where(run, st.tokens, 0)
            picodollars += np.where(run, st.picodollars, 0)
            theta = thetas[min(pos, len(thetas) - 1)]
            met = st.accepted([theta])[0]
            new_key = st.pool_keys(met)
            take = run & pool_replaces(new_key, key)
            key = np.where(take, new_key, key)
            pool_member = np.where(take, m, pool_member)
            pool_best = np.where(take, st.best, pool_best)
            pool_passed = np.where(take, st.passed, pool_passed)
            pool_met = np.where(take, met, pool_met)
            done = open_ if last else run & met
            answered_by[done] = pool_member[done]
            best[done] = pool_best[done]
            passed[done] = pool_passed[done]
            # The engine's label: the answer met its stage's rule; without examples the
            # last member's also needs a best that passed a test (theta = 0 proves nothing).
            _, n_e = st._examples()
            label = np.where(n_e > 0, pool_met, met & (st.best_score > 0)) if last else met
            verified[done] = label[done]
            open_ = open_ & ~done
        return PlanRun(answered_by, best, passed, micros, tokens, picodollars, verified)

    def grid(
        self, masks: np.ndarray, *, per_boundary: bool = False, draw: int = 0,
        examples: bool = False,
    ) -> Grid:
        """Every valid plan and theta, summed over the problems of each split
        (`masks[p, s]`: problem p is in split s, bool). The sums are integers
        (passes, microseconds, tokens, picodollars), exact in any order."""
        masks = np.asarray(masks)
        if masks.dtype != bool or masks.ndim != 2 or len(masks) != self.n_problems:
            raise ValueError("grid: masks must be bool [problems, splits]")
        weights = masks.astype(np.int64)
        options = member_options(self.n_samples)
        rows: list[tuple[tuple[Option, ...], tuple[int, ...]]] = []
        sums: list[np.ndarray] = []
        for walk in self._walk(options, per_boundary, draw, examples):
            plan, thetas, passed, micros, tokens, picodollars = walk
            stacked = np.stack([passed.astype(np.int64), micros, tokens, picodollars])  # [4, T, P]
            summary = stacked @ weights  # [4, T, S], int64: exact
            for i, theta in enumerate(thetas):
                rows.append((plan, theta))
                sums.append(summary[:, i, :])
        order = sorted(range(len(rows)), key=lambda i: _grid_order(rows[i], options))
        n_splits = masks.shape[1]
        return Grid(
            tuple(rows[i][0] for i in order),
            tuple(rows[i][1] for i in order),
            np.stack([sums[i] for i in order]) if sums
            else np.zeros((0, 4, n_splits), dtype=np.int64),
            tuple(int(c) for c in masks.sum(axis=0)),
            (examples,) * len(order),
            self.slots,
        )

    def _walk(self, options: list[Option], per_boundary: bool, draw: int,
              examples: bool) -> Iterator[Walked]:
        """Depth-first over members; yields each valid plan once, with its
        per-problem pass and costs for every theta (row) that reaches it.

        The same rules as the live cascade, elementwise: a non-last k = 0 stage
        runs only with examples (and is skipped where E is empty), a non-last
        stage accepts when it meets its rule, and the answer is the pool's."""
        n_members = len(self.slots)
        n = self.n_problems
        thetas0: list[tuple[int, ...]] = [(t,) for t in THETAS] if not per_boundary else [()]
        rows = len(thetas0)
        start: State = (
            np.ones((rows, n), dtype=bool), np.zeros((rows, n), dtype=bool),
            np.zeros((rows, n), dtype=np.int64), np.zeros((rows, n), dtype=np.int64),
            np.zeros((rows, n), dtype=np.int64), np.full((rows, n), -1, dtype=np.int64),
            np.zeros((rows, n), dtype=bool),
        )

        def walk(
            i: int, prefix: tuple[Option, ...], thetas: list[tuple[int, ...]], state: State
        ) -> Iterator[Walked]:
            if i == n_members:
                return
            open_, passed, micros, tokens, picodollars, key, pool_passed = state
            repeat = i > 0 and self.slots[i] == self.slots[i - 1]
            for k, ln in options:
                if k < 0:
                    yield from walk(i + 1, prefix + (SKIP,), thetas, state)
                    continue
                if repeat and (k == 0 or prefix[i - 1] != (0, 0)):
                    continue  # a member's second stage samples, after its greedy one
                st = self.stage(self.slots[i], k, ln, draw, examples, repeat)
                # As the last active member: answers every open problem from the pool.
                plan = prefix + ((k, ln),) + (SKIP,) * (n_members - i - 1)
                out = [th if th else (0,) for th in thetas] if per_boundary else thetas
                met = st.accepted([th[-1] for th in out])
                take = pool_replaces(st.pool_keys(met), key)
                final = passed | (open_ & np.where(take, st.passed, pool_passed))
                yield (plan, out, final, micros + open_ * st.micros,
                       tokens + open_ * st.tokens, picodollars + open_ * st.picodollars)
                if i == n_members - 1 or (k == 0 and not examples):
                    continue  # without examples a non-last k = 0 stage is always skipped
                run = open_ & ~st.skipped(False)
                s2 = micros + run * st.micros
                t2 = tokens + run * st.tokens
                c2 = picodollars + run * st.picodollars
                branches: list[tuple[list[tuple[int, ...]], np.ndarray]]
                if per_boundary:
                    # At a k = 0 boundary theta has no effect: one row.
                    values = (0,) if k == 0 else THETAS
                    branches = [([th + (t,) for th in thetas], st.accepted([t]))
                                for t in values]
                else:
                    branches = [(thetas, st.accepted([th[0] for th in thetas]))]
                for next_thetas, met in branches:
                    new_key = st.pool_keys(met)
                    take = run & pool_replaces(new_key, key)
                    done = run & met
                    yield from walk(
                        i + 1, prefix + ((k, ln),), next_thetas,
                        (open_ & ~done, passed | (done & st.passed), s2, t2, c2,
                         np.where(take, new_key, key), np.where(take, st.passed, pool_passed)),
                    )

        yield from walk(0, (), thetas0, start)


def _grid_order(
    row: tuple[tuple[Option, ...], tuple[int, ...]], options: list[Option]
) -> tuple[int, ...]:
    plan, thetas = row
    return tuple(options.index(o) for o in plan) + thetas


@dataclasses.dataclass(frozen=True)
class PlanRun:
    answered_by: np.ndarray  # member index of the answering stage, per problem
    best: np.ndarray  # best solution's index within that stage
    passed: np.ndarray
    micros: np.ndarray  # int: time cost, microseconds
    tokens: np.ndarray
    picodollars: np.ndarray  # int: token cost, picodollars
    verified: np.ndarray | None = None  # bool: the answer is labelled verified, as live

    @property
    def seconds(self) -> np.ndarray:
        return self.micros / MICROS

    @property
    def token_cost(self) -> np.ndarray:
        return self.picodollars / PICOS

    def sums(self, masks: np.ndarray) -> np.ndarray:
        """int64 [4 (METRICS), splits]: the exact sums over each split's problems."""
        stacked = np.stack([self.passed.astype(np.int64), self.micros, self.tokens,
                            self.picodollars])
        out: np.ndarray = stacked @ np.asarray(masks, dtype=bool).astype(np.int64)
        return out


METRICS = ("pass_at_1", "seconds", "tokens", "token_cost")
UNITS = (1, MICROS, 1, PICOS)  # each metric's integer unit per displayed unit


@dataclasses.dataclass(frozen=True)
class Grid:
    """Every (plan, thetas) row with its exact sums [rows, 4 (METRICS), splits]:
    problems passed, microseconds, tokens, picodollars, over each split's `sizes`
    problems."""

    plans: tuple[tuple[Option, ...], ...]
    thetas: tuple[tuple[int, ...], ...]
    sums: np.ndarray  # int64
    sizes: tuple[int, ...]  # problems per split
    examples: tuple[bool, ...] = ()  # per row: the plan checks the examples (docs/method.md 7.6)
    slots: tuple[int, ...] = ()  # each plan slot's member (Simulator.slots)

    def uses_examples(self, row: int) -> bool:
        return bool(self.examples[row]) if self.examples else False

    def groups(self) -> tuple[bool, ...]:
        """Per row: the plan uses examples (its savings baseline's group)."""
        return self.examples or (False,) * len(self.plans)

    @staticmethod
    def concat(grids: Sequence[Grid]) -> Grid:
        """Rows of several grids over the same splits, in order (without examples first)."""
        return Grid(
            tuple(p for g in grids for p in g.plans),
            tuple(t for g in grids for t in g.thetas),
            np.concatenate([g.sums for g in grids]),
            grids[0].sizes,
            tuple(bool(e) for g in grids for e in (g.examples or (False,) * len(g))),
            grids[0].slots,
        )

    def __len__(self) -> int:
        return len(self.plans)

    def metric(self, name: str, split: int) -> np.ndarray:
        """The mean per problem as floats (pass@1, seconds, tokens, dollars), for
        display: one division of an exact integer, the same on every machine."""
        j = METRICS.index(name)
        out: np.ndarray = self.sums[:, j, split] / float(max(self.sizes[split], 1) * UNITS[j])
        return out

    def exact(self, name: str, split: int) -> list[Fraction]:
        """The mean per problem as exact fractions: what fronts, savings and the theta
        choice compare."""
        j = METRICS.index(name)
        den = max(self.sizes[split], 1) * UNITS[j]
        return [Fraction(int(v), den) for v in self.sums[:, j, split].tolist()]

    @property
    def metrics(self) -> np.ndarray:
        """float [rows, 4, splits]: every metric's mean (display)."""
        units = np.array(UNITS, dtype=float)[None, :, None]
        sizes = np.array([max(c, 1) for c in self.sizes], dtype=float)[None, None, :]
        out: np.ndarray = self.sums / (units * sizes)
        return out

    def single_member(self) -> np.ndarray:
        """bool per row: plans whose active stages are all one member's."""
        slots = self.slots or tuple(range(len(self.plans[0]) if self.plans else 0))
        return np.array([len({slots[i] for i, (k, _) in enumerate(p) if k >= 0}) == 1
                         for p in self.plans], dtype=bool)


def all_plans(n_members: int, n_samples: int, examples: bool = False,
              repeat_last: bool = False) -> Iterator[tuple[Option, ...]]:
    """Every valid plan of docs/method.md 1 in grid order (for tests and counting); a
    non-last k = 0 stage only in plans that use examples (docs/method.md 7.4); with
    `repeat_last`, a last slot for the last member's sampled second stage."""
    options = member_options(n_samples)
    for plan in itertools.product(options, repeat=n_members + int(repeat_last)):
        active = [o for o in plan if o[0] >= 0]
        if not active or not (examples or all(k != 0 for k, _ in active[:-1])):
            continue
        if repeat_last and plan[-1][0] >= 0 and (plan[-1][0] == 0 or plan[-2] != (0, 0)):
            continue
        yield plan
