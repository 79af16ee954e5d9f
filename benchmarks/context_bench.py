"""Prompt tokens and seconds on real files: the whole file context against the budget.

    python -m cascode.benchmarks.context_bench [--tier fast] [--json OUT]

Eight functions cut out of real modules (the standard library's and this
project's, 300 to 2,400 lines; near the top, the middle and the end of their
files), each turned into a stub (signature and docstring), completed in one
engine host (the server's, with its answer cache off), then completed again
after an edit inside that function (a word added to its docstring). Two
configurations side by side in one run:

- before: the whole usable file context in the prompt, no prefix cache
  (`contextTokens: -1`, member option `prefix_cache: false`);
- after: the prompt budget (`contextTokens`, default 1024) and the prefix cache.

Per request: prompt tokens, prompt tokens evaluated, prompt seconds, wall
seconds and the answering member. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import sysconfig
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STDLIB = Path(sysconfig.get_paths()["stdlib"])
# (file, function): near the top, the middle and the end of files of 300-2,400 lines.
CASES = (
    (STDLIB / "json" / "decoder.py", "py_scanstring"),
    (STDLIB / "ipaddress.py", "ip_address"),
    (STDLIB / "textwrap.py", "dedent"),
    (STDLIB / "shlex.py", "quote"),
    (STDLIB / "statistics.py", "median"),
    (STDLIB / "difflib.py", "get_close_matches"),
    (STDLIB / "difflib.py", "restore"),
    (ROOT / "engine" / "backends" / "openai.py", "realign"),
)


def stub_source(path: Path, name: str) -> tuple[str, int]:
    """The file with `name`'s body removed (signature and docstring kept), and the
    0-based line of its docstring's last line (where the cursor goes)."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    doc = fn.body[0]
    assert isinstance(doc, ast.Expr) and doc.end_lineno is not None, f"{name} has no docstring"
    lines = source.splitlines(keepends=True)
    end = fn.end_lineno or doc.end_lineno
    return "".join(lines[: doc.end_lineno] + lines[end:]), doc.end_lineno - 1


def edited(source: str, line: int) -> str:
    """An edit inside the function: a word added to its docstring's first line."""
    lines = source.splitlines(keepends=True)
    for i in range(line, -1, -1):
        if '"""' in lines[i] or "'''" in lines[i]:
            quote = '"""' if '"""' in lines[i] else "'''"
            at = lines[i].index(quote) + 3
            lines[i] = lines[i][:at] + "Briefly: " + lines[i][at:]
            break
    return "".join(lines)


def _plan(prefix_cache: bool) -> Any:
    import yaml

    from cascode.engine.plans import default_plan_path, parse_plan

    raw = yaml.safe_load(default_plan_path().read_text())
    for member in raw["family"]:
        member.setdefault("options", {})["prefix_cache"] = prefix_cache
    return parse_plan(yaml.safe_dump(raw), f"default plan (prefix_cache={prefix_cache})")


def run_config(label: str, context_tokens: int, prefix_cache: bool, tier: str
               ) -> list[dict[str, Any]]:
    from cascode.engine.cancel import CancelToken
    from cascode.engine.context import function_at
    from cascode.engine.errors import CascodeError
    from cascode.engine.host import EngineHost

    host = EngineHost()
    host.set_plan(_plan(prefix_cache))
    host.cache.resize(0)
    host.make_sandbox("auto", False)
    rows: list[dict[str, Any]] = []
    try:
        for path, name in CASES:
            source, line = stub_source(path, name)
            for request, text in (("first", source), ("after edit", edited(source, line))):
                fc = function_at(text, line, 4)
                assert fc is not None and fc.name == name, (path, name)
                task = fc.task(context_tokens if context_tokens >= 0 else None)
                row: dict[str, Any] = {
                    "config": label, "file": _short(path), "lines": text.count("\n"),
                    "function": name, "request": request,
                }
                t0 = time.perf_counter()
                try:
                    answered = host.answer(task, tier, cancel=CancelToken(),
                                           on_event=lambda e: None)
                except CascodeError as e:
                    row.update(error=str(e), wall_seconds=round(time.perf_counter() - t0, 2))
                    rows.append(row)
                    print(_line(row), flush=True)
                    continue
                result = answered.result
                stages = result.stages
                row.update(
                    member=result.member,
                    prompt_tokens=sum(s.prompt_tokens for s in stages),
                    prompt_tokens_evaluated=sum(s.prompt_tokens_evaluated or 0 for s in stages),
                    prompt_seconds=round(sum(s.prompt_seconds for s in stages), 2),
                    generated_tokens=sum(s.generated_tokens for s in stages),
                    wall_seconds=round(time.perf_counter() - t0, 2),
                )
                rows.append(row)
                print(_line(row), flush=True)
    finally:
        host.close()
    return rows


