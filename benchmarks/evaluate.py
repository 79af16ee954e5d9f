"""`cascode evaluate`: a plan's tiers measured on a dataset, against their promises.

The plan's family is sampled and executed through the calibration's caches
(whatever is cached costs nothing; the rest is sampled once, for every tier at
once), then every tier is simulated by the calibration's simulator, so that on
the calibration's own dataset and split the figures are those in the plan file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cascode.engine.errors import CascodeError
from cascode.engine.plans import Plan

from .calibrate import FamilyData
from .datasets import Dataset
from .replay import tier_option
from .search import validation_mask
from .simulate import MICROS, PICOS
from .store import RecordStore

SPLITS = ("calibration", "validation", "test", "all")
Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (sound for small n)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


def recorded_fingerprints(plan: Plan) -> dict[str, str]:
    models = (plan.calibration or {}).get("models") or {}
    return {str(k): str(v) for k, v in dict(models).items()}


def check_family_matches_cache(plan: Plan, cache: Path, fingerprints: Sequence[str]) -> None:
    """A plan whose family is not the one the cache holds is an error, not a resample."""
    samples_dir = cache / "samples"
    cached = sorted({p.name.removesuffix(".gz").removesuffix(".jsonl")
                     for p in samples_dir.glob("*.jsonl*")})
    names = [m.name for m in plan.family]
    if cached and not set(names) & set(cached):
        raise CascodeError(
            f"{plan.path}: family ({', '.join(names)}) differs from the cached members "
            f"({', '.join(cached)}) in {cache}"
        )
    for member, fingerprint in zip(plan.family, fingerprints, strict=True):
        if member.name not in cached:
            continue
        models = {r.get("model") for r in RecordStore(samples_dir / member.name).records.values()}
        if models and fingerprint not in models:
            raise CascodeError(
                f"{plan.path}: member {member.name} is {fingerprint[:23]}, but {cache} caches "
                f"{member.name} as {', '.join(sorted(str(m)[:23] for m in models))}"
            )


def split_mask(plan: Plan, full: Dataset, chosen: Dataset, split: str) -> np.ndarray:
    """bool per chosen problem: in the requested split of the plan's calibration."""
    n = len(chosen.problems)
    if split == "all":
        return np.ones(n, dtype=bool)
    if any(p.label("split") for p in full.problems):
        # A data set split by project (the real-code set): its own, fixed split.
        labels = {p.label("split") for p in full.problems}
        if split not in labels:
            raise CascodeError(f"--split {split}: {full.name} has the splits "
                               f"{', '.join(sorted(labels))}")
        return np.array([p.label("split") == split for p in chosen.problems])
    cal = plan.calibration or {}
    if not cal:
        raise CascodeError(
            f"--split {split}: {plan.path} carries no calibration (hand-set tiers), so it has "
            "no validation and test split; use --split all"
        )
    if cal.get("dataset_sha256") != full.fingerprint:
        raise CascodeError(
            f"--split {split}: {plan.path} was calibrated on "
            f"{cal.get('dataset', 'another dataset')}, not on {full.name}; use --split all"
        )
    val = validation_mask(len(full.problems), int(cal["split_seed"]))
    in_val = {p.task_id for p, v in zip(full.problems, val, strict=True) if v}
    mask = np.array([p.task_id in in_val for p in chosen.problems])
    return mask if split == "validation" else ~mask


@dataclasses.dataclass(frozen=True)
class TierFigures:
    tier: str
    description: str
    problems: int
    passed: int
    pass_at_1: float
    interval: tuple[float, float]
    seconds_per_1k: float
    token_cost_per_1k: float
    promised_pass: float | None
    promised_seconds: float | None
    verified: int = 0  # answers labelled verified
    verified_right: int = 0  # of those, answers that pass the hidden tests

    @property
    def precision(self) -> float | None:
        """The precision of "verified": of the answers labelled verified, the share
        that pass the hidden tests."""
        return self.verified_right / self.verified if self.verified else None

    @property
    def difference(self) -> float | None:
        return None if self.promised_pass is None else self.pass_at_1 - self.promised_pass

    def within(self, tolerance_points: float) -> bool | None:
        d = self.difference
        return None if d is None else abs(d) <= tolerance_points / 100 + 1e-9


