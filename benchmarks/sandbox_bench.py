"""Sandbox latency: requests of 10 solutions x 40 asserts, per isolation path.

    python -m cascode.benchmarks.sandbox_bench [--requests 30] [--gap 0.2]
        [--paths bwrap,unshare,landlock,rlimits,rlimits-noseccomp] [--json OUT]

For each configuration: the worker's start-up (process start to ready; and with
the self-check, which is what `create_sandbox` costs), then p50 and p95 wall time
of a request as the cascade sends it, measured two ways: with an idle gap before
each request (the cascade samples between requests, which gives the worker time
to fork its spare children) and back to back. The cost of a layer is the
difference between two rows: rlimits-noseccomp -> rlimits (seccomp), rlimits ->
landlock, rlimits -> unshare, rlimits -> bwrap. The machine's load average is
recorded with the figures: on a shared machine it moves them; the CPU time per
request (worker and children, start-up and self-check subtracted) does not.
bubblewrap's own pid-namespace init does not pass its children's CPU time up, so
that column reads near zero for bwrap: take the unshare row's figure for it.
On a machine shared with other work, `chrt -f 5 python -m ...` (root) measures the
sandbox without their contention; the scheduler policy is recorded in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

from cascode.engine.sandbox.process import ProcessSandbox

CONFIGS = {
    "bwrap": ("bwrap", True),
    "unshare": ("unshare", True),
    "landlock": ("landlock", True),
    "rlimits": ("rlimits", True),
    "rlimits-noseccomp": ("rlimits", False),
}
DEFAULT_OUT = Path(__file__).parent / "results" / "sandbox_bench.json"

# Ordinary generated code: ten takes on one function, forty asserts about it.
_BODIES = [
    "    return sorted(set(xs))",
    "    return sorted({x for x in xs})",
    "    out = []\n    for x in sorted(xs):\n        if not out or out[-1] != x:\n"
    "            out.append(x)\n    return out",
    "    return list(dict.fromkeys(sorted(xs)))",
    "    import heapq\n    h = list(set(xs))\n    heapq.heapify(h)\n"
    "    return [heapq.heappop(h) for _ in range(len(h))]",
    "    seen = set()\n    for x in xs:\n        seen.add(x)\n    return sorted(seen)",
    "    return sorted(xs)",  # wrong: keeps duplicates
    "    from collections import Counter\n    return sorted(Counter(xs))",
    "    return sorted(set(xs), reverse=True)[::-1]",
    "    return [x for i, x in enumerate(sorted(xs)) if i == 0 or sorted(xs)[i - 1] != x]",
]
SOLUTIONS = [f"def unique_sorted(xs):\n{body}\n" for body in _BODIES]
TESTS = [
    f"assert unique_sorted({list(range(i % 7, i % 7 + 5)) * 2}) == "
    f"{list(range(i % 7, i % 7 + 5))}"
    for i in range(36)
] + [
    "assert unique_sorted([]) == []",
    "assert unique_sorted([3, 1, 2, 3]) == [1, 2, 3]",
    "assert unique_sorted([-1, -1]) == [-1]",
    "assert unique_sorted(['b', 'a', 'b']) == ['a', 'b']",
]


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def _children_cpu() -> float:
    """CPU seconds of this process's waited-for descendants (workers and their children)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bench(name: str, requests: int, gap: float) -> dict[str, object]:
    path, seccomp = CONFIGS[name]
    allow = path == "rlimits"
    t0 = time.perf_counter()
    bare = ProcessSandbox(path, allow_unsafe=allow, self_check=False, seccomp=seccomp)
    bare_startup = time.perf_counter() - t0
    bare.close()
    # CPU per request, independent of the machine's load: what a sandbox that served
    # the requests used, less what one that only started and checked itself used.
    cpu0 = _children_cpu()
    ProcessSandbox(path, allow_unsafe=allow, seccomp=seccomp).close()
    cpu1 = _children_cpu()
    sb = ProcessSandbox(path, allow_unsafe=allow, seccomp=seccomp)
    row: dict[str, object] = {"config": name, "layers": sb.layers, "available": sb.available,
                              "startup_s": round(bare_startup, 4),
                              "startup_with_check_s": round(sb.startup_s, 4)}
    if not sb.available:
        row["reason"] = sb.reason
        sb.close()
        return row
    try:
        first = sb.run_matrix(SOLUTIONS, TESTS)
        assert sum(map(sum, first.passed())) > 0, "ordinary code should pass"
        for mode, pause in (("idle", gap), ("back_to_back", 0.0)):
            times = []
            for _ in range(requests):
                time.sleep(pause)
                t = time.perf_counter()
                sb.run_matrix(SOLUTIONS, TESTS)
                times.append(time.perf_counter() - t)
            row[f"{mode}_p50_ms"] = round(1000 * statistics.median(times), 1)
            row[f"{mode}_p95_ms"] = round(1000 * _pct(times, 0.95), 1)
    finally:
        sb.close()
    served = _children_cpu() - cpu1
    row["cpu_ms_per_request"] = round(1000 * (served - (cpu1 - cpu0)) / (2 * requests + 1), 1)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cascode.benchmarks.sandbox_bench",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=30, help="requests per mode (default 30)")
    ap.add_argument("--gap", type=float, default=0.2,
                    help="idle seconds before each request in the idle mode (default 0.2)")
    ap.add_argument("--paths", default=",".join(CONFIGS),
                    help=f"comma-separated configurations (default: {','.join(CONFIGS)})")
    ap.add_argument("--json", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.paths.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"--paths: unknown {unknown} (known: {', '.join(CONFIGS)})")
    load_before = os.getloadavg()
    rows = [bench(n, args.requests, args.gap) for n in names]
    load_after = os.getloadavg()
    print(f"sandbox: {len(SOLUTIONS)} solutions x {len(TESTS)} asserts per request, "
          f"{args.requests} requests per mode, {os.cpu_count()} cores, "
          f"load {load_before[0]:.1f} -> {load_after[0]:.1f}")
    print(f"{'config':<18} {'start':>7} {'+check':>7} {'idle p50':>9} {'idle p95':>9} "
          f"{'b2b p50':>8} {'b2b p95':>8} {'cpu/req':>8}  layers")
    for r in rows:
        if not r["available"]:
            print(f"{r['config']:<18} unavailable: {r.get('reason')}")
            continue
        print(f"{r['config']:<18} {r['startup_s']:>6.2f}s {r['startup_with_check_s']:>6.2f}s "
              f"{r['idle_p50_ms']:>7.1f}ms {r['idle_p95_ms']:>7.1f}ms "
              f"{r['back_to_back_p50_ms']:>6.1f}ms {r['back_to_back_p95_ms']:>6.1f}ms "
              f"{r['cpu_ms_per_request']:>6.1f}ms  "
              f"{','.join(r['layers'])}")  # type: ignore[arg-type]
    policy = {os.SCHED_OTHER: "other", os.SCHED_FIFO: "fifo", os.SCHED_RR: "rr"}.get(
        os.sched_getscheduler(0), "other")
    out = {"machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                       "python": platform.python_version(), "scheduler": policy,
                       "loadavg_before": load_before, "loadavg_after": load_after},
           "request": {"solutions": len(SOLUTIONS), "asserts": len(TESTS),
                       "requests_per_mode": args.requests, "idle_gap_s": args.gap},
           "configs": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
