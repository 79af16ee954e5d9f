"""Tiers that follow the load (engine/load.py): the rule as a function of the plan's
measured figures and the servers' reported load, without a server."""

from __future__ import annotations

import pytest

from cascode.engine.load import (
    ServerLoad,
    choose_tier,
    default_budget,
    estimate,
    llama_server_load,
    parse_metrics,
    replay,
    tier_figures,
    vllm_load,
)
from cascode.engine.plans import parse_plan

PLAN = """
family:
- {name: small, backend: llama_cpp, model: small.gguf}
- {name: big, backend: llama_cpp, model: big.gguf}
default_tier: balanced
tiers:
  fastest:
    theta: 0.5
    stages: {small: {k: 0}}
    measured: {all: {problems: 10, pass_at_1: 0.55, seconds_per_1k: 3000}}
  fast:
    theta: 0.5
    stages: {small: {k: 0}, big: {k: 0}}
    measured: {all: {problems: 10, pass_at_1: 0.70, seconds_per_1k: 6000}}
  balanced:
    theta: 0.5
    stages: {small: {k: 0}, big: {k: 3, l: 2}}
    measured: {test: {problems: 10, pass_at_1: 0.74, seconds_per_1k: 12000}}
  accurate:
    theta: 0.5
    stages: {big: {k: 5, l: 2}}
    measured: {all: {problems: 10, pass_at_1: 0.76, seconds_per_1k: 20000}}
  unmeasured:
    theta: 0.5
    stages: {small: {k: 1, l: 2}}
"""


@pytest.fixture
def plan():  # type: ignore[no-untyped-def]
    return parse_plan(PLAN, "test.yaml")


def test_the_figures_come_from_the_measured_block(plan) -> None:
    figures = tier_figures(plan)
    assert set(figures) == {"fastest", "fast", "balanced", "accurate"}
    assert figures["balanced"].seconds == 12.0 and figures["balanced"].pass_at_1 == 0.74
    assert figures["fast"].members == ("small", "big")
    assert default_budget(plan, "balanced") == 24.0
    assert default_budget(plan, "unmeasured") is None


def test_an_idle_server_runs_the_tier_asked_for(plan) -> None:
    idle = {"small": ServerLoad(0, 0), "big": ServerLoad(0, 0)}
    choice = choose_tier(plan, "balanced", 24.0, idle)
    assert choice.tier == "balanced" and choice.reason == "" and not choice.stepped_down


def test_a_queue_steps_down_to_the_most_accurate_tier_that_fits(plan) -> None:
    # 3 sequences running and 2 waiting on the big member's server: slowdown 6 on a CPU.
    loads = {"small": ServerLoad(0, 0), "big": ServerLoad(3, 2)}
    choice = choose_tier(plan, "balanced", 24.0, loads)
    assert choice.estimates["balanced"] == 72.0 and choice.estimates["fast"] == 36.0
    assert choice.tier == "fastest"  # the only tier without the big member
    assert choice.reason.startswith("server busy: big 3 running, 2 waiting; fastest tier")
    assert "instead of balanced" in choice.reason and "24 s budget" in choice.reason


def test_concurrency_is_how_many_sequences_run_at_full_speed(plan) -> None:
    loads = {"small": ServerLoad(0, 0), "big": ServerLoad(3, 2)}
    # A GPU server that runs 8 sequences at full speed is not slowed by 5.
    choice = choose_tier(plan, "balanced", 24.0, loads, {"big": 8, "small": 8})
    assert choice.tier == "balanced"
    # With 4, the slowdown is 6/4 = 1.5: balanced takes 18 s, which fits.
    assert choose_tier(plan, "balanced", 24.0, loads, {"big": 4}).tier == "balanced"
    assert choose_tier(plan, "balanced", 17.0, loads, {"big": 4}).tier == "fast"


def test_never_dearer_than_the_tier_asked_for(plan) -> None:
    idle = {"small": ServerLoad(0, 0), "big": ServerLoad(0, 0)}
    assert choose_tier(plan, "fast", 1000.0, idle).tier == "fast"


def test_when_nothing_fits_the_cheapest_runs_and_says_so(plan) -> None:
    loads = {"small": ServerLoad(10, 5), "big": ServerLoad(10, 5)}
    choice = choose_tier(plan, "balanced", 5.0, loads)
    assert choice.tier == "fastest"
    assert "no tier fits the 5 s budget" in choice.reason
    alone = choose_tier(plan, "fastest", 5.0, loads)
    assert alone.tier == "fastest" and "no tier fits" in alone.reason


def test_no_budget_or_no_figures_runs_the_tier_as_asked(plan) -> None:
    busy = {"small": ServerLoad(10, 5), "big": ServerLoad(10, 5)}
    assert choose_tier(plan, "balanced", None, busy).tier == "balanced"
    assert choose_tier(plan, "balanced", 0, busy).tier == "balanced"
    assert choose_tier(plan, "unmeasured", 5.0, busy).tier == "unmeasured"


def test_an_unknown_load_counts_as_idle(plan) -> None:
    figures = tier_figures(plan)["fast"]
    assert estimate(figures, {}) == 6.0
    assert estimate(figures, {"small": None, "big": ServerLoad(1, 0)}) == 12.0


