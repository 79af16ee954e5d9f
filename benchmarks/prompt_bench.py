"""Prompt evaluation: batch sizes and threads, and how fast a cancel lands.

    python -m cascode.benchmarks.prompt_bench [--models 0.5b,1.5b] [--tokens 1024]
                                              [--json benchmarks/results/prompt_bench.json]

For each embedded model, side by side in one run: the tokens per second of
evaluating one prompt of about `--tokens` tokens (prefix cache off, one
generated token) with llama.cpp batches of 256, 512 and 1024 tokens, on every
core the process may use and on one; then, at the shipped batch size, how long
a cancel takes to stop a request in the middle of a long prompt (the backend
checks the cancel token between batches).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from cascode.engine.backends import llama_cpp as lc
from cascode.engine.cancel import CancelToken
from cascode.engine.errors import Cancelled
from cascode.engine.extract import CodeStop
from cascode.engine.models import resolve_model_file
from cascode.engine.types import Message, SampleSpec

MODELS = {
    "0.5b": "qwen2.5-coder-0.5b-instruct-q4_k_m",
    "1.5b": "qwen2.5-coder-1.5b-instruct-q4_k_m",
}
BATCHES = (256, 512, 1024)


def _spec(tokens: int, salt: int) -> SampleSpec:
    # Source-like filler, a different first line per run (nothing shared between runs).
    lines = [f"# run {salt}"] + [f"def helper_{i}(x):\n    return x * {i} + {salt}\n"
                                 for i in range(tokens // 14)]
    return SampleSpec((Message("user", "\n".join(lines)),), "```python\n", 1, 1, CodeStop())


def _evaluate(path: Path, batch: int, threads: int, tokens: int, runs: int) -> dict[str, Any]:
    lc.PROMPT_BATCH = batch
    backend = lc.LlamaCppBackend(path, n_ctx=max(4096, 2 * tokens), n_seq_max=1,
                                 n_threads=threads, prefix_cache=False)
    try:
        backend.sample([_spec(64, -1)])  # warm-up
        rates, n = [], 0
        for r in range(runs):
            spec = _spec(tokens, r)
            t0 = time.perf_counter()
            (gen,), = backend.sample([spec])
            rates.append(gen.prompt_tokens / (time.perf_counter() - t0))
            n = gen.prompt_tokens
        return {"batch": batch, "threads": threads, "prompt_tokens": n,
                "tokens_per_s": round(statistics.median(rates), 1)}
    finally:
        backend.close()


def _cancel_latency(path: Path, tokens: int, after_s: float) -> dict[str, Any]:
    lc.PROMPT_BATCH = 512
    backend = lc.LlamaCppBackend(path, n_ctx=max(4096, 2 * tokens), n_seq_max=1,
                                 prefix_cache=False)
    try:
        token = CancelToken()
        done: dict[str, float] = {}

        def run() -> None:
            try:
                backend.sample([_spec(tokens, 99)], cancel=token)
            except Cancelled:
                done["t"] = time.perf_counter()

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(after_s)
        t0 = time.perf_counter()
        token.cancel("benchmark")
        worker.join()
        return {"prompt_tokens_about": tokens, "cancelled_after_s": after_s,
                "latency_s": round(done.get("t", time.perf_counter()) - t0, 3),
                "cancelled": "t" in done}
    finally:
        backend.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cascode.benchmarks.prompt_bench")
    parser.add_argument("--models", default="0.5b,1.5b")
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--cancel-only", action="store_true",
                        help="only the cancel latency (no batch and thread sweep)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    cores = max(1, len(os.sched_getaffinity(0)))
    out: dict[str, Any] = {"cores": cores, "models": {}}
    print(f"{'model':<6} {'batch':>6} {'threads':>8} {'tokens':>7} {'tok/s':>8}")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        path = resolve_model_file(f"embedded:{MODELS[name]}")
        rows = []
        for threads in [] if args.cancel_only else sorted({cores, 1}, reverse=True):
            for batch in BATCHES:
                row = _evaluate(path, batch, threads, args.tokens,
                                args.runs if threads == cores else 1)
                rows.append(row)
                print(f"{name:<6} {batch:>6} {threads:>8} {row['prompt_tokens']:>7} "
                      f"{row['tokens_per_s']:>8.1f}", flush=True)
        cancel = _cancel_latency(path, 3 * args.tokens, after_s=1.0)
        print(f"{name:<6} cancel 1 s into a {cancel['prompt_tokens_about']}-token prompt: "
              f"stopped after {cancel['latency_s']:.2f} s", flush=True)
        out["models"][name] = {"evaluation": rows, "cancel": cancel}
    if args.json:
        if args.cancel_only and args.json.exists():  # keep the sweep already measured
            previous = json.loads(args.json.read_text(encoding="utf-8"))
            for name, figures in out["models"].items():
                previous.setdefault("models", {}).setdefault(name, {})["cancel"] = figures["cancel"]
            out = previous
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
