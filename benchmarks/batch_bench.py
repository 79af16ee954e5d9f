"""Batched decoding against one sequence at a time, overhead share and peak memory.

    python -m cascode.benchmarks.batch_bench [--models 0.5b,1.5b] [--json OUT]

For each embedded model: the 20 sequences of a k = 10 stage (10 sampled
solutions, 10 sampled tests cut at 4 asserts) decoded as one batch, against the
same 20 sequences generated one at a time, side by side in one run (tokens/s of
each and the ratio). Then one request through the live cascade (k = 3, l = 2,
sandbox on): the share of its wall time spent outside prompt processing and
decoding. Finally the peak resident memory with both models loaded.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

from cascode.engine.backends.llama_cpp import LlamaCppBackend
from cascode.engine.models import EMBEDDED, resolve_model_file
from cascode.engine.prompts import MAX_ASSERTS, solution_spec, unit_test_spec
from cascode.engine.types import Task

TASK = Task(
    prompt=(
        "from typing import List\n\n\n"
        "def below_zero(operations: List[int]) -> bool:\n"
        '    """ You\'re given a list of deposit and withdrawal operations on a bank account '
        "that starts with\n    zero balance. Your task is to detect if at any point the balance "
        "of account falls below zero, and\n    at that point function should return True. "
        "Otherwise it should return False.\n"
        "    >>> below_zero([1, 2, 3])\n    False\n    >>> below_zero([1, 2, -4, 5])\n    True\n"
        '    """\n'
    ),
    entry_point="below_zero",
)
MODELS = {
    "0.5b": "qwen2.5-coder-0.5b-instruct-q4_k_m",
    "1.5b": "qwen2.5-coder-1.5b-instruct-q4_k_m",
}


def _specs(n: int, seed: int) -> list:  # type: ignore[type-arg]
    return [
        solution_spec(TASK, n, sampled=True, seed=seed),
        unit_test_spec(TASK, n, MAX_ASSERTS, sampled=True, seed=seed),
    ]


def bench_batching(backend: LlamaCppBackend, k: int = 10) -> dict[str, float]:
    backend.sample(_specs(1, 99))  # warm-up
    t0 = time.perf_counter()
    batch = backend.sample(_specs(k, 0))
    batch_wall = time.perf_counter() - t0
    batch_tokens = sum(g.generated_tokens for group in batch for g in group)

    seq_tokens = 0
    t0 = time.perf_counter()
    for j in range(k):  # the same seeds: sequence j of the batch, alone
        sol, test = _specs(1, j)
        for spec in (sol, test):
            out = backend.sample([spec])
            seq_tokens += out[0][0].generated_tokens
    seq_wall = time.perf_counter() - t0
    return {
        "batch_tokens": batch_tokens,
        "batch_seconds": batch_wall,
        "batch_tokens_per_s": batch_tokens / batch_wall,
        "one_at_a_time_tokens": seq_tokens,
        "one_at_a_time_seconds": seq_wall,
        "one_at_a_time_tokens_per_s": seq_tokens / seq_wall,
        "speedup": (batch_tokens / batch_wall) / (seq_tokens / seq_wall),
    }


def bench_overhead(backends: dict[str, LlamaCppBackend]) -> dict[str, Any]:
    """One request through the live cascade: wall time outside the models' work."""
    from cascode.engine.cascade import Cascade
    from cascode.engine.plans import parse_plan
    from cascode.engine.sandbox import create_sandbox

    name = next(iter(backends))
    plan = parse_plan(
        "family: [{name: m, backend: llama_cpp, model: unused}]\n"
        "tiers: {t: {theta: 0.0, stages: {m: {k: 3, l: 2}}}}\n",
        "<bench>",
    )
    sandbox = create_sandbox()
    try:
        cascade = Cascade(plan, {"m": backends[name]}, sandbox)
        cascade.run(TASK)  # warm the sandbox worker
        t0 = time.perf_counter()
        result = cascade.run(TASK, seed=1)
        wall = time.perf_counter() - t0
    finally:
        sandbox.close()
    stage = result.stages[0]
    model = stage.prompt_seconds + stage.decode_seconds
    return {
        "model": name,
        "wall_seconds": wall,
        "model_seconds": model,
        "sandbox_seconds": stage.sandbox_seconds,
        "outside_model_share": (wall - model) / wall,
        "outside_model_and_sandbox_share": (wall - model - stage.sandbox_seconds) / wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="0.5b,1.5b")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", default="benchmarks/results/batch_bench.json")
    args = parser.parse_args(argv)

    loaded: dict[str, LlamaCppBackend] = {}
    rows = {}
    for short in args.models.split(","):
        model = EMBEDDED[MODELS[short]]
        loaded[short] = LlamaCppBackend(resolve_model_file("embedded:" + model.name), name=short)
        rows[short] = bench_batching(loaded[short], args.k)
    overhead = bench_overhead({s: loaded[s] for s in list(loaded)[:1]})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"{'model':<6} {'batch tok/s':>12} {'1-by-1 tok/s':>13} {'speedup':>8}"
          f" {'batch tok':>10} {'1-by-1 tok':>11}")
    for short, r in rows.items():
        print(f"{short:<6} {r['batch_tokens_per_s']:>12.1f}"
              f" {r['one_at_a_time_tokens_per_s']:>13.1f} {r['speedup']:>7.2f}x"
              f" {r['batch_tokens']:>10} {r['one_at_a_time_tokens']:>11}")
    print(f"request on {overhead['model']} (k=3, l=2): wall {overhead['wall_seconds']:.2f} s, "
          f"models {overhead['model_seconds']:.2f} s, sandbox {overhead['sandbox_seconds']:.3f} s; "
          f"outside the models {100 * overhead['outside_model_share']:.1f}% "
          f"(outside models and sandbox {100 * overhead['outside_model_and_sandbox_share']:.1f}%)")
    print(f"peak resident memory with {', '.join(loaded)} loaded: {peak_mb:.0f} MiB")
    out = {"batching": rows, "overhead": overhead, "peak_rss_mib": peak_mb, "k": args.k}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