def test_llama_server_and_vllm_reports_are_read() -> None:
    text = """# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 3
llamacpp:requests_deferred 2
vllm:num_requests_running{model_name="m"} 4
vllm:num_requests_running{model_name="n"} 1
vllm:num_requests_waiting{model_name="m"} 7
garbage line
vllm:gpu_cache_usage_perc NaN
"""
    metrics = parse_metrics(text)
    assert metrics["llamacpp:requests_deferred"] == 2.0
    assert metrics["vllm:num_requests_running"] == 5.0  # labels summed over
    assert "vllm:gpu_cache_usage_perc" not in metrics
    assert llama_server_load(None, metrics) == ServerLoad(3, 2, 0, "llama-server /metrics")
    slots = [{"id": 0, "is_processing": True}, {"id": 1, "is_processing": False}]
    assert llama_server_load(slots, metrics).running == 1
    assert llama_server_load(slots, metrics).slots == 2
    assert vllm_load(metrics) == ServerLoad(5, 7, 0, "vLLM /metrics")


def test_a_recorded_trace_replays_the_live_decisions(plan) -> None:
    trace = [
        {"small": ServerLoad(0, 0), "big": ServerLoad(0, 0)},
        {"small": ServerLoad(0, 0), "big": ServerLoad(1, 0)},
        {"small": ServerLoad(2, 0), "big": ServerLoad(3, 3)},
    ]
    replayed = replay(plan, "balanced", 24.0, trace)
    assert [c.tier for c in replayed.choices] == ["balanced", "balanced", "fastest"]
    assert replayed.choices == tuple(choose_tier(plan, "balanced", 24.0, t) for t in trace)
    assert replayed.pass_at_1 == pytest.approx((0.74 + 0.74 + 0.55) / 3)
    assert replayed.seconds == pytest.approx((12.0 + 24.0 + 9.0) / 3)
    # And a load survives its JSON form (the benchmark records traces as JSON).
    load = ServerLoad(3, 1, 8, "llama-server /slots")
    assert ServerLoad.from_json(load.to_json()) == load


def test_seconds_measured_on_another_machine_are_said_to_be(plan) -> None:
    import attrs

    calibration = {"prices": {"small": "measured 2026-11-30 on Intel Xeon, 2 CPUs",
                              "big": "measured 2026-11-30 on Intel Xeon, 2 CPUs"}}
    measured_elsewhere = attrs.evolve(plan, calibration=calibration)
    busy = {"small": ServerLoad(0, 0), "big": ServerLoad(3, 2)}
    choice = choose_tier(measured_elsewhere, "balanced", 24.0, busy, here="AMD EPYC, 2 CPUs")
    assert choice.reason.endswith("(seconds measured on Intel Xeon, 2 CPUs, not on this "
                                  "machine (AMD EPYC, 2 CPUs))")
    here = choose_tier(measured_elsewhere, "balanced", 24.0, busy, here="Intel Xeon, 2 CPUs")
    assert "not on this machine" not in here.reason
    # Through a server, the seconds are the server's, wherever the client runs.
    served = attrs.evolve(plan, calibration={"prices": {
        "small": "measured 2026-12-03 on the model server at https://gpu.example",
        "big": "measured 2026-12-03 on the model server at https://gpu.example"}})
    assert "not on this machine" not in choose_tier(served, "balanced", 24.0, busy).reason


def test_servers_of_one_machine_share_its_load(plan) -> None:
    # Two model servers on this machine: the big one's queue slows the small one too.
    small = ServerLoad(0, 0, server="http://127.0.0.1:1", host="this machine")
    big = ServerLoad(3, 2, server="http://127.0.0.1:2", host="this machine")
    choice = choose_tier(plan, "balanced", 24.0, {"small": small, "big": big})
    assert choice.estimates["fastest"] == 18.0  # 3 s x (5 + 1), not 3 s
    # A router serving both members is one server: counted once.
    router = ServerLoad(3, 2, server="https://gpu", host="gpu")
    assert estimate(tier_figures(plan)["fast"], {"small": router, "big": router}) == 36.0
    # Servers on different machines do not.
    far = ServerLoad(0, 0, server="https://other", host="other")
    assert choose_tier(plan, "balanced", 24.0, {"small": far, "big": big}).tier == "fastest"
    assert choose_tier(plan, "balanced", 24.0,
                       {"small": far, "big": big}).estimates["fastest"] == 3.0


def test_the_tier_asked_for_runs_when_it_fits_even_if_a_cheaper_one_scored_higher() -> None:
    plan = parse_plan(PLAN.replace("pass_at_1: 0.70", "pass_at_1: 0.80"), "test.yaml")
    idle = {"small": ServerLoad(0, 0), "big": ServerLoad(0, 0)}
    assert choose_tier(plan, "balanced", 24.0, idle).tier == "balanced"
    # Stepping down, the most accurate cheaper tier that fits.
    busy = {"small": ServerLoad(0, 0), "big": ServerLoad(1, 0)}
    assert choose_tier(plan, "balanced", 20.0, busy).tier == "fast"
