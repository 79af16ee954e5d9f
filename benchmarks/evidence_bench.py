"""Which evidence makes an accepted answer right more often (docs/method.md 8.4)?

For each tier of a plan, on a split of a data set whose caches are complete, it takes
the answer the simulator gives (the live cascade's, `Simulator.run_plan`) and asks of
it what kinds of evidence beyond its own stage's rule hold:

- **cross tests**: the answer against the *other* member's generated asserts (the
  larger member's tests judging the smaller one's answer, and the reverse), and the
  family's CodeT choice: the candidate with the best dual-agreement score when every
  candidate of both members meets every test line of both;
- **behavioural agreement** (AlphaCode's clustering by outputs): each candidate is run
  on the calls that the generated asserts and the examples make (their arguments, not
  their expected values), and two candidates agree when they return the same values
  (or raise the same exceptions) on every one of them;
- **rule asserts** (with `--rules`): each member writes, greedily, one assert per rule
  the docstring states in words (`prompts.rule_test_spec`: a `# Rule:` comment, then an
  assert; exceptions through `raises`), and the answer is run against its own member's,
  the other member's, and both members' rule asserts;

and counts, per kind, how many answers it accepts and how many of those pass the hidden
tests: the precision of acceptance, with its 95% interval. Nothing here is used by the
engine; it measures what the engine could use.

    python -m cascode.benchmarks.evidence_bench plans/default.yaml \\
        --dataset realcode:calibration --cache benchmarks/results/realcode

The extra executions (every candidate against every test line of the family, every
candidate's outputs) are cached in CACHE/evidence/ and take a few minutes of sandbox
time, no model. With `--rules`, the rule asserts each member lacks are generated first
(one greedy request per member and problem, through the member's backend: the machine's
model server by default), cached in CACHE/evidence/rules/<member>; `--offline` then
refuses to generate them. What the calibration's caches lack is executed too (like `cascode
evaluate`); sample first (`cascode calibrate ... --sample-only`).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cascode.engine.extract import builds_class
from cascode.engine.methods import (
    AFTER_VERSION,
    GRAFT_VERSION,
    run_candidates,
    task_context,
)
from cascode.engine.prompts import (
    PROMPT_TEMPLATE_VERSION,
    RULES_HELPER,
    RULES_VERSION,
    rule_lines,
    rule_test_spec,
)
from cascode.engine.scoring import solution_scores
from cascode.engine.types import Task, Verdict

from .calibrate import FamilyData, Settings, load_family_data
from .evaluate import wilson
from .execution import CalibrationSandbox, ProblemData
from .replay import tier_option
from .sampling import generation_from_dict, generation_to_dict, spec_fingerprint
from .simulate import answer_item
from .store import RecordStore, digest

FORMAT = 1
BITS = 8  # bits of an output's hash, one assert line each
MAX_PROBES = 24

# Defined after the file context: an output's hash, bit by bit. Iterators are listed,
# sets sorted, addresses dropped, so that equal values give equal hashes in any process.
PROBE_HELPER = '''
def __cascode_canon(v, depth=0):
    import re as _re
    if depth > 20:
        return "..."
    if isinstance(v, (set, frozenset)):
        items = sorted(__cascode_canon(x, depth + 1) for x in v)
        return type(v).__name__ + "{" + ",".join(items) + "}"
    if isinstance(v, (list, tuple)):
        items = [__cascode_canon(x, depth + 1) for x in v]
        return type(v).__name__ + "(" + ",".join(items) + ")"
    if isinstance(v, dict):
        items = [__cascode_canon(k, depth + 1) + ":" + __cascode_canon(x, depth + 1)
                 for k, x in v.items()]
        return "dict{" + ",".join(items) + "}"
    if hasattr(v, "__next__") and hasattr(v, "__iter__"):
        import itertools as _it
        return "iter(" + ",".join(__cascode_canon(x, depth + 1) for x in _it.islice(v, 1000)) + ")"
    return _re.sub(r" at 0x[0-9a-fA-F]+", "", repr(v))

__cascode_seen = {}

def __cascode_bit(i, thunk, bit):
    import hashlib as _h
    if i not in __cascode_seen:
        try:
            text = __cascode_canon(thunk())
        except BaseException as e:
            text = "raises " + type(e).__name__
        __cascode_seen[i] = int(_h.sha256(text.encode()).hexdigest(), 16)
    return (__cascode_seen[i] >> bit) & 1 == 1
'''


def probes(problem_data: Sequence[ProblemData]) -> list[str]:
    """The calls of the function under test in the family's generated assert lines and
    the problem's examples (one-statement examples only): the inputs candidates are
    compared on. Outermost calls, first seen first, at most MAX_PROBES."""
    first = problem_data[0]
    # A method's probes are the outermost calls that build its class (`Store(1).add(2)`).
    task = first.problem.task
    ep = task.method_of.split(".")[0] if task.method_of else task.entry_point
    sources = [e.source for e in first.examples]
    for d in problem_data:
        sources.extend(d.ex.unique_lines)
    found: dict[str, None] = {}
    for source in sources:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        if len(tree.body) != 1:
            continue
        for node in _outer_calls(tree.body[0], ep, bool(task.method_of)):
            found.setdefault(ast.unparse(node))
    return list(found)[:MAX_PROBES]


def _outer_calls(node: ast.AST, ep: str, method: bool = False) -> list[ast.Call]:
    if isinstance(node, ast.Call) and (
            builds_class(node, ep) if method
            else isinstance(node.func, ast.Name) and node.func.id == ep):
        return [node]
    out: list[ast.Call] = []
    for child in ast.iter_child_nodes(node):
        out.extend(_outer_calls(child, ep, method))
    return out


def probe_lines(calls: Sequence[str]) -> list[str]:
    return [f"assert __cascode_bit({i}, lambda: {call}, {bit})"
            for i, call in enumerate(calls) for bit in range(BITS)]


@dataclasses.dataclass
class Family:
    """One problem's candidates of every member, pooled (unique), with what they pass."""

    owner: list[int]  # candidate -> first member that wrote it
    solutions: list[str]
    lines: list[str]  # every valid unique line of every member
    line_owner: list[int]
    passed: np.ndarray  # bool [candidates, lines]
    signature: list[tuple[int, ...]]  # candidate -> output hash byte per probe
    hidden: np.ndarray  # bool [candidates]
    n_probes: int
    # Rule asserts (`--rules`): every member's valid lines, who wrote each, and which
    # candidates pass them.
    rule_lines: list[str] = dataclasses.field(default_factory=list)
    rule_owner: list[int] = dataclasses.field(default_factory=list)
    rule_passed: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((0, 0), dtype=bool))


