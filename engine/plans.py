"""Plan files: the family, and named budget tiers of (k, l) per member and theta.

A plan file is YAML (schema in README "Plan files"). It is structured into
frozen attrs classes with cattrs, rejecting unknown keys, and then checked
against docs/method.md section 1. Every error names the file, the tier and the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Mapping
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import cattrs
import cattrs.v
import yaml

from .backends.options import BackendOptions, OptionsError, structure_options
from .errors import PlanError
from .evidence import Evidence, evidence_path, load_evidence
from .prompts import TEMPLATES
from .scoring import as_fraction

log = logging.getLogger(__name__)

K_VALUES = (-1, 0, 1, 3, 5, 10)
L_VALUES = (0, 2, 4)
BACKENDS = ("llama_cpp", "llama_server", "transformers", "openai")


@attrs.frozen
class Member:
    """One model of the family."""

    name: str
    backend: str
    model: str  # a path, `embedded:NAME`, a Hugging Face id/dir, or a remote model name
    price_per_hour: float = 0.44  # the papers' RTX 3090 price, used for the token cost
    price_per_mtok: float | None = None  # alternative price for hosted endpoints
    options: Mapping[str, Any] = attrs.field(factory=dict)  # backend-specific settings

    def settings(self) -> BackendOptions:
        """`options` structured as the backend's typed class (checked when the plan loads)."""
        try:
            return structure_options(self.backend, self.options)
        except (OptionsError, KeyError) as e:
            raise PlanError(f"member {self.name}: {e}") from None


@attrs.frozen
class Stage:
    k: int
    l: int = 0


@attrs.frozen
class ListedStage:
    """A stage of a tier written as a list (`- {member: m, k: 3, l: 2}`): the form
    in which a member may run twice, greedily and then sampling (docs/method.md 7.4)."""

    member: str
    k: int
    l: int = 0


@attrs.frozen
class Tier:
    theta: float | tuple[float, ...]
    # member -> stage, or a list of stages in the family's order (a member may repeat)
    stages: Mapping[str, Stage] | tuple[ListedStage, ...]
    description: str = ""
    # Check answers against the user's examples first (docs/method.md 7); false runs
    # the papers' method alone.
    examples: bool = True
    measured: Mapping[str, Any] | None = None  # written by `cascode calibrate`


@attrs.frozen
class _PlanFile:
    family: tuple[Member, ...]
    tiers: Mapping[str, Tier]
    default_tier: str | None = None
    calibration: Mapping[str, Any] | None = None


@attrs.frozen
class StagePlan:
    """A resolved active stage: member index and name, k, l and the theta at its boundary."""

    member: Member
    index: int
    k: int
    l: int
    theta: Fraction
    last: bool


@attrs.frozen
class TierPlan:
    name: str
    tier: Tier
    stages: tuple[StagePlan, ...]  # active members only (k >= 0), cheapest first


@attrs.frozen
class Plan:
    path: str
    family: tuple[Member, ...]
    tiers: Mapping[str, Tier]
    default_tier: str
    calibration: Mapping[str, Any] | None = None
    # How often each tier's answers were right by the evidence they rest on (written
    # next to the plan by `cascode evaluate --write-evidence`, engine/evidence.py).
    evidence: Evidence | None = None

    def tier_signature(self, name: str) -> str:
        """What a tier's measured figures depend on (its stages' members, models, k, l,
        thetas and whether it uses examples): rates written for another signature are
        not this tier's."""
        tier = self.tier(name)
        parts = [(s.member.name, s.member.backend, s.member.model, s.k, s.l, str(s.theta))
                 for s in tier.stages]
        text = repr((parts, tier.tier.examples))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def member(self, name: str) -> Member:
        for m in self.family:
            if m.name == name:
                return m
        raise PlanError(f"{self.path}: no member named {name!r}")

    @property
    def template(self) -> int | None:
        """The prompt template its calibration sampled with (engine/prompts.py), which
        the cascade then sends, or None for a plan that was not calibrated. Plans
        written before plans recorded it were calibrated with template 2."""
        if not self.calibration:
            return None
        value = self.calibration.get("template", 2)
        if isinstance(value, bool) or not isinstance(value, int):
            raise PlanError(f"{self.path}: calibration.template: expected an integer, "
                            f"got {value!r}")
        if value not in TEMPLATES:
            known = ", ".join(str(v) for v in TEMPLATES)
            raise PlanError(f"{self.path}: calibration.template: {value} is not a prompt "
                            f"template of this version ({known})")
        return value

    def tier(self, name: str | None = None) -> TierPlan:
        """The active stages of a tier (the default tier when name is None)."""
        name = name or self.default_tier
        if name not in self.tiers:
            raise PlanError(
                f"{self.path}: no tier named {name!r} (tiers: {', '.join(self.tiers)})"
            )
        return TierPlan(name, self.tiers[name], _resolve(self, name, self.tiers[name]))