@dataclasses.dataclass(frozen=True)
class Baseline:
    member: str
    pass_at_1: float
    interval: tuple[float, float]
    seconds_per_1k: float


def evaluate_tiers(
    plan: Plan, family: FamilyData, n_samples: int, mask: np.ndarray, tiers: Sequence[str],
    split: str,
) -> tuple[list[TierFigures], list[Baseline]]:
    sim = family.simulator(n_samples, repeat_last=True)
    n = int(mask.sum())
    if n == 0:
        raise CascodeError(f"--split {split}: no problems of the dataset are in this split")
    out = []
    for name in tiers:
        options, thetas = tier_option(plan, name, sim.slots)
        tier = plan.tiers[name]
        run = sim.run_plan(options, thetas, examples=tier.examples)
        passed = int(run.passed[mask].sum())
        assert run.verified is not None
        labelled = int(run.verified[mask].sum())
        right = int((run.verified & run.passed)[mask].sum())
        promised = (tier.measured or {}).get(split) or {}
        out.append(TierFigures(
            name, tier.description, n, passed, round(passed / n, 4), wilson(passed, n),
            round(1000 * _mean(run.micros[mask], MICROS), 1),
            round(1000 * _mean(run.picodollars[mask], PICOS), 6),
            promised.get("pass_at_1"), promised.get("seconds_per_1k"),
            labelled, right,
        ))
    baselines = []
    for m, member in enumerate(family.members):
        options = tuple((0, 0) if i == m else (-1, 0) for i in range(len(family.members)))
        run = sim.run_plan(options, (0,))
        passed = int(run.passed[mask].sum())
        baselines.append(Baseline(member, passed / n, wilson(passed, n),
                                  1000 * _mean(run.micros[mask], MICROS)))
    return out, baselines


def _mean(values: np.ndarray, unit: int) -> float:
    """The mean of integer costs in `unit`s per displayed unit: an exact sum, one division."""
    return int(values.sum()) / (len(values) * unit) if len(values) else 0.0


def _precision(f: TierFigures) -> str:
    if not f.verified:
        return "n/a"
    lo, hi = wilson(f.verified_right, f.verified)
    return f"{_pct(f.precision)} ({_pct(lo)} - {_pct(hi)})"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def table(figures: Sequence[TierFigures], baselines: Sequence[Baseline], tolerance: float) -> str:
    labels = [f"{b.member} greedy" for b in baselines]
    w = max([12, *(len(f.tier) for f in figures), *map(len, labels)])
    rows = [f"{'tier':<{w}} {'n':>4} {'pass@1':>7} {'95% interval':>15} {'promised':>9} "
            f"{'diff':>7} {'s/1k':>9} {'promised':>9} {'verified':>9} {'precision':>9}  "
            f"within {tolerance:g} pts"]
    for f in figures:
        lo, hi = f.interval
        diff = "n/a" if f.difference is None else f"{100 * f.difference:+.1f}"
        within = {None: "no promise", True: "yes", False: "NO"}[f.within(tolerance)]
        promised_s = "n/a" if f.promised_seconds is None else f"{f.promised_seconds:.0f}"
        rows.append(f"{f.tier:<{w}} {f.problems:>4} {_pct(f.pass_at_1):>7} "
                    f"{_pct(lo):>7}-{_pct(hi):<7} {_pct(f.promised_pass):>9} {diff:>7} "
                    f"{f.seconds_per_1k:>9.0f} {promised_s:>9} {f.verified:>9} "
                    f"{_pct(f.precision):>9}  {within}")
    for b, label in zip(baselines, labels, strict=True):
        lo, hi = b.interval
        rows.append(f"{label:<{w}} {figures[0].problems if figures else 0:>4} "
                    f"{_pct(b.pass_at_1):>7} {_pct(lo):>7}-{_pct(hi):<7} {'':>9} {'':>7} "
                    f"{b.seconds_per_1k:>9.0f}")
    if figures:
        lo, hi = figures[0].interval
        rows.append(f"{figures[0].problems} problems: a 95% interval spans about "
                    f"{100 * (hi - lo):.0f} points, so small differences are noise")
    return "\n".join(rows)