def family_of(problem_data: Sequence[ProblemData], store: RecordStore,
              sandbox: Callable[[], CalibrationSandbox]) -> Family:
    owner: list[int] = []
    solutions: list[str] = []
    hidden: list[bool] = []
    for m, d in enumerate(problem_data):
        for i, s in enumerate(d.ex.unique_solutions):
            if s not in solutions:
                solutions.append(s)
                owner.append(m)
                hidden.append(bool(d.hidden[i]))
    lines, line_owner = _pooled(
        [d.ex.unique_lines[i] for i in sorted({i for row in d.ex.test_lines for i in row
                                               if i >= 0})]
        for d in problem_data)
    task = problem_data[0].problem.task
    calls = probes(problem_data)
    context = task_context(task)
    key = digest({"format": FORMAT, "context": task.context, "solutions": solutions,
                  "lines": lines, "probes": calls, "bits": BITS, **_method_key(task)})
    record = store.get(key)
    if record is None:
        box = sandbox()
        record = {"key": key, "task_id": problem_data[0].problem.task_id,
                  "verdicts": _verdicts(box, task, solutions, lines, context),
                  "bits": _verdicts(box, task, solutions, probe_lines(calls),
                                    context + PROBE_HELPER)}
        store.append(record)
    passed = _passed(record["verdicts"], len(solutions), len(lines))
    signature = []
    for row in record["bits"]:
        byte = []
        for p in range(len(calls)):
            chunk = row[p * BITS:(p + 1) * BITS]
            byte.append(sum((v == int(Verdict.PASSED)) << b for b, v in enumerate(chunk)))
        signature.append(tuple(byte))
    return Family(owner, solutions, lines, line_owner, passed, signature,
                  np.asarray(hidden, dtype=bool), len(calls))


def _pooled(groups: Iterable[Iterable[str]]) -> tuple[list[str], list[int]]:
    """Every group's items once, in order, each with the index of the first group that
    has it."""
    items: list[str] = []
    owner: list[int] = []
    for g, group in enumerate(groups):
        for item in group:
            if item not in items:
                items.append(item)
                owner.append(g)
    return items, owner


def _method_key(task: Task) -> dict[str, Any]:
    """What of a task beside its context keys its executions: a method's class (its
    candidates run in it), the file's definitions below the function (run after each
    candidate)."""
    key: dict[str, Any] = ({"method_of": [task.method_of, task.descriptors, GRAFT_VERSION]}
                           if task.method_of else {})
    if task.context_after:
        key["after"] = [digest(task.context_after), AFTER_VERSION]
    return key


