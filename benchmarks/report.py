"""The calibration report: Markdown tables and matplotlib plots (docs/method.md 4-5).

Figures: every plan against the cascade and single-member fronts (the papers'
Figures 5 and 7), the theta sweep of one plan (Figure 6), and cost-accuracy
curves of the cascade and the single members, PCHIP-interpolated (Figure 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cascode.engine.prompts import TEMPLATES

from .calibrate import SUBSET_DRAWS
from .planfile import cache_date_and_hardware, describe_plan
from .search import TEST, VAL, pareto, saving_vs_front, saving_vs_random
from .simulate import answer_item

if TYPE_CHECKING:
    from .calibrate import Search

SPLITS = {"validation": VAL, "test": TEST}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _theta(search: Search, row: int) -> str:
    return ", ".join(f"{t / 10:.1f}" for t in search.grid.thetas[row])


def headline(search: Search) -> dict[str, float | str | int | None]:
    """The numbers the closing note asks for, on the test split."""
    g = search.grid
    cost, acc, tok = g.exact("seconds", TEST), g.exact("pass_at_1", TEST), g.exact("tokens", TEST)
    singles = np.flatnonzero(g.single_member())
    front = search.choice.front
    s_rand = saving_vs_random(front, cost, acc, singles, g.groups())
    s_front = saving_vs_front(front, cost, acc, singles, g.groups(), tok)
    greedy = search.family.greedy_passed()
    largest = search.family.members[-1]
    # The tiers' front (plans that check the examples) against the papers'
    # single-member plans: what a user of the papers' method would pay.
    from .calibrate import tier_front

    tiers_front = tier_front(search.choice, g)
    papers = [int(j) for j in singles if not g.uses_examples(int(j))]
    p_rand = saving_vs_random(tiers_front, cost, acc, papers)
    p_front = saving_vs_front(tiers_front, cost, acc, pareto(cost, acc, tok, papers))
    return {
        "theta": ", ".join(f"{t / 10:.1f}" for t in search.choice.theta) or "per boundary",
        "saving_vs_random": s_rand.mean,
        "saving_vs_random_skipped": s_rand.skipped,
        "saving_vs_front": s_front.mean,
        "saving_vs_front_skipped": s_front.skipped,
        "best_cascade_pass": float(max(acc[i] for i in front)),
        "largest_member": largest,
        "largest_greedy_pass": float(greedy[-1][search.split.test].mean()),
        "front_points": len(front),
        "examples_vs_papers_random": p_rand.mean,
        "examples_vs_papers_front": p_front.mean,
        "examples_front_points": len(tiers_front),
    }


def write_report(search: Search, out: Path) -> str:
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    _plot_all_plans(search, plots / "plans.png")
    _plot_theta_sweep(search, plots / "theta_sweep.png")
    _plot_curves(search, plots / "cost_accuracy.png")
    text = report_text(search)
    (out / "report.md").write_text(text, encoding="utf-8")
    return text


def report_text(search: Search) -> str:
    fam, g, sp = search.family, search.grid, search.split
    date, hardware = cache_date_and_hardware(fam)
    h = headline(search)
    lines = [
        f"# Calibration of {' + '.join(fam.members)} on {fam.dataset.name}",
        "",
        f"- Dataset: {fam.dataset.name} ({len(fam.dataset.problems)} problems, "
        f"sha256 {fam.dataset.fingerprint[:16]}), from {fam.dataset.source}",
        f"- Split: {sp.describe()}",
        f"- Samples per member and problem: greedy solution and test, {search.settings.samples} "
        "sampled solutions and tests (up to 4 asserts each)",
        f"- Prompt template {search.settings.template}: {TEMPLATES[search.settings.template]}",
        f"- Generated on: {hardware}; last generation {date}",
        "- Cost: seconds per 1k problems (prompt processing + generated tokens x the "
        "member's seconds per token at batch 2k + sandbox); token cost as the papers "
        "(generated tokens x price per token at $/hour)",
    ]
    for name, fp, price in zip(fam.members, fam.fingerprints, fam.prices, strict=True):
        rates = ", ".join(f"b={b}: {1000 * v:.1f} ms" for b, v in sorted(price.decode.items()))
        prompt_ms = 1000 * price.prompt_seconds_per_token
        lines.append(f"- {name}: model {fp[:23]}; prompt {prompt_ms:.2f} ms/token;"
                     f" decode {rates} per token; prices from {price.source}")
    lines += [
        "",
        "## Answer",
        "",
        f"On the test split ({int(sp.test.sum())} problems; a small sample: differences of a "
        "few points are within noise):",
        "",
        f"- Chosen theta: {h['theta']}. Why: {search.choice.reason}.",
        f"- Average saving of the cascade front against random single-member self-testing at "
        f"equal accuracy (+-1 point): {_pct(h['saving_vs_random'])} "  # type: ignore[arg-type]
        f"({h['saving_vs_random_skipped']} of {h['front_points']} front points had no baseline "
        "in their window); the papers report 26% on average, 70% at best.",
        f"- Stricter, against the single-member Pareto front interpolated at equal accuracy: "
        f"{_pct(h['saving_vs_front'])} ({h['saving_vs_front_skipped']} points outside "  # type: ignore[arg-type]
        "its range skipped).",
        "- The tiers' front (plans that check the user's examples, "
        f"{h['examples_front_points']} points) against the papers' single-member plans "
        f"(no examples): {_pct(h['examples_vs_papers_random'])} against random "  # type: ignore[arg-type]
        f"self-testing, {_pct(h['examples_vs_papers_front'])} against their front; the "  # type: ignore[arg-type]
        "figures above measure each point against single-member plans of its own kind "
        "(with examples, these include the largest member's greedy answer escalating "
        "to its own sampled stage).",
        f"- Best cascade pass@1: {_pct(h['best_cascade_pass'])} (test) against "  # type: ignore[arg-type]
        f"{h['largest_member']} greedy: {_pct(h['largest_greedy_pass'])}.",  # type: ignore[arg-type]
        "",
        "## Greedy baselines (pass@1 of each member's greedy solution)",
        "",
        "| member | validation | test | all |",
        "|---|---|---|---|",
    ]
    for name, greedy in zip(fam.members, fam.greedy_passed(), strict=True):
        lines.append(f"| {name} | {_pct(greedy[sp.validation].mean())} | "
                     f"{_pct(greedy[sp.test].mean())} | {_pct(greedy.mean())} |")
    lines += ["", "## Tiers written to the plan file", "",
              "| tier | plan | theta | val pass@1 | val s/1k | test pass@1 | test s/1k | "
              "test $/1k (tokens) |", "|---|---|---|---|---|---|---|---|"]
    from .calibrate import tier_names

    for name, row in zip(tier_names(len(search.tiers)), search.tiers, strict=True):
        lines.append(_row(search, row, name))
    lines += ["", "## The chosen front (validation), evaluated on the test split", "",
              "First-k figures select plans; `subsets` is the mean over "
              f"{SUBSET_DRAWS} random subsets of the cached samples.", "",
              "| plan | theta | val pass@1 | val s/1k | test pass@1 | test s/1k | test $/1k | "
              "test pass@1 (subsets) | test s/1k (subsets) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in search.choice.front:
        m = search.subset_means[row]
        lines.append(_row(search, row) + f" {_pct(m[0, TEST])} | {1000 * m[1, TEST]:.0f} |")
    lines += _savings_section(search)
    lines += examples_section(search)
    lines += _theta_section(search)
    lines += _singles_section(search)
    lines += ["", "## Plots", "", "![all plans](plots/plans.png)", "",
              "![theta sweep](plots/theta_sweep.png)", "",
              "![cost and accuracy](plots/cost_accuracy.png)", ""]
    del g
    return "\n".join(lines)


def _row(search: Search, row: int, name: str | None = None) -> str:
    plan = describe_plan(search.grid.plans[row], search.sim.slot_names,
                         search.grid.uses_examples(row))
    v = search.value
    cells = [plan, _theta(search, row), _pct(v(row, "pass_at_1", VAL)),
             f"{1000 * v(row, 'seconds', VAL):.0f}", _pct(v(row, "pass_at_1", TEST)),
             f"{1000 * v(row, 'seconds', TEST):.0f}",
             f"{1000 * v(row, 'token_cost', TEST):.4f}"]
    if name is not None:
        cells.insert(0, name)
    return "| " + " | ".join(cells) + " |"


def _savings_section(search: Search) -> list[str]:
    g = search.grid
    singles = np.flatnonzero(g.single_member())
    lines = ["", "## Savings of the chosen front (docs/method.md 4.6)", "",
             "| split | vs random single-member (+-1 pt) | skipped | vs single-member front "
             "(interpolated) | skipped |", "|---|---|---|---|---|"]
    for name, sp in SPLITS.items():
        cost, acc, tok = g.exact("seconds", sp), g.exact("pass_at_1", sp), g.exact("tokens", sp)
        a = saving_vs_random(search.choice.front, cost, acc, singles, g.groups())
        b = saving_vs_front(search.choice.front, cost, acc, singles, g.groups(), tok)
        lines.append(f"| {name} | {_pct(a.mean)} | {a.skipped} | {_pct(b.mean)} | {b.skipped} |")
    return lines


def has_examples(search: Search) -> np.ndarray:
    """bool per problem: the problem's prompt carries example lines (docs/method.md 7.1)."""
    return np.array([bool(d.examples) for d in search.family.data[0]], dtype=bool)


