"""`cascode plans [PATH]`: the tiers of a plan file with their numbers."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", help="plan file (default: the packaged default plan)")
    parser.add_argument("--json", action="store_true", help="the whole plan as JSON")


def run(args: argparse.Namespace) -> int:
    from cascode.engine.plans import load_plan, plan_to_dict

    plan = load_plan(args.path)
    if args.json:
        print(json.dumps(plan_to_dict(plan), indent=2, default=str))
        return 0
    print(f"plan: {plan.path}")
    print("family: " + " -> ".join(f"{m.name} ({m.backend})" for m in plan.family))
    header = (
        f"{'tier':<14} {'stages':<38} {'theta':<8} {'val pass@1':>10} {'test pass@1':>11}"
        f" {'s/1k':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, tier in plan.tiers.items():
        stages = " -> ".join(
            f"{s.member.name} k={s.k}" + (f" l={s.l}" if s.k > 0 else "")
            for s in plan.tier(name).stages
        )
        theta = tier.theta if isinstance(tier.theta, float) else ",".join(map(str, tier.theta))
        m = tier.measured or {}
        val, test = m.get("validation", {}), m.get("test", {})
        mark = "*" if name == plan.default_tier else " "
        print(
            f"{name + mark:<14} {stages:<38} {str(theta):<8} {_pct(val.get('pass_at_1')):>10} "
            f"{_pct(test.get('pass_at_1')):>11} "
            f"{_num(test.get('seconds_per_1k', test.get('time_cost_per_1k_s'))):>9}"
        )
        if tier.description:
            print(f"{'':<14} {tier.description}")
    print("* default tier")
    from cascode.engine.hardware import seconds_elsewhere

    caveat = seconds_elsewhere(plan.calibration, [m.name for m in plan.family])
    if caveat:
        print(f"s/1k: {caveat}")
    return 0


def _pct(v: object) -> str:
    return f"{100 * float(v):.1f}%" if isinstance(v, int | float) else "-"


def _num(v: object) -> str:
    return f"{float(v):.0f}" if isinstance(v, int | float) else "-"