_converter = cattrs.Converter(forbid_extra_keys=True)


def _structure_theta(value: Any, _: Any) -> float | tuple[float, ...]:
    if isinstance(value, bool):
        raise ValueError(f"expected a number or a list of numbers, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | tuple) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        return tuple(float(v) for v in value)
    raise ValueError(f"expected a number or a list of numbers, got {value!r}")


def _structure_int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _structure_bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _structure_str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _structure_stages(value: Any, _: Any) -> Mapping[str, Stage] | tuple[ListedStage, ...]:
    if isinstance(value, list | tuple):
        return _converter.structure(value, tuple[ListedStage, ...])
    if isinstance(value, Mapping):
        return _converter.structure(value, dict[str, Stage])
    raise _StagesError(
        f"expected a mapping of member to stage, or a list of stages, got {value!r}")


def tier_stages(tier: Tier) -> list[tuple[str, Stage]]:
    """A tier's stages as (member, stage) in the order written."""
    if isinstance(tier.stages, Mapping):
        return list(tier.stages.items())
    return [(s.member, Stage(s.k, s.l)) for s in tier.stages]


_converter.register_structure_hook(float | tuple[float, ...], _structure_theta)
_converter.register_structure_hook(Mapping[str, Stage] | tuple[ListedStage, ...],
                                   _structure_stages)
_converter.register_structure_hook(int, _structure_int)
_converter.register_structure_hook(bool, _structure_bool)
_converter.register_structure_hook(str, _structure_str)


def load_plan(path: str | Path | None = None) -> Plan:
    """Load and check a plan file; the packaged default when `path` is None."""
    if path is None:
        ref = resources.files("cascode.plans").joinpath("default.yaml")
        plan = parse_plan(ref.read_text(encoding="utf-8"), "plans/default.yaml (packaged)")
        return _with_evidence(plan, default_plan_path())
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise PlanError(f"{p}: cannot read plan file: {e.strerror or e}") from None
    return _with_evidence(parse_plan(text, str(p)), p)


def _with_evidence(plan: Plan, path: Path) -> Plan:
    """`plan` with the rates measured for it (engine/evidence.py). A rates file that
    cannot be read, or rates of a tier whose stages have changed since, are left out
    with a warning: the labels then claim less, and the plan still loads."""
    try:
        evidence = load_evidence(path)
    except PlanError as e:
        log.warning("%s; its answers are labelled without measured rates", e)
        return plan
    if evidence is None:
        return plan
    kept = {}
    for tier, rates in evidence.tiers.items():
        signature = evidence.signatures.get(tier)
        if tier in plan.tiers and signature == plan.tier_signature(tier):
            kept[tier] = rates
        else:
            log.warning("%s: the rates of tier %r were measured for other stages (or a "
                        "tier this plan lacks): left out", evidence_path(path), tier)
    return attrs.evolve(plan, evidence=dataclasses.replace(evidence, tiers=kept))


def default_plan_path() -> Path:
    return Path(str(resources.files("cascode.plans").joinpath("default.yaml")))


def parse_plan(text: str, source: str = "<plan>") -> Plan:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # PyYAML's message spans several lines; errors are one line.
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or " ".join(str(e).split())
        raise PlanError(f"{source}: not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise PlanError(f"{source}: a plan file is a mapping with `family` and `tiers`")
    try:
        parsed = _converter.structure(raw, _PlanFile)
    except cattrs.ClassValidationError as e:
        raise PlanError(f"{source}: {_describe(e)}") from None
    return _check(parsed, source)


class _StagesError(ValueError):
    """A tier's `stages` of the wrong shape (its message is shown as it is)."""


def _format(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, _StagesError):
        return str(exc)
    return cattrs.v.format_exception(exc, type_)


def _describe(error: cattrs.ClassValidationError) -> str:
    messages = cattrs.transform_error(error, path="plan", format_exception=_format)
    return "; ".join(m.replace("plan.", "", 1) for m in messages[:3])


def _check(parsed: _PlanFile, source: str) -> Plan:
    names = [m.name for m in parsed.family]
    if not names:
        raise PlanError(f"{source}: family: at least one member is needed")
    for i, m in enumerate(parsed.family):
        where = f"{source}: family[{i}] ({m.name})"
        if names.count(m.name) > 1:
            raise PlanError(f"{where}: name: duplicate member name")
        if m.backend not in BACKENDS:
            raise PlanError(
                f"{where}: backend: unknown backend {m.backend!r} (one of {', '.join(BACKENDS)})"
            )
        if not m.model:
            raise PlanError(f"{where}: model: empty")
        if m.price_per_hour < 0 or (m.price_per_mtok is not None and m.price_per_mtok < 0):
            raise PlanError(f"{where}: price: must not be negative")
        try:
            structure_options(m.backend, m.options)
        except OptionsError as e:
            raise PlanError(f"{where}: {e}") from None
    if not parsed.tiers:
        raise PlanError(f"{source}: tiers: at least one tier is needed")
    default = parsed.default_tier or next(iter(parsed.tiers))
    if default not in parsed.tiers:
        raise PlanError(f"{source}: default_tier: no tier named {default!r}")
    plan = Plan(source, parsed.family, parsed.tiers, default, parsed.calibration)
    for name, tier in parsed.tiers.items():
        _resolve(plan, name, tier)
    _ = plan.template  # checked now, not when first used
    return plan


def _resolve(plan: Plan, name: str, tier: Tier) -> tuple[StagePlan, ...]:
    where = f"{plan.path}: tier {name!r}"
    names = [m.name for m in plan.family]
    listed = not isinstance(tier.stages, Mapping)
    entries = tier_stages(tier)
    for pos, (member, stage) in enumerate(entries):
        field = f"stages[{pos}]" if listed else f"stages.{member}"
        if member not in names:
            raise PlanError(
                f"{where}: {field}: unknown member {member!r} (family: {', '.join(names)})"
                if listed else
                f"{where}: {field}: unknown member (family: {', '.join(names)})"
            )
        _check_stage(f"{where}: {field}", stage)
    if listed:
        order = [names.index(m) for m, _ in entries]
        for pos in range(1, len(order)):
            if order[pos] < order[pos - 1]:
                raise PlanError(
                    f"{where}: stages[{pos}]: {entries[pos][0]} comes after "
                    f"{entries[pos - 1][0]}: stages run in the family's order, cheapest first"
                )
            if order[pos] == order[pos - 1] and entries[pos - 1][1].k > 0:
                raise PlanError(
                    f"{where}: stages[{pos}]: {entries[pos][0]} runs again after a stage that "
                    "sampled; a member's second stage follows its greedy one (k = 0)"
                )
        active = [(names.index(m), plan.family[names.index(m)], st)
                  for m, st in entries if st.k >= 0]
    else:
        by_member = dict(entries)
        active = [
            (i, m, by_member[m.name])
            for i, m in enumerate(plan.family)
            if m.name in by_member and by_member[m.name].k >= 0
        ]
    if not active:
        raise PlanError(f"{where}: stages: no active member (every k is -1 or left out)")
    thetas = _thetas(where, tier.theta, len(active))
    return tuple(
        StagePlan(m, i, stage.k, stage.l, thetas[min(pos, len(thetas) - 1)], pos == len(active) - 1)
        for pos, (i, m, stage) in enumerate(active)
    )


def _check_stage(where: str, stage: Stage) -> None:
    if stage.k not in K_VALUES:
        raise PlanError(f"{where}.k: {stage.k} is not one of {', '.join(map(str, K_VALUES))}")
    if stage.l not in L_VALUES:
        raise PlanError(f"{where}.l: {stage.l} is not one of {', '.join(map(str, L_VALUES))}")
    if (stage.l == 0) != (stage.k <= 0):
        raise PlanError(
            f"{where}.l: l = {stage.l} with k = {stage.k}: l must be 0 exactly when k <= 0"
        )


def _thetas(where: str, theta: float | tuple[float, ...], n_active: int) -> list[Fraction]:
    values = list(theta) if isinstance(theta, tuple) else [theta]
    if isinstance(theta, tuple) and len(values) != max(n_active - 1, 1):
        raise PlanError(
            f"{where}: theta: {len(values)} values for {n_active - 1} member boundaries"
        )
    for v in values:
        if not 0.0 <= v <= 1.0:
            raise PlanError(f"{where}: theta: {v} is outside [0, 1]")
    return [as_fraction(v) for v in values]


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as plain data (for `cascode plans --json` and the server)."""
    out: dict[str, Any] = _converter.unstructure(
        _PlanFile(plan.family, plan.tiers, plan.default_tier, plan.calibration)
    )
    return out
