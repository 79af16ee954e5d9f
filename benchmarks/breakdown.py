"""A plan's tiers on a data set, taken apart: by the problems' labels (the real-code
set's kind, and whether the user wrote examples), by the evidence an answer labelled
verified rests on, against the ceiling of what better selection could reach (pass@k
of each member's cached samples), and where a member's time goes.

Everything comes from the calibration's simulator and caches (the same functions as
`cascode evaluate`), on the problems of one split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from math import comb

import numpy as np

from cascode.engine.evidence import KINDS, Rate, evidence_kind
from cascode.engine.plans import Plan

from .calibrate import FamilyData
from .evaluate import wilson
from .replay import tier_option

CEILING_KS = (1, 3, 5, 10)


@dataclasses.dataclass(frozen=True)
class Count(Rate):
    """`right` of `n` (the engine's Rate: `of`), with the share and its 95% Wilson
    interval."""

    @property
    def n(self) -> int:
        return self.of

    @property
    def share(self) -> float | None:
        return self.precision

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.right, self.of)


@dataclasses.dataclass(frozen=True)
class GroupRow:
    """One tier (or a member's greedy answer) on the problems of one group."""

    what: str
    group: str  # "all", "kind: method", "examples: no", ...
    passed: Count
    verified: Count | None  # answers labelled verified, of all (None: never labelled)
    precision: Count | None  # labelled verified and right, of those labelled


@dataclasses.dataclass(frozen=True)
class Breakdown:
    split: str
    problems: int
    groups: list[GroupRow]
    evidence: dict[str, dict[str, Count]]  # tier -> evidence -> right of labelled verified
    ceiling: dict[str, dict[int, float]]  # member -> k -> pass@k (unbiased, n samples)
    any_right: dict[str, Count]  # member -> problems where any cached candidate is right
    time: dict[str, dict[str, float]]  # member -> what -> seconds a problem (priced)


def _groups(family: FamilyData, mask: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """("all", mask), then one mask per value of each label the problems carry."""
    problems = family.dataset.problems
    out = [("all", mask)]
    keys = sorted({k for p in problems for k, _ in p.labels} - {"project", "split"})
    for key in keys:
        values = sorted({p.label(key) for p in problems})
        for value in values:
            group = np.array([p.label(key) == value for p in problems]) & mask
            out.append((f"{key}: {value}", group))
    return out


def breakdown(plan: Plan, family: FamilyData, n_samples: int, mask: np.ndarray,
              tiers: Sequence[str], split: str) -> Breakdown:
    sim = family.simulator(n_samples, repeat_last=True)
    groups = _groups(family, mask)
    rows: list[GroupRow] = []
    evidence: dict[str, dict[str, Count]] = {}
    has_examples = np.array([bool(d.examples) for d in family.data[0]])
    for name in tiers:
        options, thetas = tier_option(plan, name, sim.slots)
        run = sim.run_plan(options, thetas, examples=plan.tiers[name].examples)
        verified = run.verified if run.verified is not None else np.zeros_like(run.passed)
        for group, g in groups:
            rows.append(_row(name, group, run.passed, verified, g))
        tested = np.array([options[slot][0] >= 1 for slot in run.answered_by])
        # The live label's classifier (engine/evidence.py), elementwise; a tier that
        # does not use examples runs without them.
        used = has_examples & plan.tiers[name].examples
        index = evidence_kind(used.astype(np.int64), tested.astype(np.int64))
        kinds = {kind: verified & (index == i) for i, kind in enumerate(KINDS)}
        evidence[name] = {k: Count(int((v & run.passed & mask).sum()), int((v & mask).sum()))
                          for k, v in kinds.items()}
    for m, member in enumerate(family.members):
        greedy = np.array([d.hidden[d.ex.solution_index[0]] for d in family.data[m]])
        for group, g in groups:
            rows.append(_row(f"{member} greedy", group, greedy, None, g))
    ceiling, any_right = {}, {}
    for m, member in enumerate(family.members):
        correct = np.array([_sampled_right(d, n_samples) for d in family.data[m]])
        ceiling[member] = {k: float(np.mean([_pass_at_k(n_samples, c, k)
                                             for c in correct[mask]])) if mask.any() else 0.0
                           for k in CEILING_KS if k <= n_samples}
        anyone = np.array([bool(d.hidden.any()) for d in family.data[m]])
        any_right[member] = Count(int((anyone & mask).sum()), int(mask.sum()))
    return Breakdown(split, int(mask.sum()), rows, evidence, ceiling, any_right,
                     _time(family, mask))


def _row(what: str, group: str, passed: np.ndarray, verified: np.ndarray | None,
         g: np.ndarray) -> GroupRow:
    right = Count(int(passed[g].sum()), int(g.sum()))
    if verified is None:
        return GroupRow(what, group, right, None, None)
    return GroupRow(what, group, right, Count(int(verified[g].sum()), int(g.sum())),
                    Count(int((verified & passed)[g].sum()), int(verified[g].sum())))


def _sampled_right(d: object, n: int) -> int:
    """How many of the first n sampled solutions pass the hidden tests."""
    index = d.ex.solution_index  # type: ignore[attr-defined]
    hidden = d.hidden  # type: ignore[attr-defined]
    return int(sum(bool(hidden[index[i]]) for i in range(1, min(n, len(index) - 1) + 1)))


def _pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator of pass@k from n samples of which c are right."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def _time(family: FamilyData, mask: np.ndarray) -> dict[str, dict[str, float]]:
    """Seconds a problem at the member's prices, for its greedy stage with a test (k = 1):
    the prompts (solution prompt, and what the test prompt adds) and the decoding of
    the solution and the test."""
    out = {}
    for m, member in enumerate(family.members):
        price = family.prices[m]
        chosen = [d for d, keep in zip(family.data[m], mask, strict=True) if keep]
        if not chosen:
            continue
        prompt_tokens = np.mean([d.samples.greedy_solution.prompt_tokens_charged
                                 + d.samples.test_prompt_tokens for d in chosen])
        solution = np.mean([d.samples.greedy_solution.generated_tokens for d in chosen])
        test = np.mean([d.samples.greedy_test.generated_tokens for d in chosen])
        rate = price.decode_seconds_per_token(2)
        out[member] = {
            "prompt tokens": float(prompt_tokens),
            "prompt s": float(prompt_tokens * price.prompt_seconds_per_token),
            "solution tokens": float(solution),
            "test tokens": float(test),
            "decode s": float((solution + test) * rate),
        }
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _count(c: Count) -> str:
    if not c.n:
        return "n/a"
    lo, hi = c.interval
    return f"{_pct(c.share)} ({c.right}/{c.n}; {_pct(lo)}-{_pct(hi)})"


def markdown(b: Breakdown) -> str:
    lines = [
        f"## By kind of problem and by examples ({b.split}, {b.problems} problems)",
        "",
        "pass@1 (right of n; 95% interval), the share of answers labelled verified, and the "
        "precision of that label (labelled verified and right, of those labelled).",
        "",
        "| tier or member | group | pass@1 | labelled verified | verified and right |",
        "|---|---|---|---|---|",
    ]
    for r in b.groups:
        verified = "never" if r.verified is None else _count(r.verified)
        precision = "n/a" if r.precision is None else _count(r.precision)
        lines.append(f"| {r.what} | {r.group} | {_count(r.passed)} | {verified} | "
                     f"{precision} |")
    lines += ["", "## What a verified answer rests on", "",
              "| tier | " + " | ".join(KINDS) + " |", "|---|" + "---|" * len(KINDS)]
    for tier, by in b.evidence.items():
        lines.append(f"| {tier} | " + " | ".join(
            f"{by[e].right} right of {by[e].n}" + (f" ({_pct(by[e].share)})" if by[e].n else "")
            for e in KINDS) + " |")
    ks = sorted({k for c in b.ceiling.values() for k in c})
    lines += ["", "## The ceiling of selection", "",
              "pass@k of each member's cached samples (the unbiased estimator), and the share of "
              "problems where any cached candidate (greedy or sampled) is right: what better proof "
              "could reach without a larger model.", "",
              "| member | " + " | ".join(f"pass@{k}" for k in ks) + " | any candidate right |",
              "|---|" + "---|" * (len(ks) + 1)]
    for member, by_k in b.ceiling.items():
        lines.append(f"| {member} | " + " | ".join(_pct(by_k.get(k)) for k in ks)
                     + f" | {_count(b.any_right[member])} |")
    lines += ["", "## Where a member's time goes", "",
              "A greedy stage with its test (k = 1), at the member's prices, mean over the "
              "problems: prompt tokens charged (the test prompt counted after the opening it "
              "shares with the solution prompt) and generated tokens.", "",
              "| member | prompt tokens | prompt s | solution tokens | test tokens | decode s |",
              "|---|---|---|---|---|---|"]
    for member, t in b.time.items():
        lines.append(f"| {member} | {t['prompt tokens']:.0f} | {t['prompt s']:.1f} | "
                     f"{t['solution tokens']:.0f} | {t['test tokens']:.0f} | "
                     f"{t['decode s']:.1f} |")
    return "\n".join(lines) + "\n"


def to_json(b: Breakdown) -> dict[str, object]:
    def count(c: Count | None) -> dict[str, object] | None:
        if c is None:
            return None
        return {"right": c.right, "n": c.n, "share": c.share, "interval": list(c.interval)}

    return {
        "split": b.split, "problems": b.problems,
        "groups": [{"what": r.what, "group": r.group, "passed": count(r.passed),
                    "verified": count(r.verified), "precision": count(r.precision)}
                   for r in b.groups],
        "evidence": {t: {e: count(c) for e, c in by.items()} for t, by in b.evidence.items()},
        "ceiling": {m: {str(k): v for k, v in by.items()} for m, by in b.ceiling.items()},
        "any_right": {m: count(c) for m, c in b.any_right.items()},
        "time": b.time,
    }