def plan_run(search: Search, row: int) -> Any:
    g = search.grid
    return search.sim.run_plan(g.plans[row], g.thetas[row], 0, g.uses_examples(row))


def _interval(passed: np.ndarray) -> str:
    from .evaluate import wilson

    n, k = len(passed), int(passed.sum())
    if not n:
        return "n/a"
    lo, hi = wilson(k, n)
    return f"{_pct(k / n)} ({_pct(lo)}-{_pct(hi)})"


def examples_section(search: Search) -> list[str]:
    """The fronts with and without examples on the test split, and the problems with
    and without examples apart, with 95% Wilson intervals (docs/method.md 7.7)."""
    g, sp = search.grid, search.split
    with_e = has_examples(search)
    test = sp.test
    lines = ["", "## With and without the user's examples (docs/method.md 7)", "",
             f"{int(with_e.sum())} of {len(with_e)} problems carry example lines "
             f"({int((with_e & test).sum())} of {int(test.sum())} on the test split). Each "
             "front is the validation front at the chosen theta among the plans with that "
             "setting; pass@1 on the test split with its 95% Wilson interval, overall and on "
             "the problems with and without examples; `verified` is the share of answers "
             "labelled verified, `precision` the share of those that pass the hidden tests.",
             "", "| examples | plan | theta | test pass@1 | with examples | without | "
             "test s/1k | verified | precision | failed examples, labelled verified |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    cost, acc, tok = g.exact("seconds", VAL), g.exact("pass_at_1", VAL), g.exact("tokens", VAL)
    chosen = g.thetas[search.choice.front[0]]
    for flag in (False, True):
        rows = [i for i in range(len(g)) if g.uses_examples(i) == flag and g.thetas[i] == chosen]
        if not rows:
            continue
        for row in pareto(cost, acc, tok, rows):
            run = plan_run(search, row)
            verified = run.verified
            label = int(verified[test].sum())
            right = int((verified & run.passed)[test].sum())
            bad = _failed_but_verified(search, row, run) if flag else "n/a"
            lines.append(
                f"| {'yes' if flag else 'no'} | "
                f"{describe_plan(g.plans[row], search.sim.slot_names)} | {_theta(search, row)} | "
                f"{_interval(run.passed[test])} | {_interval(run.passed[test & with_e])} | "
                f"{_interval(run.passed[test & ~with_e])} | "
                f"{1000 * g.metric('seconds', TEST)[row]:.0f} | "
                f"{_pct(label / max(int(test.sum()), 1))} | "
                f"{_pct(right / label) if label else 'n/a'} | {bad} |")
    return lines


def _failed_but_verified(search: Search, row: int, run: Any) -> int:
    """Answers on test problems with examples that failed an example line but are
    labelled verified (the target is none)."""
    count = 0
    for p in np.flatnonzero(search.split.test & has_examples(search)).tolist():
        slot = int(run.answered_by[p])
        d = search.family.data[search.sim.slots[slot]][p]
        k = search.grid.plans[row][slot][0]
        item = answer_item(k, int(run.best[p]))
        if d.example_passed is None:
            continue
        ok = bool(d.example_passed[d.ex.solution_index[item]].all())
        count += int(bool(run.verified[p]) and not ok)
    return count


def _theta_section(search: Search) -> list[str]:
    lines = ["", "## Theta sweep (validation fronts)", "",
             "| theta | front points | saving vs random single-member | skipped |",
             "|---|---|---|---|"]
    for theta, s in sorted(search.choice.savings.items()):
        label = ", ".join(f"{t / 10:.1f}" for t in theta) or "per boundary"
        n = len(s.per_point)
        lines.append(f"| {label} | {n} | {_pct(s.mean)} | {s.skipped} |")
    return lines


def _singles_section(search: Search) -> list[str]:
    g = search.grid
    lines = ["", "## Single-member self-testing plans", "",
             "| plan | val pass@1 | val s/1k | test pass@1 | test s/1k | test $/1k |",
             "|---|---|---|---|---|---|"]
    seen = set()
    rows = sorted(np.flatnonzero(g.single_member()).tolist(),
                  key=lambda r: (next(m for m, (k, _) in enumerate(g.plans[r]) if k >= 0), r))
    for row in rows:
        if g.plans[row] in seen:
            continue
        seen.add(g.plans[row])
        cells = _row(search, int(row)).split(" | ")
        del cells[1]  # theta does not apply to a single member
        lines.append(" | ".join(cells))
    return lines


# ---------------------------------------------------------------------------
# Plots


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "cascode"
    return plt


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)


