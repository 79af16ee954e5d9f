"""Prices (`--measure`) and the per-boundary theta search, on the synthetic family."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascode.benchmarks import calibrate as cal
from cascode.benchmarks.outputs import write_outputs
from cascode.benchmarks.prices import measure_member, save_price, stored_price
from cascode.benchmarks.replay import replay
from cascode.benchmarks.synthetic import ArithmeticSandbox, ScriptedBackend, synthetic_dataset
from cascode.engine.plans import load_plan, parse_plan

from .conftest import Factory, family_plan


def test_measured_prices_are_stored_and_used(tmp_path: Path):
    backend = ScriptedBackend("small", 0.5, 0.5, seconds_per_token=0.01)
    tasks = [p.task for p in synthetic_dataset(2).problems]
    entry = measure_member(backend, tasks, max_tokens=16)
    assert set(entry["decode_seconds_per_token"]) == {"1", "2", "6", "10", "20"}
    assert entry["decode_seconds_per_token"]["20"] == pytest.approx(0.01)
    save_price(tmp_path / "prices.json", "small", "spec:abc", entry)
    price = stored_price(tmp_path / "prices.json", "small", "spec:abc", 0.44)
    assert price is not None and price.source.startswith("measured")
    assert price.decode_seconds_per_token(4) == pytest.approx(0.01)
    assert price.dollars_per_token == pytest.approx(0.01 * 0.44 / 3600)
    # Another model file: the stored price does not apply.
    assert stored_price(tmp_path / "prices.json", "small", "spec:other", 0.44) is None


def test_calibration_uses_measured_prices(plan_file: Path, tmp_path: Path):
    from cascode.benchmarks.sampling import member_fingerprint

    plan = load_plan(plan_file)
    for member in plan.family:
        entry = {"prompt_seconds_per_token": 0.001,
                 "decode_seconds_per_token": {"1": 0.05, "20": 0.01}}
        save_price(tmp_path / "prices.json", member.name, member_fingerprint(member), entry)
    family = cal.load_family_data(plan, synthetic_dataset(6), cal.Settings(out=tmp_path,
                                  progress=False), backend_factory=Factory(),
                                  sandbox_factory=ArithmeticSandbox)
    assert all(p.source.startswith("measured") for p in family.prices)
    assert family.prices[0].decode_seconds_per_token(20) == 0.01


def test_per_boundary_thetas_make_a_valid_plan_that_replays(tmp_path: Path):
    plan = parse_plan(family_plan(["small", "medium", "large"]))
    settings = cal.Settings(out=tmp_path, progress=False, per_boundary=True, max_tiers=5)
    family = cal.load_family_data(plan, synthetic_dataset(20), settings,
                                  backend_factory=Factory(), sandbox_factory=ArithmeticSandbox)
    result = write_outputs(cal.search(family, settings))
    written = load_plan(tmp_path / "plan.yaml")
    assert all(isinstance(t.theta, tuple) for t in written.tiers.values())
    assert replay(written, result.sim) == []
