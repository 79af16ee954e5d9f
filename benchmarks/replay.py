"""Replaying cached generations through the live cascade (the simulator's check).

`CachedBackend` answers the engine's own stage specs from the sampling cache:
the first k cached sampled items (or the greedy ones for k <= 1), tests cut by
the spec's own stop rule, tokens counted up to the cut. `CachedSandbox` answers
pass matrices from the execution cache. `replay` runs every tier of a plan
through `engine.cascade.Cascade` on every problem and lists where the live
decisions differ from the simulator's: answering member, best solution,
accepted code and generated tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from cascode.engine.backends.scripted import ScriptedBackend
from cascode.engine.cascade import Cascade
from cascode.engine.extract import AssertStop
from cascode.engine.methods import executable_solution
from cascode.engine.plans import Plan
from cascode.engine.prompts import PROMPT_TEMPLATE_VERSION, solution_spec, unit_test_spec
from cascode.engine.types import (
    ExecutionLimits,
    Generation,
    PassMatrix,
    SampleSpec,
    Verdict,
)

from .execution import ProblemData
from .simulate import Option, Simulator, answer_item


class CachedBackend(ScriptedBackend):
    """One member's cached generations, served to the live engine's specs (cut by the
    base class, `engine.backends.scripted`)."""

    def __init__(self, name: str, data: Sequence[ProblemData],
                 template: int = PROMPT_TEMPLATE_VERSION) -> None:
        self.name = name
        self.by_prompt: dict[tuple[str, ...], ProblemData] = {}
        for d in data:
            task = d.problem.task
            solution = solution_spec(task, 1, sampled=False, template=template)
            test = unit_test_spec(task, 1, 2, sampled=False, template=template)
            self.by_prompt[_prompt(solution)] = d
            self.by_prompt[_prompt(test)] = d

    def pick(self, spec: SampleSpec, i: int) -> Generation:
        """The greedy cached item, or the i-th sampled one."""
        s = self.by_prompt[_prompt(spec)].samples
        is_test = isinstance(spec.stop, AssertStop)
        if spec.greedy:
            if spec.n != 1:
                raise ValueError("a greedy spec asks for one sequence")
            return s.greedy_test if is_test else s.greedy_solution
        pool = s.tests if is_test else s.solutions
        if spec.n > len(pool):
            raise ValueError(f"{spec.n} sequences asked, {len(pool)} cached")
        return pool[i]


def _prompt(spec: SampleSpec) -> tuple[str, ...]:
    # What tells a problem's prompts apart under every template.
    return (*(m.content for m in spec.messages), spec.prefix)


class CachedSandbox:
    """Pass matrices looked up in the execution cache (every member's)."""

    def __init__(self, data: Sequence[Sequence[ProblemData]]) -> None:
        self.verdicts: dict[tuple[str, str], bool] = {}
        self.seconds: dict[str, float] = {}
        for member_data in data:
            for d in member_data:
                lines = d.ex.unique_lines
                task = d.problem.task
                for i, candidate in enumerate(d.ex.unique_solutions):
                    # As the live stage sends it (a method put back in its class).
                    solution = executable_solution(task, candidate)
                    for j, line in enumerate(lines):
                        self.verdicts[(solution, line)] = bool(d.passed[i, j])
                    if lines:
                        self.seconds[solution] = float(d.row_seconds[i]) / len(lines)
                    if d.example_passed is not None:
                        for j, example in enumerate(d.examples):
                            self.verdicts[(solution, example.source)] = bool(
                                d.example_passed[i, j])

    available = True
    reason = ""

    def close(self) -> None:
        pass

    def run_matrix(self, solutions: Sequence[str], tests: Sequence[str], *, context: str = "",
                   limits: ExecutionLimits | None = None) -> PassMatrix:
        rows = tuple(
            tuple(Verdict.PASSED if self.verdicts[(s, t)] else Verdict.FAILED for t in tests)
            for s in solutions
        )
        seconds = sum(self.seconds.get(s, 0.0) * len(tests) for s in solutions)
        return PassMatrix(rows, seconds)


def tier_option(plan: Plan, tier: str, slots: Sequence[int] | None = None
                ) -> tuple[tuple[Option, ...], tuple[int, ...]]:
    """A tier as the simulator's plan row: (k, l) per slot, thetas in tenths
    (whether it uses examples: `plan.tiers[tier].examples`). `slots` are the
    simulator's (a slot per member, and the last member's second stage)."""
    stages = plan.tier(tier).stages
    slots = list(slots) if slots is not None else list(range(len(plan.family)))
    options: list[Option] = [(-1, 0)] * len(slots)
    for s in stages:
        free = [i for i, m in enumerate(slots) if m == s.index and options[i] == (-1, 0)]
        if not free:
            raise ValueError(f"tier {tier}: {s.member.name} runs more often than the "
                             "simulator has slots for it")
        options[free[0]] = (s.k, s.l)
    # One theta per boundary; a single stage's own (its rule uses it with examples).
    thetas = tuple(int(s.theta * 10) for s in stages[:-1]) or (int(stages[-1].theta * 10),)
    for s in stages:
        if s.theta * 10 != int(s.theta * 10):
            raise ValueError(f"tier {tier}: theta {float(s.theta)} is not in tenths")
    return tuple(options), thetas


def replay(plan: Plan, sim: Simulator, tiers: Sequence[str] | None = None,
           template: int | None = None) -> list[str]:
    """Run every tier through the live cascade from the caches (sampled with the
    plan's template unless `template` says otherwise); the differences."""
    members = list(sim.members)
    if template is None:
        template = plan.template or PROMPT_TEMPLATE_VERSION
    backends = {name: CachedBackend(name, sim.data[m], template)
                for m, name in enumerate(members)}
    cascade = Cascade(plan, backends, CachedSandbox(sim.data), template=template)
    problems: list[str] = []
    for tier in tiers or list(plan.tiers):
        options, thetas = tier_option(plan, tier, sim.slots)
        run = sim.run_plan(options, thetas, examples=plan.tiers[tier].examples)
        for p in range(sim.n_problems):
            d0 = sim.data[0][p]
            result = cascade.run(d0.problem.task, tier)
            slot = int(run.answered_by[p])
            m = sim.slots[slot]
            d = sim.data[m][p]
            k = options[slot][0]
            item = answer_item(k, int(run.best[p]))
            where = f"tier {tier}, {d0.problem.task_id}"
            if result.member != members[m]:
                problems.append(f"{where}: cascade answered with {result.member}, "
                                f"simulator with {members[m]}")
                continue
            if result.accepted_stage.best != int(run.best[p]):
                problems.append(f"{where}: best solution {result.accepted_stage.best} vs "
                                f"{int(run.best[p])}")
            if result.code != d.ex.solutions[item]:
                problems.append(f"{where}: accepted code differs")
            if run.verified is not None and result.verified != bool(run.verified[p]):
                problems.append(f"{where}: verified {result.verified} vs "
                                f"{bool(run.verified[p])}")
            if result.generated_tokens != int(run.tokens[p]):
                problems.append(f"{where}: {result.generated_tokens} generated tokens vs "
                                f"{int(run.tokens[p])}")
    return problems
