"""The acceptance run of `cascode calibrate` on the real embedded family (slow).

Five HumanEval problems, three samples: the 0.5B and 1.5B models generate, the
real sandbox executes, and the plan file and report come out. With so few
problems the split gives up after 100 draws and says so, and plans with k > 3
are skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cascode import cli
from cascode.engine.plans import load_plan


def _models_installed() -> bool:
    from cascode.engine.errors import ModelError
    from cascode.engine.models import resolve_model_file

    try:
        for plan_member in load_plan().family:
            resolve_model_file(plan_member.model)
    except ModelError:
        return False
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_calibrate_five_humaneval_problems_end_to_end(tmp_path: Path, capsys):
    if not _models_installed():
        pytest.skip("the embedded models or llama-cpp-python are not installed")
    out = tmp_path / "cal"
    args = ["calibrate", "--dataset", "humaneval", "--limit", "5", "--samples", "3",
            "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    plan = load_plan(out / "plan.yaml")
    assert [m.name for m in plan.family] == ["qwen-0.5b", "qwen-1.5b"]
    for tier in plan.tiers.values():
        assert all(stage.k <= 3 for stage in tier.stages.values())  # k > N skipped
    report = (out / "report.md").read_text()
    assert "no draw in 100" in report and "kept the closest" in report
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
    assert replay(plan, family.simulator(3)) == []
    # Rerunning generates nothing: everything is cached.
    assert cli.main([*args[:-1], "--offline", "--no-progress"]) == 0
    assert "0 member-problems generated" in capsys.readouterr().err
