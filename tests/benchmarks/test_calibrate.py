"""The calibration end to end on a synthetic family: outputs, resuming, reproducibility."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascode import cli
from cascode.benchmarks import calibrate as cal
from cascode.benchmarks.datasets import load_dataset
from cascode.benchmarks.outputs import calibrate
from cascode.benchmarks.synthetic import ArithmeticSandbox, synthetic_dataset
from cascode.engine.plans import load_plan

from .conftest import Factory


def _run(plan_file: Path, out: Path, factory: Factory, n: int = 30, dataset=None, **kw):
    settings = cal.Settings(out=out, progress=False, **kw)
    return calibrate(load_plan(plan_file), dataset or synthetic_dataset(n), settings,
                         backend_factory=factory, sandbox_factory=ArithmeticSandbox)


def test_calibration_writes_a_loadable_plan_and_a_report(plan_file: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = _run(plan_file, out, Factory())
    plan = load_plan(out / "plan.yaml")
    from cascode.benchmarks.calibrate import tier_names

    assert list(plan.tiers) == tier_names(len(result.tiers))
    # The default tier is the front point that saves most (or the middle one).
    assert plan.default_tier == tier_names(len(result.tiers))[result.tiers.index(result.default)]
    assert [m.name for m in plan.family] == ["small", "large"]
    first = plan.tiers[next(iter(plan.tiers))]
    assert first.measured is not None and set(first.measured) == {"validation", "test", "all"}
    assert plan.calibration is not None and plan.calibration["split_seed"] == result.split.seed
    costs = [t.measured["validation"]["seconds_per_1k"] for t in plan.tiers.values()]
    passes = [t.measured["validation"]["pass_at_1"] for t in plan.tiers.values()]
    assert costs == sorted(costs) and passes == sorted(passes)  # cheapest to most accurate
    report = (out / "report.md").read_text()
    for needle in ("## Answer", "Chosen theta", "26% on average", "Greedy baselines",
                   "Savings of the chosen front", "plots/plans.png",
                   "With and without the user's examples", "the papers' single-member plans"):
        assert needle in report
    for png in ("plans.png", "theta_sweep.png", "cost_accuracy.png"):
        assert (out / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    assert (out / "samples" / "small.jsonl.gz").exists()  # packed for committing
    assert not (out / "samples" / "small.jsonl").exists()


def test_a_killed_run_resumes_without_generating_twice(plan_file: Path, tmp_path: Path):
    out = tmp_path / "out"
    killed = Factory(fail_after=7)
    with pytest.raises(KeyboardInterrupt):
        _run(plan_file, out, killed)
    assert killed.calls == 7
    resumed = Factory()
    _run(plan_file, out, resumed)
    # 30 problems x 2 members, 7 of them done before the kill: one call per problem.
    assert resumed.calls == 60 - 7
    again = Factory()
    _run(plan_file, out, again)
    assert again.calls == 0


def test_regenerating_from_the_caches_gives_the_same_bytes(plan_file: Path, tmp_path: Path):
    out = tmp_path / "out"
    _run(plan_file, out, Factory(), dataset=load_dataset(str(_dataset_file(tmp_path))))
    before = {p: (out / p).read_bytes() for p in ("plan.yaml", "report.md")}
    (out / "plan.yaml").unlink()
    code = cli.main(["calibrate", "--dataset", "x", "--offline"])  # bad dataset: clear error
    assert code == 1
    args = ["calibrate", "--plan", str(plan_file), "--out", str(out), "--offline",
            "--no-progress", "--dataset", str(_dataset_file(tmp_path))]
    assert cli.main(args) == 0
    assert {p: (out / p).read_bytes() for p in before} == before


def test_offline_run_with_missing_caches_fails_clearly(plan_file: Path, tmp_path: Path, capsys):
    args = ["calibrate", "--plan", str(plan_file), "--out", str(tmp_path / "empty"),
            "--offline", "--no-progress", "--dataset", str(_dataset_file(tmp_path))]
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cascode: error: --offline: small: 30 of 30 problems are not")


def _dataset_file(tmp_path: Path) -> Path:
    """The synthetic dataset as a HumanEval-format JSONL (what a user would pass)."""
    import json

    from cascode.benchmarks.synthetic import synthetic_records

    path = tmp_path / "synthetic.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in synthetic_records(30)))
    return path


def test_several_problems_in_flight_give_the_same_caches(plan_file: Path, tmp_path: Path):
    one, four = Factory(), Factory()
    a = _run(plan_file, tmp_path / "one", one, n=12)
    b = _run(plan_file, tmp_path / "four", four, n=12, concurrency=4)
    assert one.calls == four.calls == 24
    assert (tmp_path / "one" / "samples" / "small.jsonl.gz").exists()
    assert [len(d) for d in a.family.data] == [len(d) for d in b.family.data] == [12, 12]
    for da, db in zip(a.family.data[1], b.family.data[1], strict=True):
        assert da.ex.solutions == db.ex.solutions and da.ex.tests == db.ex.tests