def report(
    plan: Plan, dataset: Dataset, split: str, figures: Sequence[TierFigures],
    baselines: Sequence[Baseline], tolerance: float, plot_name: str,
) -> str:
    n = figures[0].problems if figures else 0
    lines = [
        f"# {plan.path} on {dataset.name} ({split})",
        "",
        f"{n} problems (dataset sha256 {dataset.fingerprint[:16]}); pass@1 with its 95% Wilson "
        f"interval. With {n} problems an interval is about "
        f"+-{100 * (figures[0].interval[1] - figures[0].interval[0]) / 2:.0f} points wide: "
        "differences inside it are noise." if figures else "",
        "",
        "The precision of \"verified\": of the answers labelled verified (they met their "
        "stage's rule: every example line, and the generated tests where the stage wrote "
        "them), the share that pass the hidden tests.",
        "",
        "| tier | plan | pass@1 | 95% interval | promised | difference | s/1k | promised s/1k | "
        f"verified | precision of verified | within {tolerance:g} points |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        diff = "n/a" if f.difference is None else f"{100 * f.difference:+.1f} points"
        within = {None: "no promise", True: "yes", False: "**no**"}[f.within(tolerance)]
        promised_s = "n/a" if f.promised_seconds is None else f"{f.promised_seconds:.0f}"
        lines.append(f"| {f.tier} | {f.description} | {_pct(f.pass_at_1)} | "
                     f"{_pct(f.interval[0])} - {_pct(f.interval[1])} | {_pct(f.promised_pass)} | "
                     f"{diff} | {f.seconds_per_1k:.0f} | {promised_s} | {f.verified} of "
                     f"{f.problems} | {_precision(f)} | {within} |")
    lines += ["", "Single-member greedy baselines on the same problems:", "",
              "| member | pass@1 | 95% interval | s/1k |", "|---|---|---|---|"]
    for b in baselines:
        lines.append(f"| {b.member} | {_pct(b.pass_at_1)} | {_pct(b.interval[0])} - "
                     f"{_pct(b.interval[1])} | {b.seconds_per_1k:.0f} |")
    lines += ["", f"![promised and measured]({plot_name})", ""]
    return "\n".join(lines)


def plot(figures: Sequence[TierFigures], baselines: Sequence[Baseline], title: str,
         path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = np.arange(len(figures))
    measured = np.array([100 * f.pass_at_1 for f in figures])
    # Clipped at 0: at 0 or n right of n the interval's end is the share itself, but
    # float arithmetic may put it a hair beyond.
    err = np.maximum(0.0, np.array([[100 * (f.pass_at_1 - f.interval[0]) for f in figures],
                                    [100 * (f.interval[1] - f.pass_at_1) for f in figures]]))
    ax.errorbar(xs + 0.1, measured, yerr=err, fmt="o", c="tab:blue", capsize=4,
                label="measured (95% interval)")
    promised = [(x, 100 * f.promised_pass) for x, f in zip(xs, figures, strict=True)
                if f.promised_pass is not None]
    if promised:
        ax.plot([p[0] - 0.1 for p in promised], [p[1] for p in promised], "s", c="tab:orange",
                label="promised (plan file)")
    colors = ["tab:green", "tab:red", "tab:purple", "tab:brown"]
    for i, b in enumerate(baselines):
        ax.axhline(100 * b.pass_at_1, ls="--", lw=1, c=colors[i % len(colors)],
                   label=f"{b.member} greedy")
    ax.set_xticks(xs, [f.tier for f in figures])
    ax.set_ylabel("pass@1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