def _plot_all_plans(search: Search, path: Path) -> None:
    plt = _figure()
    g = search.grid
    rows = np.array([i for i, t in enumerate(g.thetas) if t == g.thetas[search.choice.front[0]]])
    cost, acc = g.metric("seconds", VAL), g.metric("pass_at_1", VAL)
    singles = np.flatnonzero(g.single_member())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(1000 * cost[rows], 100 * acc[rows], s=10, c="0.7", label="all plans")
    ax.scatter(1000 * cost[singles], 100 * acc[singles], s=14, c="tab:orange",
               label="single-member plans")
    sf = pareto(g.exact("seconds", VAL), g.exact("pass_at_1", VAL), g.exact("tokens", VAL),
                singles)
    ax.plot(1000 * cost[sf], 100 * acc[sf], "-o", c="tab:orange", ms=4,
            label="single-member front")
    f = search.choice.front
    ax.plot(1000 * cost[f], 100 * acc[f], "-o", c="tab:blue", ms=5, label="cascade front")
    ax.set_xlabel("time cost, seconds per 1k problems (validation)")
    ax.set_ylabel("pass@1 (%)")
    ax.set_title(f"Every plan at the chosen theta on {search.family.dataset.name}")
    ax.legend(fontsize=8)
    _save(fig, path)


