"""The everyday problems (benchmarks/data/everyday.jsonl): well-formed, and their
reference solutions pass their hidden tests in the real sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cascode.benchmarks.datasets import load_dataset
from cascode.engine.types import Verdict

from ..conftest import need_sandbox

DATA = Path(__file__).parents[2] / "benchmarks" / "data" / "everyday.jsonl"


@pytest.fixture(scope="module")
def sandbox():
    from cascode.engine.sandbox import create_sandbox

    box = create_sandbox()
    need_sandbox(box)
    yield box
    box.close()


def test_at_least_30_problems_in_humaneval_format():
    ds = load_dataset("everyday")
    assert len(ds.problems) >= 30
    assert len({p.task.entry_point for p in ds.problems}) == len(ds.problems)
    assert load_dataset(str(DATA)).fingerprint == ds.fingerprint


@pytest.mark.e2e
def test_reference_solutions_pass_and_wrong_ones_fail(sandbox):
    records = [json.loads(line) for line in DATA.read_text().splitlines()]
    problems = {p.task_id: p for p in load_dataset("everyday").problems}
    for r in records:
        problem = problems[r["task_id"]]
        good = problem.program(r["prompt"] + r["canonical_solution"])
        assert sandbox.run_program(good) == Verdict.PASSED, r["task_id"]
        bad = problem.program(r["prompt"] + "    return None\n")
        assert sandbox.run_program(bad) != Verdict.PASSED, r["task_id"]
