"""The debounce of automatic requests: wasted runs while typing against the wait after it.

    python -m cascode.benchmarks.debounce_bench [--json benchmarks/results/debounce_bench.json]

The server's adaptive debounce (server/trigger.py `Debounce`: a base delay, and a
factor on the moving average of the typing intervals) replayed over
synthetic typing traces (seeded: words of 3 to 8 keys, a longer gap between
words, a pause to think after one word in six), at three typing speeds, for
several base delays. Every keystroke is an automatic request. A request whose
wait ends before the next keystroke starts a run; when that keystroke comes
within `RUN_S` the run is cancelled: a wasted start (the engine is busy until
the cancel lands at the next prompt chunk). Where the user stops for longer
than `RUN_S`, the wait before the run starts is the latency the debounce adds.
These are synthetic traces, not recorded users: they rank the settings, they
do not predict one user's figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from cascode.server.trigger import Debounce

BASES_MS = (0, 100, 150, 250)
FACTORS = (1.5, 2.5, 3.5)
SPEEDS = {"fast (70 wpm)": 0.14, "medium (45 wpm)": 0.22, "slow (25 wpm)": 0.40}
RUN_S = 3.0  # a run long enough that a keystroke during it cancels it
KEYSTROKES = 4000


def trace(mean_key_s: float, seed: int) -> list[float]:
    """Keystroke times: words of 3-8 keys, a gap between words, a pause after one in six."""
    rng = np.random.default_rng(seed)
    t, times = 0.0, list[float]()
    while len(times) < KEYSTROKES:
        for _ in range(int(rng.integers(3, 9))):
            t += float(rng.lognormal(np.log(mean_key_s), 0.35))
            times.append(t)
        t += float(rng.lognormal(np.log(1.6 * mean_key_s), 0.35))
        if rng.random() < 1 / 6:
            t += float(rng.uniform(RUN_S, 3 * RUN_S))  # the user stops and waits
    return times[:KEYSTROKES]


def replay(times: list[float], base_ms: int, factor: float) -> dict[str, float]:
    debounce = Debounce(factor)
    wasted = waits = 0
    wait_s: list[float] = []
    for i, t in enumerate(times):
        delay = debounce.delay("file", base_ms, now=t)
        gap = times[i + 1] - t if i + 1 < len(times) else float("inf")
        if gap > RUN_S:
            waits += 1
            wait_s.append(delay)
        elif delay < gap:
            wasted += 1
    return {"wasted_per_100_keys": round(100 * wasted / len(times), 2),
            "mean_wait_ms": round(1000 * statistics.fmean(wait_s), 1) if wait_s else 0.0,
            "stops": waits}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cascode.benchmarks.debounce_bench")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    print(f"{'base ms':>8} {'factor':>7}  {'typing':<16} {'wasted starts / 100 keys':>25} "
          f"{'wait at a stop (ms)':>20}")
    for base in BASES_MS:
        for factor in FACTORS if base else (Debounce.FACTOR,):
            for s, (speed, mean) in enumerate(SPEEDS.items()):
                r = replay(trace(mean, seed=s), base, factor)
                rows.append({"base_ms": base, "factor": factor, "typing": speed, **r})
                print(f"{base:>8} {factor:>7}  {speed:<16} {r['wasted_per_100_keys']:>25.2f} "
                      f"{r['mean_wait_ms']:>20.1f}")
    if args.json:
        args.json.write_text(json.dumps({"run_s": RUN_S, "keystrokes": KEYSTROKES,
                                         "rows": rows}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
