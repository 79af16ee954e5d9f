"""Benchmark of the offline simulator: the full plan grid from the caches.

    python -m cascode.benchmarks.sim_bench [--problems 164] [--calibration DIR]
        [--json benchmarks/results/sim_bench.json]

Times, from cold (stage outcomes computed by the engine's scoring, then every
plan and theta): a synthetic 2-member and 4-member family of HumanEval's size
(scripted generations, verdicts without execution), and, with --calibration, a
real calibration directory's caches. Targets (issue 4): 2 members < 2 s, 4
members < 60 s. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .calibrate import FamilyData, Settings, load_family_data
from .search import split
from .simulate import Simulator
from .synthetic import ArithmeticSandbox, ScriptedBackend, synthetic_dataset

SKILLS = [(0.3, 0.6, 0.004), (0.45, 0.7, 0.01), (0.6, 0.8, 0.03), (0.75, 0.85, 0.08)]


def synthetic_family(n_members: int, n_problems: int, out: Path) -> FamilyData:
    from cascode.engine.plans import parse_plan

    skills = SKILLS[-n_members:]
    family = "\n".join(
        f"  - {{name: m{i}, backend: openai, model: synthetic-{i}, "
        "options: {base_url: 'http://127.0.0.1:9/v1'}}" for i in range(n_members)
    )
    plan = parse_plan(f"family:\n{family}\ntiers:\n  t: {{theta: 0.5, stages: {{m0: {{k: 0}}}}}}\n")

    def factory(member):  # type: ignore[no-untyped-def]
        s = skills[int(member.name[1:])]
        return ScriptedBackend(member.name, *s)

    return load_family_data(plan, synthetic_dataset(n_problems), Settings(out=out, progress=False),
                            backend_factory=factory, sandbox_factory=ArithmeticSandbox)


def time_grid(family: FamilyData, n_samples: int, per_boundary: bool = False) -> dict[str, Any]:
    sim = Simulator(family.members, family.data, family.prices, n_samples)  # cold: no stages
    masks = split(family.greedy_passed()).masks()
    start = time.perf_counter()
    grid = sim.grid(masks, per_boundary=per_boundary)
    seconds = time.perf_counter() - start
    return {
        "members": len(family.members),
        "problems": sim.n_problems,
        "rows": len(grid),
        "plans": len(set(grid.plans)),
        "per_boundary": per_boundary,
        "seconds": round(seconds, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=164)
    parser.add_argument("--calibration", type=Path, help="a calibration --out directory")
    parser.add_argument("--dataset", default="humaneval", help="its dataset (with --calibration)")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    targets = {2: 2.0, 4: 60.0}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (2, 4):
            family = synthetic_family(n, args.problems, Path(tmp) / f"m{n}")
            rows.append({"family": f"synthetic {n} members", **time_grid(family, 10),
                         "target_s": targets[n]})
        rows.append({"family": "synthetic 3 members, per-boundary theta",
                     **time_grid(synthetic_family(3, args.problems, Path(tmp) / "m3"), 10, True),
                     "target_s": None})
    if args.calibration:
        from cascode.engine.plans import load_plan

        from .datasets import load_dataset

        plan = load_plan(args.calibration / "plan.yaml")
        settings = Settings(out=args.calibration, samples=args.samples, progress=False)
        family = load_family_data(plan, load_dataset(args.dataset), settings, generate=False)
        rows.append({"family": f"{args.calibration}", **time_grid(family, args.samples),
                     "target_s": 2.0 if len(plan.family) == 2 else None})
    print(f"{'family':<42} {'problems':>8} {'plans':>7} {'rows':>8} {'seconds':>8} {'target':>7}")
    for r in rows:
        target = "" if r["target_s"] is None else f"< {r['target_s']:g}"
        print(f"{r['family']:<42} {r['problems']:>8} {r['plans']:>7} {r['rows']:>8} "
              f"{r['seconds']:>8.2f} {target:>7}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        from cascode.engine.hardware import hardware

        doc = {"hardware": hardware(), "load_average_1min": round(os.getloadavg()[0], 2),
               "results": rows}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