def _verdicts(box: CalibrationSandbox, task: Task, solutions: Sequence[str],
              lines: Sequence[str], context: str) -> list[list[int]]:
    """Each candidate (run as the task runs it) against every line, after `context`."""
    if not lines:
        return [[] for _ in solutions]
    return [[int(v) for v in run_candidates(box, task, [s], lines, context=context).verdicts[0]]
            for s in solutions]


def _passed(verdicts: Sequence[Sequence[int]], n_solutions: int, n_lines: int) -> np.ndarray:
    passed = np.zeros((n_solutions, n_lines), dtype=bool)
    for i, row in enumerate(verdicts):
        if row:
            passed[i] = np.asarray(row) == int(Verdict.PASSED)
    return passed


# -- rule asserts (docs/method.md 8.1) --------------------------------------------------

class RuleCache:
    """One member's rule asserts, a greedy reply per problem, in CACHE/evidence/rules/
    <member>, keyed by the member's model fingerprint, the request and RULES_VERSION."""

    def __init__(self, out_dir: Path, member: str, fingerprint: str) -> None:
        self.store = RecordStore(out_dir / "evidence" / "rules" / member)
        self.member = member
        self.fingerprint = fingerprint

    def key(self, problem: Any) -> str:
        return digest({"model": self.fingerprint, "version": RULES_VERSION,
                       "spec": spec_fingerprint(rule_test_spec(problem.task))})

    def lines(self, problem: Any) -> list[str] | None:
        record = self.store.get(self.key(problem))
        if record is None:
            return None
        return rule_lines(problem.task, generation_from_dict(record["reply"]).text)

    def missing(self, problems: Sequence[Any]) -> list[Any]:
        return [p for p in problems if self.key(p) not in self.store]

    def sample(self, backend: Any, problems: Sequence[Any], progress: bool = True) -> int:
        """Generate the missing replies, each written before the next problem starts."""
        from tqdm import tqdm

        todo = self.missing(problems)
        for problem in tqdm(todo, desc=f"rule asserts of {self.member}", unit="problem",
                            disable=not progress or not todo, dynamic_ncols=True):
            [[reply]] = backend.sample([rule_test_spec(problem.task)])
            self.store.append({"key": self.key(problem), "task_id": problem.task_id,
                               "member": self.member, "reply": generation_to_dict(reply)})
        return len(todo)


def add_rules(fam: Family, problem_data: Sequence[ProblemData],
              rules: Sequence[Sequence[str]], store: RecordStore,
              sandbox: Callable[[], CalibrationSandbox]) -> Family:
    """`fam` with every member's rule asserts (`rules[m]`) and which of its candidates
    pass them (run after the file context and RULES_HELPER, cached in `store`)."""
    lines, owner = _pooled(rules)
    task = problem_data[0].problem.task
    key = digest({"format": FORMAT, "rules": RULES_VERSION, "context": task.context,
                  "solutions": fam.solutions, "lines": lines, **_method_key(task)})
    record = store.get(key)
    if record is None:
        verdicts = _verdicts(sandbox(), task, fam.solutions, lines,
                             task_context(task) + RULES_HELPER)
        record = {"key": key, "task_id": problem_data[0].problem.task_id,
                  "verdicts": verdicts}
        store.append(record)
    passed = _passed(record["verdicts"], len(fam.solutions), len(lines))
    return dataclasses.replace(fam, rule_lines=lines, rule_owner=owner, rule_passed=passed)


# -- the kinds of evidence, of one answer (candidate `c` of member `m`) ------------------

def _others(fam: Family, m: int) -> list[int]:
    return [i for i, o in enumerate(fam.owner) if o != m]


def cross_all(fam: Family, c: int, m: int) -> bool:
    """The answer passes every line the other members wrote (and they wrote some)."""
    cols = [j for j, o in enumerate(fam.line_owner) if o != m]
    return bool(cols) and bool(fam.passed[c, cols].all())


def cross_half(fam: Family, c: int, m: int) -> bool:
    cols = [j for j, o in enumerate(fam.line_owner) if o != m]
    return bool(cols) and 2 * int(fam.passed[c, cols].sum()) >= len(cols)


def family_choice(fam: Family, c: int, m: int) -> bool:
    """The answer has the best CodeT score over every candidate and line of the family."""
    if not fam.lines:
        return False
    scores = solution_scores(fam.passed.tolist())
    return scores[c] > 0 and scores[c] == max(scores)


def agrees_with_other(fam: Family, c: int, m: int) -> bool:
    """Another member wrote a candidate with the answer's outputs on every probe."""
    return fam.n_probes > 0 and any(fam.signature[i] == fam.signature[c]
                                    for i in _others(fam, m))


