"""The calibration pipeline (docs/method.md 4): sample, execute, simulate, search, write.

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
from cascode.engine.prompts import PROMPT_TEMPLATE_VERSION
from cascode.engine.types import Backend

from .datasets import Dataset, Problem
from .execution import (
    CalibrationSandbox,
    ExampleCache,
    ExecutionCache,
    ProblemData,
    execute_member,
)
from .prices import MemberPrice, price_from_cache, stored_price
from .sampling import SampleCache, resolve_fingerprint, sample_member
from .search import (
    ALL,
    TEST,
    VAL,
    Split,
    ThetaChoice,
    choose_theta,
    pareto,
    saving_vs_front,
    split,
)
from .simulate import UNITS, Grid, Simulator
from .store import RecordStore, digest

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
    # The last member may run twice: greedily, then sampling (docs/method.md 7.4).
    repeat_last: bool = True
    max_tiers: int = 4
    concurrency: int = 1
    progress: bool = True
    # The prompt template sampled with (engine/prompts.py); recorded in the plan.
    template: int = PROMPT_TEMPLATE_VERSION


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

    def simulator(self, n_samples: int, repeat_last: bool = False) -> Simulator:
        return Simulator(self.members, self.data, self.prices, n_samples, repeat_last)

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


def fit_prompt_contexts(plan: Plan, dataset: Dataset, out: Path, *,
                        backend_factory: BackendFactory | None = None,
                        generate: bool = True) -> Dataset:
    """The dataset with each budgeted task's prompt context fitted as the live cascade
    fits it (engine/context/budget.py: the first member's tokenizer), so that what is
    sampled is what the editor sends. The fitted contexts are cached in
    `OUT/contexts/<first member>`, keyed by the tokenizer's model and the budget, so
    that an offline run needs no model."""
    todo = [p for p in dataset.problems
            if p.task.context_budget is not None and p.task.prompt_context is None]
    if not todo:
        return dataset
    from cascode.engine.context.budget import token_counter, with_prompt_context

    first = plan.family[0]
    recorded = {str(k): str(v) for k, v in dict((plan.calibration or {}).get("models")
                                                 or {}).items()}
    fingerprint = resolve_fingerprint(first, out, recorded)
    store = RecordStore(out / "contexts" / first.name)

    def key(p: Problem) -> str:
        budget = p.task.context_budget
        assert budget is not None
        fields: dict[str, object] = {"model": fingerprint, "shared": list(budget.shared),
                                     "helpers": list(budget.helpers), "tokens": budget.tokens}
        if budget.enclosing is not None:  # a top-level function's key is as it was
            fields["enclosing"] = budget.enclosing
        return digest(fields)

    missing = [p for p in todo if key(p) not in store]
    if missing:
        if not generate:
            raise LookupError(f"{first.name}: {len(missing)} prompt contexts are not in "
                              f"{out / 'contexts'} (first: {missing[0].task_id})")
        backend = (backend_factory or _default_backend)(first)
        try:
            count = token_counter(backend)
            for p in missing:
                fitted = with_prompt_context(p.task, count).prompt_context
                store.append({"key": key(p), "task_id": p.task_id, "prompt_context": fitted})
        finally:
            backend.close()
        store.pack()
    fitted_tasks = {p.task_id: dataclasses.replace(
        p.task, prompt_context=store.get(key(p))["prompt_context"])  # type: ignore[index]
        for p in todo}
    problems = tuple(dataclasses.replace(p, task=fitted_tasks[p.task_id])
                     if p.task_id in fitted_tasks else p for p in dataset.problems)
    return Dataset(dataset.name, problems, dataset.source)


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
    dataset = fit_prompt_contexts(plan, dataset, settings.out, backend_factory=backend_factory,
                                  generate=generate)
    sandbox: CalibrationSandbox | None = None
    fingerprints, data, prices = [], [], []
    generated: dict[str, int] = {}
    for member in plan.family:
        fingerprint = resolve_fingerprint(member, settings.out, recorded)
        fingerprints.append(fingerprint)
        cache = SampleCache(settings.out, member, fingerprint, settings.samples, settings.seed,
                            settings.template)
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
        _count_prompts(member, cache, dataset, backend_factory, generate)
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


def _count_prompts(member: Member, cache: SampleCache, dataset: Dataset,
                   backend_factory: BackendFactory, generate: bool) -> None:
    """Count the test prompt tokens a stage evaluates for records sampled before the
    backend recorded them, where the member's backend has a tokenizer (llama.cpp).
    Records left uncounted (--offline, remote members) are charged their whole test
    prompt."""
    uncounted = cache.uncounted(dataset.problems)
    if not uncounted or member.backend != "llama_cpp":
        return
    if not generate:
        log.warning("%s: %d cached problems have no count of the prompt tokens a stage "
                    "evaluates; their whole test prompt is charged (run without --offline "
                    "to count them)", member.name, len(uncounted))
        return
    backend = backend_factory(member)
    try:
        if hasattr(backend, "tokenize") and hasattr(backend, "render"):
            cache.count_prompts(backend, uncounted)
    finally:
        backend.close()


def pack_caches(out: Path, plan: Plan) -> None:
    """Fold the appended records into the committed gzip files."""
    from .store import RecordStore

    for member in plan.family:
        RecordStore(out / "samples" / member.name).pack()
        RecordStore(out / "executions" / member.name).pack()
        RecordStore(out / "examples" / member.name).pack()
        RecordStore(out / "prompts" / member.name).pack()


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
    default: int | None = None  # the grid row of the default tier

    def value(self, row: int, metric: str, split_: int) -> float:
        return float(self.grid.metric(metric, split_)[row])


def search(family: FamilyData, settings: Settings) -> Search:
    sim = family.simulator(settings.samples, settings.repeat_last)
    the_split = split(family.greedy_passed(), settings.split_seed)
    masks = the_split.masks()
    # The papers' plans and the plans that check the user's examples first, in one
    # search (docs/method.md 7.6-7.7).
    grid = Grid.concat([sim.grid(masks, per_boundary=settings.per_boundary, examples=flag)
                        for flag in (False, True)])
    choice = choose_theta(grid, settings.per_boundary)
    tiers, default = pick_tiers(tier_front(choice, grid), grid, settings.max_tiers)
    # Means over the draws from exact integer sums: one division per figure.
    scale = (np.array(UNITS, dtype=float)[:, None]
             * np.array([max(c, 1) for c in grid.sizes], dtype=float)[None, :] * SUBSET_DRAWS)
    subset_means = {}
    for row in choice.front:
        total = sum(sim.run_plan(grid.plans[row], grid.thetas[row], draw,
                                 grid.uses_examples(row)).sums(masks)
                    for draw in range(1, SUBSET_DRAWS + 1))
        subset_means[row] = np.asarray(total) / scale
    return Search(family, settings, sim, the_split, grid, choice, tiers, subset_means, default)


def tier_front(choice: ThetaChoice, grid: Grid) -> list[int]:
    """The front the tiers come from: the validation front, at the chosen theta, of
    the plans that check the user's examples (docs/method.md 7: an answer says what
    proved it, and a plan with examples labels what a plan without them leaves
    unverified, for the sandbox time of the examples); the chosen front when the
    grid has no such plan."""
    rows = [i for i in range(len(grid)) if grid.uses_examples(i)
            and grid.thetas[i] == grid.thetas[choice.front[0]]]
    if not rows:
        return list(choice.front)
    cost, acc = grid.exact("seconds", VAL), grid.exact("pass_at_1", VAL)
    return pareto(cost, acc, grid.exact("tokens", VAL), rows)


FAST_COST_RATIO = Fraction(11, 10)  # "about what the largest member's greedy answer costs"


def pick_tiers(front: list[int], grid: Grid, max_tiers: int) -> tuple[list[int], int]:
    """Up to max_tiers front points, cheapest first, and the default among them.

    The cheapest and the most accurate; with three or more, the point that saves
    most against the single-member front of its group at equal validation
    accuracy (where the cascade is the best deal: the default tier); with four or
    more, the most accurate point that costs at most 1.1 times the largest
    member's greedy answer (what a user of the big model alone pays); then the
    points nearest to evenly spaced validation accuracies. Exact comparisons."""
    if len(front) <= max_tiers:
        chosen = list(front)
    else:
        chosen = [front[0], front[-1]]
    acc, cost = grid.exact("pass_at_1", VAL), grid.exact("seconds", VAL)
    default = None
    saving = saving_vs_front(front, cost, acc, np.flatnonzero(grid.single_member()),
                             grid.groups(), grid.exact("tokens", VAL))
    inner = [(v, -j) for j, v in enumerate(saving.per_point)
             if v is not None and v > 0 and 0 < j < len(front) - 1]
    if inner and max_tiers >= 3:
        default = front[-max(inner)[1]]
        if default not in chosen:
            chosen.append(default)
    if max_tiers >= 4 and len(chosen) < max_tiers:
        budget = _largest_greedy_cost(grid, front)
        affordable = [i for i in front if i not in chosen and budget is not None
                      and cost[i] <= FAST_COST_RATIO * budget]
        if affordable:
            chosen.append(max(affordable, key=lambda i: (acc[i], -front.index(i))))
    lo, hi = acc[front[0]], acc[front[-1]]
    for j in range(1, max_tiers - 1):
        if len(chosen) >= max_tiers:
            break
        target = lo + (hi - lo) * Fraction(j, max_tiers - 1)
        candidates = [i for i in front if i not in chosen]
        if candidates:
            chosen.append(min(candidates, key=lambda i: (abs(acc[i] - target), i)))
    chosen = sorted(chosen, key=front.index)
    if default is None:
        default = chosen[len(chosen) // 2]
    return chosen, default


def _largest_greedy_cost(grid: Grid, front: list[int]) -> Fraction | None:
    """Validation cost of the largest member's greedy answer alone (the papers' plan),
    at the front's theta."""
    slots = grid.slots or tuple(range(len(grid.plans[0])))
    largest = max(slots)
    first = slots.index(largest)
    want = tuple((0, 0) if i == first else (-1, 0) for i in range(len(slots)))
    theta = grid.thetas[front[0]]
    for i in range(len(grid)):
        if grid.plans[i] == want and not grid.uses_examples(i) and grid.thetas[i] == theta:
            return grid.exact("seconds", VAL)[i]
    return None


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
