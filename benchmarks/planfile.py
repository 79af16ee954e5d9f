"""The plan file written by a calibration (the engine's format, docs/method.md 4.7).

Everything in it comes from the caches and the settings (the date and the
hardware are those recorded with the cached generations), so regenerating it
from the same caches gives the same bytes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import yaml

from cascode.engine.plans import parse_plan

if TYPE_CHECKING:
    from .calibrate import FamilyData, Search


def cache_date_and_hardware(family: FamilyData) -> tuple[str, str]:
    """The last generation date and the hardware the caches were generated on."""
    dates: list[str] = []
    machines: Counter[str] = Counter()
    for member_data in family.data:
        for d in member_data:
            dates.append(d.samples.created[:10])
            machines[d.samples.hardware] += 1
    date = max((d for d in dates if d), default="unknown")
    hardware = "; ".join(sorted(h for h in machines if h)) or "unknown"
    return date, hardware


def describe_plan(plan: tuple[tuple[int, int], ...], members: Sequence[str],
                  examples: bool = False) -> str:
    """`members`: the name of each plan slot (a simulator's `slot_names`)."""
    parts = []
    for name, (k, ln) in zip(members, plan, strict=False):
        if k < 0:
            continue
        parts.append(f"{name} greedy" if k == 0 else f"{name} k={k} l={ln}")
    text = " -> ".join(parts)
    return f"{text}, examples first" if examples else text


def theta_value(search: Search, row: int) -> float | list[float]:
    thetas = search.grid.thetas[row]
    if search.settings.per_boundary:
        return [t / 10 for t in thetas]
    return thetas[0] / 10


def plan_document(search: Search) -> dict[str, Any]:
    from .calibrate import measured, tier_names

    family = search.family
    names = tier_names(len(search.tiers))
    date, hardware = cache_date_and_hardware(family)
    tiers: dict[str, Any] = {}
    for name, row in zip(names, search.tiers, strict=True):
        plan = search.grid.plans[row]
        uses = search.grid.uses_examples(row)
        slot_names = search.sim.slot_names
        active = [(member, k, ln) for member, (k, ln) in zip(slot_names, plan, strict=True)
                  if k >= 0]
        repeats = len({m for m, _, _ in active}) < len(active)
        tiers[name] = {
            "description": describe_plan(plan, slot_names, uses),
            "theta": theta_value(search, row),
            "examples": uses,
            # A member that runs twice needs the list form; otherwise member -> stage.
            "stages": [{"member": m, "k": k, "l": ln} for m, k, ln in active] if repeats
            else {m: {"k": k, "l": ln} for m, k, ln in active},
            "measured": measured(search, row),
        }
    if search.default is not None and search.default in search.tiers:
        default = names[search.tiers.index(search.default)]
    else:
        default = "balanced" if "balanced" in tiers else names[len(names) // 2]
    chosen = search.choice.theta
    return {
        "family": [_member(m) for m in family.plan.family],
        "default_tier": default,
        "calibration": {
            "dataset": family.dataset.name,
            "dataset_sha256": family.dataset.fingerprint,
            "caches": str(search.settings.out),
            "problems": len(family.dataset.problems),
            "samples": search.settings.samples,
            "template": search.settings.template,
            "split_seed": int(search.split.seed),
            "split": search.split.describe(),
            "theta": [t / 10 for t in chosen] if search.settings.per_boundary else chosen[0] / 10,
            "theta_reason": search.choice.reason,
            "cost": "seconds per 1k problems: prompt + decode at batch 2k + sandbox; a member's "
                    "second stage reuses its greedy stage's cached prompt",
            "prices": {
                name: price.source for name, price in zip(family.members, family.prices,
                                                           strict=True)
            },
            "models": dict(zip(family.members, family.fingerprints, strict=True)),
            "date": date,
            "hardware": hardware,
        },
        "tiers": tiers,
    }


def _member(member: Any) -> dict[str, Any]:
    d = attrs.asdict(member)
    d["options"] = dict(d["options"])
    if not d["options"]:
        del d["options"]
    if d.get("price_per_mtok") is None:
        d.pop("price_per_mtok", None)
    return d


HEADER = (
    "# Written by `cascode calibrate` from its sampling and execution caches; regenerate\n"
    "# it (byte for byte) with the same command and --out directory instead of editing it.\n"
    "# Tiers run cheapest first; `measured` holds pass@1 and time cost per 1k problems on\n"
    "# the calibration's validation and test splits.\n"
)


def write_plan_file(search: Search) -> str:
    """The plan file's text; checked by the engine's own loader before it is returned."""
    text = HEADER + yaml.safe_dump(
        plan_document(search), sort_keys=False, width=100, allow_unicode=True,
        default_flow_style=None,
    )
    parse_plan(text, "<calibrated plan>")
    return text