def largest_cluster(fam: Family, c: int, m: int) -> bool:
    """The answer's outputs are those of the most candidates of the family, and of more
    than one member."""
    if fam.n_probes == 0:
        return False
    sizes: dict[tuple[int, ...], int] = {}
    for s in fam.signature:
        sizes[s] = sizes.get(s, 0) + 1
    mine = fam.signature[c]
    return sizes[mine] == max(sizes.values()) and agrees_with_other(fam, c, m)


def _rules_pass(fam: Family, c: int, cols: list[int]) -> bool:
    return bool(cols) and bool(fam.rule_passed[c, cols].all())


def own_rules(fam: Family, c: int, m: int) -> bool:
    """The answer passes every rule assert its own member wrote (and it wrote some)."""
    return _rules_pass(fam, c, [j for j, o in enumerate(fam.rule_owner) if o == m])


def other_rules(fam: Family, c: int, m: int) -> bool:
    """The answer passes every rule assert the other members wrote."""
    return _rules_pass(fam, c, [j for j, o in enumerate(fam.rule_owner) if o != m])


def all_rules(fam: Family, c: int, m: int) -> bool:
    """The answer passes every rule assert of every member (and there are some)."""
    return _rules_pass(fam, c, list(range(len(fam.rule_lines))))


def rules_codet(fam: Family, c: int, m: int) -> bool:
    """The answer has the best CodeT score over every candidate of the family with every
    generated line and rule assert of the family."""
    if not fam.rule_lines:
        return False
    passed = np.concatenate([fam.passed, fam.rule_passed], axis=1)
    scores = solution_scores(passed.tolist())
    return scores[c] > 0 and scores[c] == max(scores)


KINDS: dict[str, Callable[[Family, int, int], bool]] = {
    "other member's asserts: all pass": cross_all,
    "other member's asserts: at least half pass": cross_half,
    "family's CodeT choice": family_choice,
    "same outputs as another member's candidate": agrees_with_other,
    "largest cluster of outputs, across members": largest_cluster,
}
RULE_KINDS: dict[str, Callable[[Family, int, int], bool]] = {
    "own member's rule asserts: all pass": own_rules,
    "other member's rule asserts: all pass": other_rules,
    "both members' rule asserts: all pass": all_rules,
    "family's CodeT choice with rule asserts": rules_codet,
}


@dataclasses.dataclass
class Count:
    of: int = 0
    right: int = 0

    def add(self, right: bool) -> None:
        self.of += 1
        self.right += int(right)

    def text(self, total: int) -> str:
        if not self.of:
            return f"0 of {total} | - | -"
        lo, hi = wilson(self.right, self.of)
        return (f"{self.of} of {total} ({100 * self.of / total:.0f}%) | "
                f"{self.right} ({100 * self.right / self.of:.0f}%) | "
                f"{100 * lo:.0f}-{100 * hi:.0f}%")


def measure(family: FamilyData, samples: int, tiers: Sequence[str], store: RecordStore,
            sandbox: Callable[[], CalibrationSandbox],
            rules: Sequence[Sequence[Sequence[str]]] | None = None,
            rule_store: RecordStore | None = None) -> dict[str, dict[str, Count]]:
    """`rules[m][p]`: member m's rule asserts for problem p (None: not measured)."""
    plan = family.plan
    sim = family.simulator(samples, repeat_last=True)
    n = sim.n_problems
    members = range(len(family.members))
    fams = [family_of([family.data[m][p] for m in members], store, sandbox) for p in range(n)]
    store.pack()
    kinds = dict(KINDS)
    if rules is not None:
        assert rule_store is not None
        fams = [add_rules(fams[p], [family.data[m][p] for m in members],
                          [rules[m][p] for m in members], rule_store, sandbox)
                for p in range(n)]
        rule_store.pack()
        kinds.update(RULE_KINDS)
    out: dict[str, dict[str, Count]] = {}
    for name in tiers:
        options, thetas = tier_option(plan, name, sim.slots)
        tier = plan.tiers[name]
        run = sim.run_plan(options, thetas, examples=tier.examples)
        assert run.verified is not None
        counts: dict[str, Count] = {"all answers": Count(), "met its stage's rule": Count()}
        for kind in kinds:
            counts[kind] = Count()
            counts["rule met and " + kind] = Count()
        for p in range(n):
            slot = int(run.answered_by[p])
            m = sim.slots[slot]
            k = options[slot][0]
            item = answer_item(k, int(run.best[p]))
            d = family.data[m][p]
            solution = d.ex.unique_solutions[d.ex.solution_index[item]]
            fam = fams[p]
            c = fam.solutions.index(solution)
            right = bool(run.passed[p])
            counts["all answers"].add(right)
            if run.verified[p]:
                counts["met its stage's rule"].add(right)
            for kind, holds in kinds.items():
                if holds(fam, c, m):
                    counts[kind].add(right)
                    if run.verified[p]:
                        counts["rule met and " + kind].add(right)
        out[name] = counts
    return out


