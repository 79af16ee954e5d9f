"""Tiers that follow the model servers' load (docs/method.md 9).

A user sets a latency budget (`cascode.maxSeconds`); before each request the
cascade reads the load of the servers its members run on (llama-server's `/slots`
and `/metrics`, vLLM's `/metrics`), estimates each tier's time from the plan's
measured seconds and that load, and runs the most accurate tier, no dearer than
the one asked for, whose estimate fits the budget; when none fits, the cheapest,
and it says so. Everything here is a pure function of the plan's figures and the
loads read, so the rule is tested without a server and replayed on a recorded
load trace (`replay`).

The estimate. A tier measured at `s` seconds per request on an idle server takes
`s * slowdown` on a busy one, where the slowdown is that of the busiest server
among the tier's members: `max(1, (ahead + 1) / concurrency)`, `ahead` being the
sequences the server is running plus the requests waiting for a slot, and
`concurrency` how many sequences the server runs at once without slowing each
(`options.concurrency` of the member: 1 on a CPU, where sequences share the
cores; the slots a GPU serves at full speed on a GPU server).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .hardware import seconds_elsewhere
from .plans import Plan

SPLITS = ("all", "test", "validation")  # which measured split a tier's figures come from


@dataclass(frozen=True)
class ServerLoad:
    """What one member's server reports: sequences running, requests waiting."""

    running: int
    waiting: int
    slots: int = 0  # 0: not reported
    source: str = ""  # e.g. "llama-server /slots + /metrics", "vLLM /metrics"
    server: str = ""  # its address: members of one (router) server report it once
    host: str = ""  # its machine: servers of one machine share its cores or GPU

    @property
    def ahead(self) -> int:
        return self.running + self.waiting

    def to_json(self) -> dict[str, Any]:
        return {"running": self.running, "waiting": self.waiting, "slots": self.slots,
                "source": self.source, "server": self.server, "host": self.host}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServerLoad:
        return cls(int(data.get("running", 0)), int(data.get("waiting", 0)),
                   int(data.get("slots", 0)), str(data.get("source", "")),
                   str(data.get("server", "")), str(data.get("host", "")))


@dataclass(frozen=True)
class TierFigures:
    """A tier's measured pass@1 and seconds per request on an idle server."""

    name: str
    pass_at_1: float
    seconds: float
    members: tuple[str, ...]


@dataclass(frozen=True)
class TierChoice:
    """The tier to run and why; `reason` is empty when the asked-for tier runs as asked."""

    tier: str
    requested: str
    reason: str = ""
    estimates: Mapping[str, float] = field(default_factory=dict)  # tier -> seconds
    loads: Mapping[str, ServerLoad | None] = field(default_factory=dict)  # what was read

    @property
    def stepped_down(self) -> bool:
        return self.tier != self.requested


@runtime_checkable
class ReportsLoad(Protocol):
    """A backend whose model runs in a server that reports its load."""

    concurrency: int

    def server_load(self, timeout: float = 1.0) -> ServerLoad | None: ...


# ---------------------------------------------------------------- reading servers

_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+([0-9.eE+-]+|NaN)\s*$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {metric name: value} (labels summed over)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC.match(line.strip())
        if m is None:
            continue
        try:
            value = float(m.group(2))
        except ValueError:
            continue
        if value == value:  # not NaN
            out[m.group(1)] = out.get(m.group(1), 0.0) + value
    return out


def llama_server_load(slots: Sequence[Mapping[str, Any]] | None,
                      metrics: Mapping[str, float] | None) -> ServerLoad:
    """llama-server's load from `/slots` (each slot's `is_processing`) and/or
    `/metrics` (`llamacpp:requests_processing`, `llamacpp:requests_deferred`)."""
    metrics = metrics or {}
    if slots is not None:
        running = sum(1 for s in slots if s.get("is_processing"))
        total = len(slots)
    else:
        running = int(metrics.get("llamacpp:requests_processing", 0))
        total = 0
    waiting = int(metrics.get("llamacpp:requests_deferred", 0))
    parts = [p for p, have in (("/slots", slots is not None), ("/metrics", bool(metrics)))
             if have]
    return ServerLoad(running, waiting, total, "llama-server " + " + ".join(parts))


