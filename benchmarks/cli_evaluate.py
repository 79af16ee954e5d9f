"""`cascode evaluate`: does a plan keep its promises on a dataset?

Exit codes: 0 when every tier with a promise is within --tolerance points of
pass@1, 3 when one is not, 1 on an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

OUTSIDE_TOLERANCE = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN_FILE", help="a plan file (e.g. plans/default.yaml)")
    parser.add_argument("--dataset", default="humaneval",
                        help="`humaneval`, `everyday`, a HumanEval-format JSONL or an "
                        "MBPP-format JSON/JSONL")
    parser.add_argument("--strict", action="store_true",
                        help="refuse a dataset file with a record that cannot be read "
                        "(default: skip it with a warning naming it)")
    parser.add_argument("--tiers", help="comma-separated tier names (default: every tier)")
    parser.add_argument("--split", choices=("calibration", "validation", "test", "all"),
                        help="the calibration's split (only on its own dataset; default: test "
                        "there, all elsewhere); a data set split by project (realcode) has "
                        "its own calibration, validation and test splits")
    parser.add_argument("--strip-examples", action="store_true",
                        help="take the docstring examples out of every prompt (the dataset "
                        "becomes NAME-no-examples: what a user who wrote none gets)")
    parser.add_argument("--samples", type=int,
                        help="sampled solutions and tests per member and problem (default: "
                        "the plan's calibration; a tier needs at least its largest k)")
    parser.add_argument("--template", type=int,
                        help="the prompt template of the caches (default: the plan's "
                        "calibration's, else the one this version sends)")
    parser.add_argument("--limit", type=int, help="only the first N problems")
    parser.add_argument("--tasks", help="task ids or index ranges, e.g. `0-39`")
    parser.add_argument("--cache", type=Path,
                        help="the sampling and execution caches (default: the directory the "
                        "plan was calibrated in, else ./calibration/<dataset>)")
    parser.add_argument("--out", type=Path,
                        help="where the report and plot go (default: CACHE/evaluations)")
    parser.add_argument("--tolerance", type=float, default=5.0,
                        help="allowed |measured - promised| pass@1, in points (default 5)")
    parser.add_argument("--offline", action="store_true",
                        help="generate nothing: fail unless the caches hold every problem")
    parser.add_argument("--unsafe-sandbox", action="store_true",
                        help="execute with rlimits and seccomp only where no isolation works")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--write-evidence", action="store_true",
                        help="write how often each tier's answers were right, by the evidence "
                        "they rest on, next to the plan (PLAN.evidence.json): the rates its "
                        "labels state (docs/method.md 8.3); never from the test split")


def run(args: argparse.Namespace) -> int:
    from cascode.engine.errors import CascodeError
    from cascode.engine.plans import load_plan

    from . import calibrate as cal
    from . import evaluate as ev
    from .cli_calibrate import _sandbox_factory, _template
    from .datasets import load_dataset, select, without_examples
    from .sampling import resolve_fingerprint

    plan = load_plan(args.plan)
    tiers = _tiers(plan, args.tiers)
    full = load_dataset(args.dataset, strict=args.strict)
    if args.strip_examples:
        full = without_examples(full)
    dataset = select(full, limit=args.limit, tasks=args.tasks)
    calibration = plan.calibration or {}
    own = calibration.get("dataset_sha256") == full.fingerprint
    # A data set of one split (realcode:validation) is evaluated on that split.
    labels = {p.label("split") for p in full.problems if p.label("split")}
    split = args.split or (next(iter(labels)) if len(labels) == 1
                           else "test" if own or labels else "all")
    if args.write_evidence and (split == "test" or split == "all" and (own or "test" in labels)):
        raise CascodeError("--write-evidence: the test split measures the labels; their "
                           "rates come from the calibration or validation split (--split)")
    mask = ev.split_mask(plan, full, dataset, split)
    cache = args.cache or _default_cache(calibration, dataset.name)
    samples = args.samples or int(calibration.get("samples", 10))
    needed = max(s.k for name in tiers for s in plan.tier(name).stages)
    if samples < needed:
        raise CascodeError(f"--samples {samples}: tier stages sample up to k = {needed}")
    recorded = ev.recorded_fingerprints(plan)
    fingerprints = [resolve_fingerprint(m, cache, recorded) for m in plan.family]
    ev.check_family_matches_cache(plan, cache, fingerprints)
    template = _template(args.template if args.template is not None else plan.template)
    settings = cal.Settings(out=cache, samples=samples, progress=not args.no_progress,
                            template=template)
    try:
        family = cal.load_family_data(plan, dataset, settings, generate=not args.offline,
                                      sandbox_factory=_sandbox_factory(args.unsafe_sandbox))
    except LookupError as e:
        raise CascodeError(f"--offline: {e}") from None
    finally:
        cal.pack_caches(cache, plan)
    figures, baselines = ev.evaluate_tiers(plan, family, samples, mask, tiers, split)
    print(ev.table(figures, baselines, args.tolerance))
    out = args.out or cache / "evaluations"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{Path(args.plan).stem}-{dataset.name}-{split}"
    ev.plot(figures, baselines, f"{args.plan} on {dataset.name} ({split}, "
            f"{int(mask.sum())} problems)", out / f"{stem}.png")
    text = ev.report(plan, dataset, split, figures, baselines, args.tolerance, f"{stem}.png")
    from .breakdown import breakdown, markdown, to_json

    labelled = any(p.labels for p in dataset.problems)
    if labelled or args.write_evidence:
        parts = breakdown(plan, family, samples, mask, tiers, split)
    if labelled:
        # By kind and examples, the evidence of "verified", the ceiling, the time.
        import json

        text += "\n" + markdown(parts)
        (out / f"{stem}.json").write_text(json.dumps(to_json(parts), indent=2) + "\n",
                                          encoding="utf-8")
    if args.write_evidence:
        from cascode.engine.evidence import Evidence, Rate, write_evidence

        evidence = Evidence(
            f"{dataset.name} {split} split, {int(mask.sum())} problems",
            {tier: {kind: Rate(c.right, c.of) for kind, c in by.items()}
             for tier, by in parts.evidence.items()},
            {tier: plan.tier_signature(tier) for tier in parts.evidence})
        written = write_evidence(Path(args.plan), evidence)
        print(f"evidence rates: {written}", file=sys.stderr)
    (out / f"{stem}.md").write_text(text, encoding="utf-8")
    generated = sum(family.generated.values())
    print(f"{int(mask.sum())} problems ({split}); {generated} member-problems generated; "
          f"report: {out / (stem + '.md')}", file=sys.stderr)
    outside = [f.tier for f in figures if f.within(args.tolerance) is False]
    if outside:
        print(f"outside the tolerance of {args.tolerance:g} points: {', '.join(outside)}",
              file=sys.stderr)
        return OUTSIDE_TOLERANCE
    return 0


def _tiers(plan, names: str | None) -> list[str]:  # type: ignore[no-untyped-def]
    from cascode.engine.errors import CascodeError

    if not names:
        return list(plan.tiers)
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    for name in chosen:
        if name not in plan.tiers:
            raise CascodeError(
                f"--tiers: {plan.path} has no tier named {name!r} (tiers: {', '.join(plan.tiers)})"
            )
    return chosen


def _default_cache(calibration, dataset_name: str) -> Path:  # type: ignore[no-untyped-def]
    caches = calibration.get("caches")
    if caches and Path(caches).is_dir():
        return Path(caches)
    return Path("calibration") / dataset_name
