"""The typing benchmark's replay: what it types puts the file back as it stands, and its
runs alternate so that the prompt cache never holds the same function twice in a row."""

from __future__ import annotations

from cascode.benchmarks.realcode import read_records
from cascode.benchmarks.server_bench import served_plan
from cascode.benchmarks.typing_bench import (
    SPEC_MODES,
    chunks,
    schedule,
    speculative_plan,
    summary,
    table,
    typings,
)
from cascode.engine.plans import load_plan


def test_typing_the_docstring_back_gives_the_file_as_it_stands():
    records = {r.id: r for r in read_records()}
    problems = typings("test", 100)
    assert len(problems) >= 6
    assert len({p.path.split("/")[0] for p in problems[:5]}) == 5  # every project first
    for p in problems:
        source = records[p.id].source
        lines = p.opened.split("\n")
        cut = sum(len(x) + 1 for x in lines[: p.start[0]]) + p.start[1]
        assert p.opened[:cut] + p.typed + p.opened[cut:] == source, p.id
        assert p.typed.lstrip().startswith(('"""', "'''", 'r"""')), p.id
        assert "".join(chunks(p.typed)) == p.typed
        assert 0 < len(p.typed) <= 400


def test_the_schedule_alternates_modes_and_never_repeats_a_problem_in_a_row():
    problems = typings("test", 4)
    runs = schedule(problems, ["fast", "balanced"])
    assert len(runs) == 16
    for tier in ("fast", "balanced"):
        mine = [(p.id, mode) for t, p, mode in runs if t == tier]
        assert sorted(mine) == sorted((p.id, m) for p in problems for m in ("off", "prefill"))
        assert [m for _, m in mine[:4]] == ["off", "prefill", "off", "prefill"]
    assert all(a[1].id != b[1].id for a, b in zip(runs, runs[1:], strict=False))


def test_with_speculation_every_problem_runs_in_every_mode_once_per_tier():
    problems = typings("test", 6)
    runs = schedule(problems, ["fast"], SPEC_MODES)
    assert sorted((p.id, m) for _, p, m in runs) == sorted(
        (p.id, m) for p in problems for m in SPEC_MODES)
    # Each round gives every mode to some problem: drift falls on all four.
    for r in range(4):
        assert {m for _, _, m in runs[6 * r:6 * r + 4]} == set(SPEC_MODES)
    assert all(a[1].id != b[1].id for a, b in zip(runs, runs[1:], strict=False))


def test_the_speculative_plan_drafts_the_big_member_with_the_small_one(tmp_path):
    plan = load_plan(speculative_plan(served_plan(tmp_path), tmp_path))
    small, big = plan.family
    assert dict(small.options) == {"model_server": True, "speculative": "ngram"}
    assert dict(big.options) == {"model_server": True, "speculative": small.model}
    assert list(plan.tiers) == list(load_plan(None).tiers)


def test_the_summary_compares_each_tier_with_its_own_off_runs():
    rows = [{"tier": "fast", "mode": m, "seconds": s, "prompt_tokens": 100,
             "prompt_tokens_evaluated": e, "warmed_before_request": w}
            for m, s, e, w in [("off", 4.0, 100, 0), ("off", 6.0, 90, 0),
                               ("prefill", 2.0, 5, 1), ("prefill", 3.0, 10, 1)]]
    (off, on) = summary(rows, ["fast"])
    assert (off["p50_s"], off["vs_off"], off["evaluated_p50"]) == (5.0, 1.0, 95)
    assert (on["p50_s"], on["vs_off"], on["warmed"]) == (2.5, 0.5, 2)


def test_the_summary_counts_each_functions_first_request_apart():
    # A model server keeps earlier prompts: only a function's first request in the run
    # is sure to evaluate its prompt, whatever the mode.
    rows = [{"id": i, "tier": "fast", "mode": m, "seconds": s, "prompt_tokens": 100,
             "prompt_tokens_evaluated": 1, "warmed_before_request": 0}
            for i, m, s in [("a", "off", 8.0), ("b", "prefill", 2.0), ("a", "prefill", 1.0),
                            ("b", "off", 3.0), ("c", "off", 6.0)]]
    (off, on) = summary(rows, ["fast"])
    assert (off["p50_s"], off["first_requests"], off["p50_first_s"]) == (6.0, 2, 7.0)
    assert (on["p50_s"], on["first_requests"], on["p50_first_s"]) == (1.5, 1, 2.0)
    assert "7.0 (2)" in table([off, on])


def test_the_summary_orders_the_speculation_modes_after_prefill():
    rows = [{"id": m, "tier": "fast", "mode": m, "seconds": s, "prompt_tokens": 10,
             "prompt_tokens_evaluated": 1, "warmed_before_request": 0}
            for m, s in [("both", 1.0), ("speculation", 3.0), ("prefill", 2.0), ("off", 4.0)]]
    summ = summary(rows, ["fast"])
    assert [(s["mode"], s["vs_off"]) for s in summ] == [
        ("off", 1.0), ("prefill", 0.5), ("speculation", 0.75), ("both", 0.25)]


def test_a_functions_first_request_on_the_speculative_servers_counts_as_first():
    # Their model servers hold only what the speculative modes asked for.
    rows = [{"id": "a", "tier": "fast", "mode": m, "seconds": s, "prompt_tokens": 10,
             "prompt_tokens_evaluated": 1, "warmed_before_request": 0}
            for m, s in [("off", 4.0), ("speculation", 6.0), ("prefill", 2.0), ("both", 3.0)]]
    by_mode = {s["mode"]: s for s in summary(rows, ["fast"])}
    assert [by_mode[m]["first_requests"] for m in SPEC_MODES] == [1, 0, 1, 0]
    assert by_mode["speculation"]["p50_first_s"] == 6.0