def _short(path: Path) -> str:
    for base in (ROOT, STDLIB):
        try:
            return str(path.relative_to(base))
        except ValueError:
            pass
    return path.name


def _line(row: dict[str, Any]) -> str:
    head = f"{row['config']:<7} {row['file'] + ':' + row['function']:<36} {row['request']:<10}"
    if "error" in row:
        return f"{head} error: {row['error'][:90]}"
    return (f"{head} {row['prompt_tokens']:>6} {row['prompt_tokens_evaluated']:>6} "
            f"{row['prompt_seconds']:>7.1f} {row['wall_seconds']:>7.1f}  {row['member']}")


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for config in ("before", "after"):
        for request in ("first", "after edit"):
            ok = [r for r in rows if r["config"] == config and r["request"] == request
                  and "error" not in r]
            errors = sum(1 for r in rows if r["config"] == config and r["request"] == request
                         and "error" in r)
            if not ok:
                out[f"{config} / {request}"] = {"errors": errors}
                continue
            out[f"{config} / {request}"] = {
                "requests": len(ok), "errors": errors,
                "median_prompt_tokens": statistics.median(r["prompt_tokens"] for r in ok),
                "max_prompt_tokens_evaluated": max(r["prompt_tokens_evaluated"] for r in ok),
                "median_prompt_tokens_evaluated": statistics.median(
                    r["prompt_tokens_evaluated"] for r in ok),
                "median_wall_seconds": statistics.median(r["wall_seconds"] for r in ok),
                "total_wall_seconds": round(sum(r["wall_seconds"] for r in ok), 1),
                # A request answered by a larger member ran every smaller one first.
                "by_answering_member": {
                    member: {
                        "requests": len(mine),
                        "median_wall_seconds": statistics.median(r["wall_seconds"]
                                                                 for r in mine),
                        "median_prompt_tokens_evaluated": statistics.median(
                            r["prompt_tokens_evaluated"] for r in mine),
                    }
                    for member in sorted({r["member"] for r in ok})
                    for mine in [[r for r in ok if r["member"] == member]]
                },
            }
    return out


def main(argv: list[str] | None = None) -> int:
    from cascode.engine.context.budget import DEFAULT_CONTEXT_TOKENS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tier", default="fast", help="plan tier (default: fast, the 0.5B)")
    parser.add_argument("--context-tokens", type=int, default=DEFAULT_CONTEXT_TOKENS)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results"
                        / "context_bench.json")
    parser.add_argument("--summarize", action="store_true",
                        help="recompute the summary of the --json file's rows (runs nothing)")
    args = parser.parse_args(argv)
    if args.summarize:
        result = json.loads(args.json.read_text())
        result["summary"] = summary(result["rows"])
        print(json.dumps(result["summary"], indent=1))
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        return 0
    print(f"{'config':<7} {'function':<36} {'request':<10} {'prompt':>6} {'evald':>6} "
          f"{'prompt s':>7} {'wall s':>7}  member")
    t0 = time.perf_counter()
    rows = run_config("before", -1, False, args.tier)
    rows += run_config("after", args.context_tokens, True, args.tier)
    result = {"tier": args.tier, "context_tokens": args.context_tokens,
              "seconds": round(time.perf_counter() - t0, 1), "summary": summary(rows),
              "rows": rows}
    print(json.dumps(result["summary"], indent=1))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