def _plot_theta_sweep(search: Search, path: Path) -> None:
    plt = _figure()
    g = search.grid
    multi = [r for r in search.choice.front if sum(k >= 0 for k, _ in g.plans[r]) > 1]
    row = multi[-1] if multi else search.choice.front[-1]
    plan = g.plans[row]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    thetas, accs, costs = [], [], []
    for i, (p, t) in enumerate(zip(g.plans, g.thetas, strict=True)):
        if p == plan and len(t) == 1:
            thetas.append(t[0] / 10)
            accs.append(100 * g.metric("pass_at_1", VAL)[i])
            costs.append(1000 * g.metric("seconds", VAL)[i])
    ax.plot(thetas, accs, "-o", c="tab:blue", label="pass@1 (%)")
    ax.set_xlabel("theta")
    ax.set_ylabel("pass@1 (%)")
    ax2 = ax.twinx()
    ax2.plot(thetas, costs, "-s", c="tab:red", label="seconds per 1k problems")
    ax2.set_ylabel("seconds per 1k problems")
    ax.set_title(f"Theta sweep: {describe_plan(plan, search.sim.slot_names)}", fontsize=9)
    _save(fig, path)


def _plot_curves(search: Search, path: Path) -> None:
    plt = _figure()
    g = search.grid
    cost, acc = g.metric("seconds", TEST), g.metric("pass_at_1", TEST)
    exact = g.exact("seconds", TEST), g.exact("pass_at_1", TEST), g.exact("tokens", TEST)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    singles = np.flatnonzero(g.single_member())
    # The validation front, kept where it is still a front on the test split.
    front = pareto(*exact, search.choice.front)
    curves = [("cascade (chosen front)", front, "tab:blue")]
    colors = ["tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for m, name in enumerate(search.family.members):
        mine = np.array([i for i in singles
                         if any(k >= 0 and search.sim.slots[j] == m
                                for j, (k, _) in enumerate(g.plans[i]))])
        curves.append((f"{name} alone", pareto(*exact, mine), colors[m % len(colors)]))
    for label, rows, color in curves:
        x, y = 1000 * cost[rows], 100 * acc[rows]
        line = ax.plot(x, y, "o", ms=4, c=color)[0]
        if len(rows) >= 2 and np.all(np.diff(x) > 0):
            xs = np.linspace(x[0], x[-1], 100)
            ax.plot(xs, pchip(x, y, xs), "-", c=line.get_color(), label=label)
        else:
            line.set_label(label)
    ax.set_xlabel("time cost, seconds per 1k problems (test)")
    ax.set_ylabel("pass@1 (%)")
    ax.set_title("Cost and accuracy: cascade against single members (PCHIP)")
    ax.legend(fontsize=8)
    _save(fig, path)


def pchip(x: np.ndarray, y: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Monotone piecewise cubic Hermite interpolation (Fritsch-Carlson, as SciPy's
    PchipInterpolator): the curve never overshoots between front points."""
    h = np.diff(x)
    delta = np.diff(y) / h
    d = np.zeros_like(y, dtype=float)
    if len(x) == 2:
        d[:] = delta[0]
    else:
        for i in range(1, len(x) - 1):
            if delta[i - 1] * delta[i] > 0:
                w1, w2 = 2 * h[i] + h[i - 1], h[i] + 2 * h[i - 1]
                d[i] = (w1 + w2) / (w1 / delta[i - 1] + w2 / delta[i])
        d[0] = _end_slope(h[0], h[1], delta[0], delta[1])
        d[-1] = _end_slope(h[-1], h[-2], delta[-1], delta[-2])
    j = np.clip(np.searchsorted(x, xs) - 1, 0, len(x) - 2)
    t = (xs - x[j]) / h[j]
    h00, h10 = (1 + 2 * t) * (1 - t) ** 2, t * (1 - t) ** 2
    h01, h11 = t * t * (3 - 2 * t), t * t * (t - 1)
    out: np.ndarray = h00 * y[j] + h10 * h[j] * d[j] + h01 * y[j + 1] + h11 * h[j] * d[j + 1]
    return out


def _end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3 * m0):
        return 3 * m0
    return float(d)
