"""The calibration pipeline (METHOD.md 4): sample, execute, simulate, search, write.

`load_family_data` fills the caches (generating and executing only what is
missing) and returns the simulator's inputs; `search` runs the split, the grid
and the theta choice; `calibrate` does both and writes the plan file and the
report. Everything written is a function of the caches and the settings only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from cascode.engine.plans import Member, Plan
from cascode.engine.types import Backend

from .datasets import Dataset
from .execution import (
    CalibrationSandbox,
    ExampleCache,
    ExecutionCache,
    ProblemData,
    execute_member,
)
from .prices import MemberPrice, price_from_cache, stored_price
from .sampling import SampleCache, resolve_fingerprint, sample_member
from .search import ALL, TEST, VAL, Split, ThetaChoice, choose_theta, pareto, split
from .simulate import UNITS, Grid, Simulator

log = logging.getLogger(__name__)

BackendFactory = Callable[[Member], Backend]
SandboxFactory = Callable[[], CalibrationSandbox]

SUBSET_DRAWS = 10  # random subsets averaged beside the first-k figures


@dataclasses.dataclass(frozen=True)
class Settings:
    out: Path
    samples: int = 10
    seed: int = 0  # sampling seed (the live cascade's default)
    split_seed: int = 0  # first seed tried by the split
    price_per_hour: float = 0.44
    per_boundary: bool = False
    max_tiers: int = 3
    concurrency: int = 1
    progress: bool = True


@dataclasses.dataclass
class FamilyData:
    plan: Plan
    dataset: Dataset
    fingerprints: list[str]
    data: list[list[ProblemData]]
    prices: list[MemberPrice]
    generated: dict[str, int]  # member -> problems sampled in this run

    @property
    def members(self) -> list[str]:
        return [m.name for m in self.plan.family]

    def simulator(self, n_samples: int) -> Simulator:
        return Simulator(self.members, self.data, self.prices, n_samples)

    def greedy_passed(self) -> list[np.ndarray]:
        return [
            np.array([d.hidden[d.ex.solution_index[0]] for d in member_data])
            for member_data in self.data
        ]


def _default_backend(member: Member) -> Backend:
    from cascode.engine.backends import create_backend

    return create_backend(member)


def _default_sandbox() -> CalibrationSandbox:
    from cascode.engine.sandbox import create_sandbox

    sandbox: CalibrationSandbox = create_sandbox(required=True)
    return sandbox


def load_family_data(
    plan: Plan,
    dataset: Dataset,
    settings: Settings,
    *,
    backend_factory: BackendFactory | None = None,
    sandbox_factory: SandboxFactory | None = None,
    generate: bool = True,
) -> FamilyData:
    """Sample and execute what the caches lack (or fail, when `generate` is False)."""
    recorded = {str(k): str(v) for k, v in dict((plan.calibration or {}).get("models")
                                                 or {}).items()}
    backend_factory = backend_factory or _default_backend
    sandbox_factory = sandbox_factory or _default_sandbox
    sandbox: CalibrationSandbox | None = None
    fingerprints, data, prices = [], [], []
    generated: dict[str, int] = {}
    for member in plan.family:
        fingerprint = resolve_fingerprint(member, settings.out, recorded)
        fingerprints.append(fingerprint)
        cache = SampleCache(settings.out, member, fingerprint, settings.samples, settings.seed)
        missing = cache.missing(dataset.problems)
        generated[member.name] = 0
        if missing:
            if not generate:
                raise LookupError(
                    f"{member.name}: {len(missing)} of {len(dataset.problems)} problems are not "
                    f"in the sampling cache of {settings.out} (first: {missing[0].task_id})"
                )
            backend = backend_factory(member)
            try:
                generated[member.name] = sample_member(
                    cache, backend, dataset, concurrency=settings.concurrency,
                    progress=settings.progress,
                )
            finally:
                backend.close()
        executions = ExecutionCache(settings.out, member.name)
        on_examples = ExampleCache(settings.out, member.name)
        try:
            member_data = execute_member(dataset, cache, executions, None, progress=False,
                                         example_cache=on_examples)
        except LookupError:
            if not generate:
                raise
            if sandbox is None:
                sandbox = sandbox_factory()
            member_data = execute_member(dataset, cache, executions, sandbox,
                                         progress=settings.progress, example_cache=on_examples)
        data.append(member_data)
        if sandbox is not None:
            sandbox.close()
            sandbox = None
        price = stored_price(settings.out / "prices.json", member.name, fingerprint,
                             member.price_per_hour)
        if price is None:
            price = price_from_cache([d.samples for d in member_data], member.price_per_hour)
        prices.append(dataclasses.replace(price, price_per_mtok=member.price_per_mtok))
    return FamilyData(plan, dataset, fingerprints, data, prices, generated)


def pack_caches(out: Path, plan: Plan) -> None:
    """Fold the appended records into the committed gzip files."""
    from .store import RecordStore

    for member in plan.family:
        RecordStore(out / "samples" / member.name).pack()
        RecordStore(out / "executions" / member.name).pack()
        RecordStore(out / "examples" / member.name).pack()


@dataclasses.dataclass
class Search:
    family: FamilyData
    settings: Settings
    sim: Simulator
    split: Split
    grid: Grid
    choice: ThetaChoice
    tiers: list[int]  # grid rows of the tiers, cheapest first
    subset_means: dict[int, np.ndarray]  # grid row -> [4 metrics, 3 splits] over random subsets

    def value(self, row: int, metric: str, split_: int) -> float:
        return float(self.grid.metric(metric, split_)[row])


def search(family: FamilyData, settings: Settings) -> Search:
    sim = family.simulator(settings.samples)
    the_split = split(family.greedy_passed(), settings.split_seed)
    masks = the_split.masks()
    # The papers' plans and the plans that check the user's examples first, in one
    # search (METHOD.md 7.6-7.7).
    grid = Grid.concat([sim.grid(masks, per_boundary=settings.per_boundary, examples=flag)
                        for flag in (False, True)])
    choice = choose_theta(grid, settings.per_boundary)
    tiers = pick_tiers(choice.front, grid, settings.max_tiers)
    # Means over the draws from exact integer sums: one division per figure.
    scale = (np.array(UNITS, dtype=float)[:, None]
             * np.array([max(c, 1) for c in grid.sizes], dtype=float)[None, :] * SUBSET_DRAWS)
    subset_means = {}
    for row in choice.front:
        total = sum(sim.run_plan(grid.plans[row], grid.thetas[row], draw,
                                 grid.uses_examples(row)).sums(masks)
                    for draw in range(1, SUBSET_DRAWS + 1))
        subset_means[row] = np.asarray(total) / scale
    return Search(family, settings, sim, the_split, grid, choice, tiers, subset_means)


def pick_tiers(front: list[int], grid: Grid, max_tiers: int) -> list[int]:
    """Up to max_tiers front points: the cheapest, the most accurate, and between
    them the points nearest to evenly spaced validation accuracies (exact)."""
    if len(front) <= max_tiers:
        return list(front)
    acc = grid.exact("pass_at_1", VAL)
    lo, hi = acc[front[0]], acc[front[-1]]
    chosen = [front[0]]
    for j in range(1, max_tiers - 1):
        target = lo + (hi - lo) * Fraction(j, max_tiers - 1)
        candidates = [i for i in front if i not in chosen and i != front[-1]]
        if candidates:
            chosen.append(min(candidates, key=lambda i: (abs(acc[i] - target), i)))
    chosen.append(front[-1])
    return sorted(chosen, key=front.index)


TIER_NAMES = {
    1: ["balanced"],
    2: ["fast", "accurate"],
    3: ["fast", "balanced", "accurate"],
    4: ["fastest", "fast", "balanced", "accurate"],
    5: ["fastest", "fast", "balanced", "accurate", "most-accurate"],
}


def tier_names(n: int) -> list[str]:
    return TIER_NAMES.get(n) or [f"tier-{i + 1}" for i in range(n)]


def measured(search_: Search, row: int) -> dict[str, Any]:
    """A tier's measured figures, rounded so that they survive a YAML round trip."""
    out: dict[str, Any] = {}
    for name, sp in (("validation", VAL), ("test", TEST), ("all", ALL)):
        out[name] = {
            "problems": int(_split_size(search_.split, sp)),
            "pass_at_1": round(search_.value(row, "pass_at_1", sp), 4),
            "seconds_per_1k": round(1000 * search_.value(row, "seconds", sp), 1),
            "token_cost_per_1k": round(1000 * search_.value(row, "token_cost", sp), 6),
            "tokens_per_problem": round(search_.value(row, "tokens", sp), 1),
        }
    return out


def _split_size(s: Split, which: int) -> int:
    return int([s.validation.sum(), s.test.sum(), len(s.validation)][which])


__all__ = ["Settings", "load_family_data", "search", "pareto", "measured"]
