"""`cascode calibrate`: sample a family once, simulate every plan, write the plan file.

Light at import time: the pipeline (numpy, matplotlib, the backends) is imported
inside `run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="humaneval",
                        help="`humaneval`, a HumanEval-format JSONL, or an MBPP-format JSON/JSONL")
    parser.add_argument("--strict", action="store_true",
                        help="refuse a dataset file with a record that cannot be read "
                        "(default: skip it with a warning naming it)")
    parser.add_argument("--limit", type=int, help="only the first N problems (after --tasks)")
    parser.add_argument("--tasks", help="task ids or index ranges, e.g. `0-39` or "
                        "`HumanEval/0,HumanEval/5`: run a long calibration in chunks")
    parser.add_argument("--samples", type=int, default=10,
                        help="sampled solutions and tests per member and problem (N, default 10)")
    parser.add_argument("--out", type=Path,
                        help="directory of the caches, plan file and report "
                        "(default: ./calibration/<dataset>)")
    parser.add_argument("--template", type=int,
                        help="the prompt template to sample with (default: the one this "
                        "version sends; an older one to regenerate a plan from its caches)")
    parser.add_argument("--plan", help="plan file whose family is calibrated "
                        "(default: the packaged default plan)")
    parser.add_argument("--write-plan", type=Path,
                        help="also write the calibrated plan file here (e.g. plans/default.yaml)")
    parser.add_argument("--price-per-hour", type=float,
                        help="hourly price of a member's hardware for the papers' token cost "
                        "(default: each member's price_per_hour, 0.44 = the papers' RTX 3090)")
    parser.add_argument("--per-boundary-theta", action="store_true",
                        help="search one theta per member boundary (beyond the papers)")
    parser.add_argument("--max-tiers", type=int, default=4,
                        help="tiers written to the plan file, from the chosen front (default 4)")
    parser.add_argument("--split-seed", type=int, default=0, help="first seed of the split")
    parser.add_argument("--concurrency", type=int, default=0,
                        help="problems in flight (default: 4 for remote members, else 1)")
    parser.add_argument("--offline", action="store_true",
                        help="generate and execute nothing: fail unless the caches are complete")
    parser.add_argument("--sample-only", action="store_true",
                        help="fill the sampling and execution caches, skip the search "
                        "(for chunks of a long run)")
    parser.add_argument("--measure", action="store_true",
                        help="measure each member's prices (seconds per token at batch 2k, "
                        "prompt speed) into OUT/prices.json; run it on an idle machine")
    parser.add_argument("--measure-problems", type=int, default=2,
                        help="problems per batch size for --measure (default 2)")
    parser.add_argument("--unsafe-sandbox", action="store_true",
                        help="execute with rlimits and seccomp only where no isolation layer "
                        "works (the code is model-written: only on a throwaway machine)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from cascode.engine.errors import CascodeError
    from cascode.engine.plans import load_plan

    from . import calibrate as cal
    from .datasets import load_dataset, select

    dataset = select(load_dataset(args.dataset, strict=args.strict), limit=args.limit,
                     tasks=args.tasks)
    out = args.out or Path("calibration") / dataset.name
    if args.samples < 1:
        raise CascodeError(f"--samples {args.samples}: must be at least 1")
    plan = load_plan(args.plan)
    if args.price_per_hour is not None:
        if args.price_per_hour < 0:
            raise CascodeError("--price-per-hour: must not be negative")
        import attrs

        members = tuple(attrs.evolve(m, price_per_hour=args.price_per_hour) for m in plan.family)
        plan = attrs.evolve(plan, family=members)
    remote = any(m.backend == "openai" for m in plan.family)
    settings = cal.Settings(
        out=out,
        samples=args.samples,
        split_seed=args.split_seed,
        per_boundary=args.per_boundary_theta,
        max_tiers=args.max_tiers,
        concurrency=args.concurrency or (4 if remote else 1),
        progress=not args.no_progress,
        template=_template(args.template),
    )
    sandbox_factory = _sandbox_factory(args.unsafe_sandbox)
    if args.measure:
        return _measure(plan, dataset, settings, args.measure_problems)
    try:
        family = cal.load_family_data(plan, dataset, settings, generate=not args.offline,
                                      sandbox_factory=sandbox_factory)
    except LookupError as e:
        raise CascodeError(f"--offline: {e}") from None
    finally:
        cal.pack_caches(out, plan)
    generated = sum(family.generated.values())
    print(f"caches in {out}: {len(dataset.problems)} problems x {len(plan.family)} members, "
          f"{generated} member-problems generated by this run", file=sys.stderr)
    if args.sample_only:
        return 0
    from .outputs import write_outputs
    from .report import headline

    result = write_outputs(cal.search(family, settings), args.write_plan)
    _print_summary(result, headline(result), out)
    return 0


def _template(value: int | None) -> int:
    from cascode.engine.errors import CascodeError
    from cascode.engine.prompts import PROMPT_TEMPLATE_VERSION, TEMPLATES

    if value is None:
        return PROMPT_TEMPLATE_VERSION
    if value not in TEMPLATES:
        known = ", ".join(f"{v} ({what})" for v, what in TEMPLATES.items())
        raise CascodeError(f"--template {value}: the prompt templates are {known}")
    return value


def _sandbox_factory(unsafe: bool):  # type: ignore[no-untyped-def]
    import functools

    from cascode.engine.sandbox import create_sandbox

    return functools.partial(create_sandbox, allow_unsafe=unsafe, required=True)


def _measure(plan, dataset, settings, n_problems: int) -> int:  # type: ignore[no-untyped-def]
    from cascode.engine.backends import create_backend

    from .prices import measure_member, save_price
    from .sampling import member_fingerprint

    tasks = [p.task for p in dataset.problems[: max(1, n_problems)]]
    for member in plan.family:
        print(f"measuring {member.name} on {len(tasks)} problems ...", file=sys.stderr)
        backend = create_backend(member)
        try:
            entry = measure_member(backend, tasks, template=settings.template)
        finally:
            backend.close()
        where = getattr(backend, "where", None)
        if member.backend in ("llama_server", "openai") and where:
            # Measured through a server elsewhere: its seconds, wherever this client runs.
            entry["hardware"] = f"the model server at {where}"
        save_price(settings.out / "prices.json", member.name, member_fingerprint(member), entry)
        rates = ", ".join(f"batch {b}: {1000 * v:.1f} ms/token"
                          for b, v in entry["decode_seconds_per_token"].items())
        print(f"{member.name}: prompt {1000 * entry['prompt_seconds_per_token']:.2f} ms/token; "
              f"{rates}")
    print(f"prices written to {settings.out / 'prices.json'}", file=sys.stderr)
    return 0


def _print_summary(result, head, out: Path) -> None:  # type: ignore[no-untyped-def]
    from .calibrate import tier_names
    from .planfile import describe_plan
    from .search import TEST, VAL

    print(f"{'tier':<10} {'val pass@1':>10} {'val s/1k':>10} {'test pass@1':>11} "
          f"{'test s/1k':>10}  plan")
    for name, row in zip(tier_names(len(result.tiers)), result.tiers, strict=True):
        v = result.value
        print(f"{name:<10} {100 * v(row, 'pass_at_1', VAL):>9.1f}% "
              f"{1000 * v(row, 'seconds', VAL):>10.0f} {100 * v(row, 'pass_at_1', TEST):>10.1f}% "
              f"{1000 * v(row, 'seconds', TEST):>10.0f}  "
              + describe_plan(result.grid.plans[row], result.sim.slot_names,
                              result.grid.uses_examples(row)))
    saving = head["saving_vs_random"]
    print(f"theta {head['theta']}; test-split saving vs random single-member self-testing: "
          + ("n/a" if saving is None else f"{100 * saving:.1f}%")
          + f"; best cascade pass@1 {100 * head['best_cascade_pass']:.1f}% vs "
          f"{head['largest_member']} greedy {100 * head['largest_greedy_pass']:.1f}%")
    print(f"{result.split.describe()}")
    print(f"plan: {out / 'plan.yaml'}; report: {out / 'report.md'}")
