"""What an answer's label may claim: the kind of evidence it rests on and how often
answers with that evidence were right where it was measured (docs/method.md 8.3).

A stage's rule met (`Result.verified`) is not a claim of correctness by itself: on real
code, answers that met it were right far less often than on HumanEval. The label an
editor shows is one of three states:

- `verified`: the answer met its stage's rule, and answers of its tier with the same
  kind of evidence were right at least `VERIFIED_PRECISION` of the time, over at least
  `MIN_OBSERVED` of them, on the data set the rates were measured on;
- `likely`: it met its stage's rule, but that evidence was measured below the bar (the
  rate is shown), on too few answers, or not at all;
- `unverified`: it did not meet its stage's rule (the note says why).

The rates come from `cascode evaluate PLAN --write-evidence`, which writes them next to
the plan (`default.yaml` -> `default.evidence.json`) from the same simulator whose
report shows them; the live label and the report classify answers with the one
function `evidence_kind`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import PlanError
from .types import Result

# The kinds of evidence an answer that met its stage's rule rests on.
EXAMPLES = "examples"
EXAMPLES_AND_TESTS = "examples and own tests"
OWN_TESTS = "own tests only"
KINDS = (EXAMPLES, EXAMPLES_AND_TESTS, OWN_TESTS)

VERIFIED_PRECISION = 0.9  # docs/method.md 8.3
MIN_OBSERVED = 10  # fewer answers measure nothing

State = Literal["verified", "likely", "unverified"]
SUFFIX = ".evidence.json"


def evidence_kind(has_examples: Any, tested: Any) -> Any:
    """The kind of evidence of an answer that met its stage's rule: `has_examples`, the
    request had example lines; `tested`, the answering stage generated tests (k >= 1).
    Elementwise on NumPy bool arrays (the simulator's answers): returns the index into
    KINDS there, the name on Python bools."""
    index = (1 - has_examples) * 2 + has_examples * tested
    if isinstance(index, int):
        return KINDS[index]
    return index


@dataclass(frozen=True)
class Rate:
    """Of `of` answers with this evidence, `right` passed the hidden tests."""

    right: int
    of: int

    @property
    def precision(self) -> float | None:
        return self.right / self.of if self.of else None

    @property
    def enough(self) -> bool:
        return self.of >= MIN_OBSERVED


@dataclass(frozen=True)
class Evidence:
    """Measured rates: tier -> kind -> Rate, what they were measured on, and each tier's
    signature when they were (`Plan.tier_signature`: rates of changed stages are not
    the tier's)."""

    measured_on: str
    tiers: Mapping[str, Mapping[str, Rate]]
    signatures: Mapping[str, str] = field(default_factory=dict)

    def rate(self, tier: str, kind: str) -> Rate | None:
        return self.tiers.get(tier, {}).get(kind)

    def to_json(self) -> dict[str, Any]:
        return {"measured_on": self.measured_on,
                "signatures": dict(self.signatures),
                "tiers": {t: {k: {"right": r.right, "of": r.of} for k, r in by.items()}
                          for t, by in self.tiers.items()}}


@dataclass(frozen=True)
class Label:
    state: State
    kind: str | None  # the evidence (None when the rule was not met)
    rate: Rate | None
    measured_on: str
    text: str

    def to_json(self) -> dict[str, Any]:
        r = self.rate if self.rate is not None and self.rate.of else None
        return {"state": self.state, "evidence": self.kind,
                "right": r.right if r else None, "of": r.of if r else None,
                "precision": round(r.right / r.of, 3) if r else None,
                "percent": percent(r) if r else None,
                "measuredOn": self.measured_on or None, "text": self.text}


def percent(rate: Rate) -> int:
    """The rate in whole percent, as the label's text and both editors show it."""
    return round(100 * rate.right / rate.of)


def result_kind(result: Result) -> str | None:
    """The evidence of a live answer (None: it did not meet its stage's rule)."""
    if not result.verified:
        return None
    kind: str = evidence_kind(bool(result.examples), result.accepted_stage.k >= 1)
    return kind


def label(result: Result, evidence: Evidence | None) -> Label:
    """The answer's state and the line that says why (docs/method.md 8.3)."""
    kind = result_kind(result)
    if kind is None:
        return Label("unverified", None, None, "", "unverified")
    rate = evidence.rate(result.tier, kind) if evidence else None
    where = evidence.measured_on if evidence else ""
    if rate is None or not rate.of:
        return Label("likely", kind, rate, where,
                      f"likely: met its rule on {kind}; how often that is right is not "
                      "measured for this plan")
    pct = f"{percent(rate)}%"
    counts = f"{rate.right} of {rate.of}"
    if rate.enough and rate.right >= VERIFIED_PRECISION * rate.of:
        return Label("verified", kind, rate, where,
                     f"verified: answers resting on {kind} were right {pct} of the time "
                     f"({counts}, {where})")
    why = "" if rate.enough else f"; too few to verify (under {MIN_OBSERVED})"
    return Label("likely", kind, rate, where,
                 f"likely: answers resting on {kind} were right {pct} of the time "
                 f"({counts}, {where}){why}")


def evidence_path(plan_path: Path) -> Path:
    """`plans/default.yaml` -> `plans/default.evidence.json`."""
    return plan_path.with_name(plan_path.stem + SUFFIX)


def load_evidence(plan_path: Path | None) -> Evidence | None:
    """The rates measured for the plan at `plan_path`, or None when none were written.
    A file that cannot be read is an error naming it and the field."""
    if plan_path is None:
        return None
    path = evidence_path(Path(plan_path))
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PlanError(f"{path}: cannot read: {e}") from None
    return parse_evidence(data, str(path))


def parse_evidence(data: Any, where: str) -> Evidence:
    if not isinstance(data, dict):
        raise PlanError(f"{where}: expected an object with measured_on and tiers")
    measured_on = data.get("measured_on")
    tiers = data.get("tiers")
    signatures = data.get("signatures", {})
    if not isinstance(signatures, dict) or not all(
            isinstance(v, str) for v in signatures.values()):
        raise PlanError(f"{where}: signatures: expected an object of tier -> signature")
    if not isinstance(measured_on, str) or not measured_on:
        raise PlanError(f"{where}: measured_on: expected the data set the rates come from")
    if not isinstance(tiers, dict):
        raise PlanError(f"{where}: tiers: expected an object of tier -> evidence -> rate")
    out: dict[str, dict[str, Rate]] = {}
    for tier, by in tiers.items():
        if not isinstance(by, dict):
            raise PlanError(f"{where}: tiers.{tier}: expected an object")
        out[tier] = {}
        for kind, r in by.items():
            field = f"{where}: tiers.{tier}.{kind}"
            if kind not in KINDS:
                raise PlanError(f"{field}: unknown evidence (one of {', '.join(KINDS)})")
            if not isinstance(r, dict) or set(r) != {"right", "of"} or not all(
                    isinstance(r[x], int) and not isinstance(r[x], bool) and r[x] >= 0
                    for x in ("right", "of")) or r["right"] > r["of"]:
                raise PlanError(f"{field}: expected {{right: n, of: m}} with 0 <= n <= m")
            out[tier][kind] = Rate(r["right"], r["of"])
    return Evidence(measured_on, out, {str(k): v for k, v in signatures.items()})


def write_evidence(plan_path: Path, evidence: Evidence) -> Path:
    path = evidence_path(plan_path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(evidence.to_json(), indent=2, sort_keys=True) + "\n",
                   encoding="utf-8")
    tmp.replace(path)
    return path