def vllm_load(metrics: Mapping[str, float]) -> ServerLoad:
    """vLLM's load from `/metrics` (`vllm:num_requests_running`, `..._waiting`)."""
    return ServerLoad(int(metrics.get("vllm:num_requests_running", 0)),
                      int(metrics.get("vllm:num_requests_waiting", 0)), 0, "vLLM /metrics")


# ---------------------------------------------------------------- the plan's figures


def tier_figures(plan: Plan) -> dict[str, TierFigures]:
    """Each tier with measured figures: pass@1 and seconds per request (from the first
    of `SPLITS` that its `measured` block has). Tiers without figures are left out."""
    out: dict[str, TierFigures] = {}
    for name, tier in plan.tiers.items():
        measured = tier.measured or {}
        for split in SPLITS:
            block = measured.get(split)
            if isinstance(block, Mapping) and "seconds_per_1k" in block:
                members = tuple(dict.fromkeys(s.member.name for s in plan.tier(name).stages))
                out[name] = TierFigures(name, float(block.get("pass_at_1", 0.0)),
                                        float(block["seconds_per_1k"]) / 1000.0, members)
                break
    return out


def default_budget(plan: Plan, tier: str) -> float | None:
    """The budget when the user sets none: twice the tier's measured seconds."""
    figures = tier_figures(plan).get(tier)
    return None if figures is None else 2.0 * figures.seconds


# ---------------------------------------------------------------- the rule


def slowdown(load: ServerLoad | None, concurrency: int = 1) -> float:
    if load is None:
        return 1.0
    return max(1.0, (load.ahead + 1) / max(concurrency, 1))


def host_of(address: str) -> str:
    """The machine a server runs on, as the load rule groups servers: loopback is this
    machine."""
    import urllib.parse

    host = urllib.parse.urlsplit(address).hostname or address
    return "this machine" if host in ("127.0.0.1", "localhost", "::1") else host


def on_the_machine(loads: Mapping[str, ServerLoad | None]) -> dict[str, ServerLoad | None]:
    """Each member's load as the work on its server's machine: the sum over the distinct
    servers of that host (two model servers of one machine share its cores or its GPU:
    measured on 2 cores, a 1.5B and a 0.5B request at once took 11.3 and 8.8 s against
    4.8 and 2.2 s alone). A load without a host stands alone."""
    by_host: dict[str, dict[str, ServerLoad]] = {}
    for load in loads.values():
        if load is not None and load.host:
            by_host.setdefault(load.host, {})[load.server] = load
    out: dict[str, ServerLoad | None] = {}
    for member, load in loads.items():
        if load is None or not load.host:
            out[member] = load
            continue
        servers = by_host[load.host].values()
        out[member] = dataclasses.replace(load, running=sum(x.running for x in servers),
                                          waiting=sum(x.waiting for x in servers))
    return out


def estimate(figures: TierFigures, loads: Mapping[str, ServerLoad | None],
             concurrency: Mapping[str, int] | None = None) -> float:
    """The tier's seconds under `loads` (member -> its server's load)."""
    concurrency = concurrency or {}
    machine = on_the_machine(loads)
    worst = max((slowdown(machine.get(m), concurrency.get(m, 1)) for m in figures.members),
                default=1.0)
    return figures.seconds * worst