def sample_rules(family: FamilyData, out: Path, *, generate: bool,
                 progress: bool = True) -> list[list[list[str]]]:
    """Every member's rule asserts for every problem of `family` (generated where the
    cache lacks them, unless not `generate`: then a LookupError names what is missing)."""
    from cascode.engine.backends import create_backend

    problems = [d.problem for d in family.data[0]]
    out_rules = []
    for member, fingerprint in zip(family.plan.family, family.fingerprints, strict=True):
        cache = RuleCache(out, member.name, fingerprint)
        missing = cache.missing(problems)
        if missing:
            if not generate:
                raise LookupError(
                    f"{member.name}: rule asserts for {len(missing)} of {len(problems)} "
                    f"problems are not in {cache.store.packed} (first: {missing[0].task_id}); "
                    "run without --offline to generate them")
            backend = create_backend(member)
            try:
                cache.sample(backend, missing, progress=progress)
            finally:
                backend.close()
        cache.store.pack()
        out_rules.append([cache.lines(p) or [] for p in problems])
    return out_rules


def table(results: dict[str, dict[str, Count]], n: int) -> str:
    rows = ["| tier | evidence | answers accepted | right | 95% interval |",
            "|---|---|---|---|---|"]
    for tier, counts in results.items():
        for kind, count in counts.items():
            rows.append(f"| {tier} | {kind} | {count.text(n)} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cascode.benchmarks.evidence_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path)
    parser.add_argument("--dataset", required=True, help="e.g. realcode:calibration")
    parser.add_argument("--tasks", help="task ids or index ranges, e.g. `0-13`")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--tiers", help="comma-separated (default: every tier)")
    parser.add_argument("--out", type=Path, help="JSON of the counts")
    parser.add_argument("--offline", action="store_true",
                        help="generate and execute nothing the caches lack")
    parser.add_argument("--rules", action="store_true",
                        help="also measure asserts written per rule of the docstring "
                             "(generated once per member and problem, then cached)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--unsafe-sandbox", action="store_true")
    args = parser.parse_args(argv)

    from cascode.engine.plans import load_plan

    from .cli_calibrate import _sandbox_factory
    from .datasets import load_dataset, select

    plan = load_plan(args.plan)
    dataset = select(load_dataset(args.dataset), tasks=args.tasks)
    settings = Settings(out=args.cache, samples=args.samples, progress=False,
                        template=plan.template or PROMPT_TEMPLATE_VERSION)
    family = load_family_data(plan, dataset, settings, generate=not args.offline,
                              sandbox_factory=_sandbox_factory(args.unsafe_sandbox))
    tiers = args.tiers.split(",") if args.tiers else list(plan.tiers)
    boxes: list[CalibrationSandbox] = []

    def sandbox() -> CalibrationSandbox:
        if not boxes:
            boxes.append(_sandbox_factory(args.unsafe_sandbox)())
        return boxes[0]

    rules = None
    if args.rules:
        rules = sample_rules(family, args.cache, generate=not args.offline,
                             progress=not args.no_progress)
    store = RecordStore(args.cache / "evidence" / "family")
    try:
        results = measure(family, args.samples, tiers, store, sandbox, rules,
                          RecordStore(args.cache / "evidence" / "rule-runs"))
    finally:
        for box in boxes:
            box.close()
    n = len(dataset.problems)
    print(f"{args.plan} on {args.dataset} ({n} problems)\n")
    written: dict[str, dict[str, int]] = {}
    if rules is not None:
        for member, by_problem in zip(family.members, rules, strict=True):
            written[member] = {"problems_with_rules": sum(bool(r) for r in by_problem),
                               "rule_asserts": sum(len(r) for r in by_problem)}
            print(f"{member}: rule asserts for {written[member]['problems_with_rules']} of {n} "
                  f"problems, {written[member]['rule_asserts']} in all")
        print()
    print(table(results, n))
    if args.out:
        data: dict[str, Any] = {"plan": str(args.plan), "dataset": args.dataset,
                                "problems": n, **({"rules": written} if written else {}),
                                "tiers": {
                                    t: {k: dataclasses.asdict(c) for k, c in by.items()}
                                    for t, by in results.items()}}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
