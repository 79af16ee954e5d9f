"""The shipped calibration: committed caches complete, plan and report reproducible.

The caches of the full HumanEval run of the embedded family, sampled through the
machine's model server, live in benchmarks/results/humaneval-server/ (see
benchmarks/README.md for how the run is made in chunks). These tests read them:
without the committed plan they skip, and fail under CI=true (the checkout is
incomplete).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from cascode import cli
from cascode.benchmarks.datasets import load_dataset
from cascode.benchmarks.store import RecordStore
from cascode.engine.plans import load_plan

from ..conftest import need

ROOT = Path(__file__).parents[2]
RESULTS = Path("benchmarks") / "results" / "humaneval-server"
SHIPPED = ROOT / RESULTS


@pytest.fixture(autouse=True)
def _shipped() -> None:
    need((SHIPPED / "plan.yaml").exists(), f"the full HumanEval calibration is not in {SHIPPED}")


def test_committed_caches_are_complete():
    plan = load_plan(SHIPPED / "plan.yaml")
    samples = int(plan.calibration["samples"])
    problems = {p.task_id for p in load_dataset("humaneval").problems}
    for member in plan.family:
        records = RecordStore(SHIPPED / "samples" / member.name).records.values()
        full = [r for r in records if r["samples"] == samples]
        assert {r["task_id"] for r in full} >= problems, member.name
        for r in records:  # an evaluation may sample fewer (`cascode evaluate --samples`)
            assert r["greedy_solution"]["text"] is not None and r["greedy_test"] is not None
            assert len(r["solutions"]) == r["samples"] == len(r["tests"])
        executed = RecordStore(SHIPPED / "executions" / member.name).records.values()
        assert {r["task_id"] for r in executed} >= problems, member.name
        # Every record says how many test prompt tokens a stage evaluates.
        counted = RecordStore(SHIPPED / "prompts" / member.name).records
        assert all(r["greedy_test"].get("prompt_tokens_evaluated") is not None
                   or r["key"] in counted for r in records), member.name


def test_regenerating_the_shipped_plan_and_report_is_byte_identical(tmp_path, monkeypatch):
    shutil.copytree(SHIPPED, tmp_path / RESULTS)
    monkeypatch.chdir(tmp_path)
    for name in ("plan.yaml", "report.md"):
        (tmp_path / RESULTS / name).unlink()
    template = load_plan(SHIPPED / "plan.yaml").template
    args = ["calibrate", "--dataset", "humaneval", "--out", str(RESULTS), "--offline",
            "--no-progress", "--template", str(template),
            "--write-plan", str(tmp_path / "default.yaml")]
    assert cli.main(args) == 0
    for name in ("plan.yaml", "report.md"):
        assert (tmp_path / RESULTS / name).read_bytes() == (SHIPPED / name).read_bytes(), name
    shipped_plan = (ROOT / "plans" / "default.yaml").read_bytes()
    assert (tmp_path / "default.yaml").read_bytes() == shipped_plan


def test_evaluate_reproduces_the_test_split_of_the_default_plan(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(ROOT)
    args = ["evaluate", "plans/default.yaml", "--dataset", "humaneval", "--split", "test",
            "--offline", "--no-progress", "--out", str(tmp_path), "--tolerance", "0"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    tiers = yaml.safe_load((ROOT / "plans" / "default.yaml").read_text())["tiers"]
    for name, tier in tiers.items():
        line = next(r for r in printed.splitlines() if r.startswith(name + " "))
        assert f"{100 * tier['measured']['test']['pass_at_1']:.1f}%" in line and "+0.0" in line


def test_shipped_caches_replay_through_the_live_cascade():
    """Every tier of the shipped plan, on 30 problems: the live cascade fed from the
    committed caches takes the simulator's decisions (the answering stage, its
    solution, the label), on 20 problems with examples and 10 without, and the
    pool answers from an earlier stage somewhere."""
    from cascode.benchmarks import calibrate as cal
    from cascode.benchmarks.datasets import select
    from cascode.benchmarks.replay import CachedBackend, CachedSandbox, replay
    from cascode.engine.cascade import Cascade
    from cascode.engine.examples import task_examples

    plan = load_plan(SHIPPED / "plan.yaml")
    samples = int(plan.calibration["samples"])
    full = load_dataset("humaneval")
    # 20 problems with examples (from the 71st on: HumanEval/77 and 86 are among them,
    # where the balanced tier's pool keeps the 0.5B's candidate after the 1.5B ran) and
    # 10 without.
    with_examples = [p for p in full.problems[70:] if task_examples(p.task)][:20]
    without = [p for p in full.problems if not task_examples(p.task)][:10]
    chosen = {p.task_id for p in with_examples + without}
    dataset = select(full, tasks=",".join(p.task_id for p in full.problems
                                          if p.task_id in chosen))
    settings = cal.Settings(out=SHIPPED, samples=samples, progress=False,
                            template=plan.template)
    family = cal.load_family_data(plan, dataset, settings, generate=False)
    sim = family.simulator(samples, repeat_last=True)
    assert sum(bool(d.examples) for d in sim.data[0]) == 20 and sim.n_problems == 30
    assert replay(plan, sim) == []
    backends = {name: CachedBackend(name, sim.data[m], plan.template)
                for m, name in enumerate(sim.members)}
    cascade = Cascade(plan, backends, CachedSandbox(sim.data), template=plan.template)
    earlier = [
        (tier, p) for tier in plan.tiers for p in range(sim.n_problems)
        if (r := cascade.run(sim.data[0][p].problem.task, tier)).answer_stage
        not in (-1, len(r.stages) - 1)
    ]
    assert earlier, "no shipped tier answered from an earlier stage's candidate"


def test_everyday_report_is_reproduced_from_the_committed_caches(monkeypatch, capsys, tmp_path):
    """The default plan's figures on the everyday problems (not calibrated on) come from
    the committed caches alone; the tiers fall outside 5 points, hence exit 3."""
    monkeypatch.chdir(ROOT)
    args = ["evaluate", "plans/default.yaml", "--dataset", "everyday", "--offline",
            "--cache", "benchmarks/results/humaneval", "--no-progress", "--out", str(tmp_path)]
    assert cli.main(args) == 3
    assert "0 member-problems generated" in capsys.readouterr().err
    name = "default-everyday-all.md"
    shipped = ROOT / "benchmarks" / "results" / "everyday" / name
    assert (tmp_path / name).read_text() == shipped.read_text()