def choose_tier(plan: Plan, requested: str, max_seconds: float | None,
                loads: Mapping[str, ServerLoad | None],
                concurrency: Mapping[str, int] | None = None, here: str | None = None
                ) -> TierChoice:
    """The tier to run for a request on `requested` with a budget of `max_seconds`
    (None or <= 0: no budget, the tier runs as asked). `here`: this machine's hardware
    (engine/hardware.py), to say when the plan's seconds were measured elsewhere."""
    choice = _choose(plan, requested, max_seconds, loads, concurrency)
    if choice.reason:
        members = [s.member.name for s in plan.tier(requested).stages]
        caveat = seconds_elsewhere(plan.calibration, members, here)
        if caveat:
            choice = dataclasses.replace(choice, reason=f"{choice.reason} ({caveat})")
    return choice


def _choose(plan: Plan, requested: str, max_seconds: float | None,
            loads: Mapping[str, ServerLoad | None],
            concurrency: Mapping[str, int] | None = None) -> TierChoice:
    figures = tier_figures(plan)
    asked = figures.get(requested)
    if max_seconds is None or max_seconds <= 0 or asked is None:
        return TierChoice(requested, requested, loads=dict(loads))
    # The tier asked for when it fits; else the most accurate of the cheaper ones that
    # fits (the user's tier is the ceiling of what it pays, and the rule only steps down).
    cheaper = sorted((f for f in figures.values() if f.seconds < asked.seconds),
                     key=lambda f: (-f.pass_at_1, f.seconds))
    candidates = [asked, *cheaper]
    estimates = {f.name: round(estimate(f, loads, concurrency), 2) for f in candidates}
    busy = _busy(asked, on_the_machine(loads))
    for f in candidates:
        if estimates[f.name] <= max_seconds:
            if f.name == requested:
                return TierChoice(requested, requested, "", estimates, dict(loads))
            return TierChoice(f.name, requested, (
                f"server busy: {busy}; {f.name} tier (about {estimates[f.name]:.0f} s) instead "
                f"of {requested} (about {estimates[requested]:.0f} s) for a "
                f"{max_seconds:.0f} s budget"), estimates, dict(loads))
    cheapest = min(candidates, key=lambda f: (f.seconds, -f.pass_at_1))
    return TierChoice(cheapest.name, requested, (
        f"server busy: {busy}; no tier fits the {max_seconds:.0f} s budget, so the cheapest, "
        f"{cheapest.name} (about {estimates[cheapest.name]:.0f} s), instead of {requested}"
        if cheapest.name != requested else
        f"server busy: {busy}; no tier fits the {max_seconds:.0f} s budget "
        f"(about {estimates[requested]:.0f} s)"), estimates, dict(loads))


def _busy(figures: TierFigures, loads: Mapping[str, ServerLoad | None]) -> str:
    parts = []
    for m in figures.members:
        load = loads.get(m)
        if load is not None and load.ahead:
            waiting = f", {load.waiting} waiting" if load.waiting else ""
            parts.append(f"{m} {load.running} running{waiting}")
    return "; ".join(parts) or "idle"


# ---------------------------------------------------------------- replay


@dataclass(frozen=True)
class Replayed:
    """A budget rule replayed on a load trace: the tiers it chose, and what the plan's
    figures expect of them (mean pass@1, mean estimated seconds)."""

    choices: tuple[TierChoice, ...]
    pass_at_1: float
    seconds: float


def replay(plan: Plan, requested: str, max_seconds: float | None,
           trace: Sequence[Mapping[str, ServerLoad | None]],
           concurrency: Mapping[str, int] | None = None, here: str | None = None) -> Replayed:
    """`choose_tier` on each recorded load of `trace` (member -> load, one per request)."""
    figures = tier_figures(plan)
    choices = tuple(choose_tier(plan, requested, max_seconds, loads, concurrency, here)
                    for loads in trace)
    if not choices or not figures:
        return Replayed(choices, 0.0, 0.0)
    known = [c for c in choices if c.tier in figures]
    if not known:
        return Replayed(choices, 0.0, 0.0)
    p = sum(figures[c.tier].pass_at_1 for c in known) / len(known)
    s = sum(estimate(figures[c.tier], loads, concurrency)
            for c, loads in zip(choices, trace, strict=True) if c.tier in figures) / len(known)
    return Replayed(choices, p, s)
