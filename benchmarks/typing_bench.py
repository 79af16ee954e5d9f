"""Request-to-answer seconds while a user types real functions, warm-up off and on.

    python -m cascode.benchmarks.typing_bench [--problems 4] [--tiers fast,balanced]
        [--cps 8] [--split test] [--model-server [--speculation]] [--json OUT]

`cascode serve` runs as a subprocess over stdio, driven by a pygls client as an
editor drives it. For each real-code problem (benchmarks/data/realcode, the split
given) that has a docstring, the file is opened as it stands with the function's
docstring and any body lines before the cursor taken out; they are then typed back
a word at a time at `--cps` characters a second, followed by a pause of
`--pause` seconds and an explicit inline request at the cursor. The request's
seconds (sent to answered) are measured for every tier, with `cascode.prefill`
off and on, alternating which goes first from problem to problem, in one run
and one server (settings change through `workspace/didChangeConfiguration`, the
answer cache is off). Also recorded: the prompt tokens the answer's stages
evaluated, of those they sent, and whether the warm-up finished before the
request (the server's "warmed" log line).

The models are the shipped plan's (the embedded default family), in the language
server's process (`model_server: false`); with `--model-server`, in the machine's model
servers (`model_server: true`, a runtime
directory of the run's own: the servers start with the first request and are stopped
at the end; warm-up then evaluates the prompt into the server's cache). With
`--speculation` as well, two more modes, `speculation` and `both` (warm-up on), run on
a second language server whose model servers (a runtime directory of their own) decode
speculatively: the 0.5B drafts from n-grams of the prompt, the 1.5B is drafted by the
0.5B (docs/backends.md); the four modes take turns from problem to problem. Results go to
`benchmarks/results/typing_bench.json` (`typing_bench_server.json` with
`--model-server`) and a table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .server_bench import Window

DEFAULT_OUT = Path(__file__).parent / "results" / "typing_bench.json"
MODES = ("off", "prefill")
# With --speculation: the same with speculative decoding in the model servers.
SPEC_MODES = ("off", "prefill", "speculation", "both")
SPECULATIVE = SPEC_MODES[2:]  # the modes on the speculative language server's models
WARM_UP = 'def add(a, b):\n    """Return the sum of a and b."""\n    \n'


@dataclass(frozen=True)
class Typing:
    """A problem as the user writes it: the file without what is typed, where the
    typing starts, and the text typed (the docstring and any body written before the
    cursor)."""

    id: str
    path: str
    opened: str
    start: tuple[int, int]  # (line, column) in code points
    typed: str


_DOC_OPEN = re.compile(r"""^\s*[rRuU]?("{3}|'{3})""")


def typings(split: str, limit: int, max_chars: int = 400) -> list[Typing]:
    """Up to `limit` of the split's problems that have a docstring of at most `max_chars`
    (with what is written of the body), taking each project's in file order, one project
    after another."""
    from .realcode import read_records

    out: list[Typing] = []
    for record in read_records():
        if record.project.split != split:
            continue
        lines = record.source.split("\n")
        fc = record.request.fc
        row, col = record.cursor
        doc_row = next((i for i in range(fc.start_line + 1, row + 1)
                        if _DOC_OPEN.match(lines[i])), None)
        if doc_row is None:
            continue
        head = "\n".join(lines[:doc_row]) + "\n"
        cut = len(head)
        cursor_at = sum(len(x) + 1 for x in lines[:row]) + col
        typed = record.source[cut:cursor_at]
        if len(typed) > max_chars:
            continue
        opened = record.source[:cut] + record.source[cursor_at:]
        out.append(Typing(record.id, f"{record.project.name}/{record.path}", opened,
                          (doc_row, 0), typed))
    # One project after another, in turn: the first problems cover every project.
    by_project: dict[str, list[Typing]] = {}
    for t in out:
        by_project.setdefault(t.path.split("/")[0], []).append(t)
    queues = list(by_project.values())
    spread = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues
              if i < len(q)]
    return spread[:limit]


def schedule(problems: list[Typing], tiers: list[str], modes: tuple[str, ...] = MODES
             ) -> list[tuple[str, Typing, str]]:
    """The runs in order: per tier, every problem once in each mode, in rounds: round r
    gives problem i mode (i + r) mod the number of modes (so that drift falls on every
    mode), and never the same problem twice in a row (the prompt cache then holds
    another function's prompt, as when a user starts a new function)."""
    runs = []
    for tier in tiers:
        for shift in range(len(modes)):
            for i, problem in enumerate(problems):
                runs.append((tier, problem, modes[(i + shift) % len(modes)]))
    return runs


def speculative_plan(plan_file: Path, folder: Path) -> Path:
    """`plan_file` (members in the model servers) with speculative decoding as
    docs/backends.md measured it: the 0.5B drafts from n-grams of the prompt, the 1.5B
    is drafted by the 0.5B (the family's first llama_cpp member drafts for the others)."""
    import yaml

    data = yaml.safe_load(plan_file.read_text())
    served = [m for m in data["family"] if m["backend"] == "llama_cpp"]
    for i, m in enumerate(served):
        drafter = served[0]["model"] if i else "ngram"
        m["options"] = {**(m.get("options") or {}), "speculative": drafter}
    path = folder / "speculative.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def chunks(text: str) -> list[str]:
    """The text as typed a word at a time (each with the spaces or line end after it)."""
    return re.findall(r"\S+\s*|\s+", text)


def _window(name: str, plan_file: str, tier: str) -> Window:
    return Window(name, {"tier": tier, "cacheSize": 0, "prefill": False,
                         "testExamples": False, "planFile": plan_file, "maxSeconds": 0})


async def run(problems: list[Typing], tiers: list[str], cps: float, pause: float,
              timeout: float, plan_file: str = "",
              speculative: tuple[str, dict[str, str]] | None = None,
              env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The rows of every run. `speculative`: (a plan file with speculative decoding,
    the environment of its language server: a runtime directory of its own, so that its
    model servers are started with speculation), for the modes `speculation` and
    `both`; `env`: the plain language server's environment."""
    from lsprotocol import types

    windows = {"plain": _window("typing-bench", plan_file, tiers[-1])}
    if speculative is not None:
        windows["speculative"] = _window("typing-bench-speculative", speculative[0],
                                         tiers[-1])
    modes = SPEC_MODES if speculative is not None else MODES
    rows: list[dict[str, Any]] = []
    version = 0
    started: list[Window] = []
    try:
        for name, window in windows.items():
            try:
                await window.start(speculative[1] if name == "speculative" and speculative
                                   else env or {})
            finally:
                started.append(window)  # stopped whatever its start did (a no-op if none)
        # The last tier's members load first (every tier's members, for the shipped plan).
        for window in windows.values():
            await window.ready()
        # One request per tier and window first, not measured: the first ones after
        # loading read the weights from disk.
        for window in windows.values():
            for tier in tiers:
                await window.apply(tier=tier, prefill=False)
                version += 1
                uri = f"file:///typing-bench/warm-up-{version}.py"
                window.open(uri, WARM_UP)
                await window.complete(uri, 2, 4)
        for tier, problem, mode in schedule(problems, tiers, modes):
                window = windows["speculative" if mode in SPECULATIVE else "plain"]
                client, logs = window.client, window.logs
                await window.apply(tier=tier, prefill=mode in ("prefill", "both"))
                version += 1
                uri = f"file:///typing-bench/{version}/{problem.path}"
                window.open(uri, problem.opened)
                await asyncio.sleep(0.5)
                line, col = problem.start[0], _units(
                    problem.opened.split("\n")[problem.start[0]][:problem.start[1]])
                n_logs = len(logs)
                doc_version = 1
                for piece in chunks(problem.typed):
                    doc_version += 1
                    pos = types.Position(line=line, character=col)
                    client.text_document_did_change(types.DidChangeTextDocumentParams(
                        text_document=types.VersionedTextDocumentIdentifier(
                            uri=uri, version=doc_version),
                        content_changes=[types.TextDocumentContentChangePartial(
                            range=types.Range(start=pos, end=pos), text=piece)]))
                    if "\n" in piece:  # positions in UTF-16 code units
                        line += piece.count("\n")
                        col = _units(piece.rsplit("\n", 1)[1])
                    else:
                        col += _units(piece)
                    await asyncio.sleep(len(piece) / cps)
                await asyncio.sleep(pause)
                warmed = [m for m in logs[n_logs:] if "cascode: warmed" in m]
                start = time.perf_counter()
                result = await asyncio.wait_for(window.complete(uri, line, col), timeout)
                seconds = time.perf_counter() - start
                answered = isinstance(result, types.InlineCompletionList) and bool(
                    result.items)
                last = await client.workspace_execute_command_async(
                    types.ExecuteCommandParams(command="cascode.lastAnswer",
                                               arguments=[{"uri": uri}]))
                last = _plain(last) if answered else None
                stages = (last or {}).get("stages", [])
                row = {
                    "id": problem.id, "tier": tier, "mode": mode,
                    "seconds": round(seconds, 3), "answered": answered,
                    "typed_chars": len(problem.typed),
                    "warmed_before_request": len(warmed),
                    "prompt_tokens": sum(s.get("promptTokens") or 0 for s in stages),
                    "prompt_tokens_evaluated": sum(
                        s.get("promptTokensEvaluated") or 0 for s in stages),
                    "stages": [f"{s['member']} k={s['k']}" for s in stages],
                }
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                client.text_document_did_close(types.DidCloseTextDocumentParams(
                    text_document=types.TextDocumentIdentifier(uri=uri)))
    finally:
        for window in started:
            try:
                await window.stop()
            except Exception as e:  # noqa: BLE001 - the other windows are stopped too
                print(f"typing_bench: stopping a language server: {e}", file=sys.stderr)
    return rows


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if hasattr(obj, "__dict__"):
        return {k: _plain(v) for k, v in vars(obj).items()}
    return obj


def summary(rows: list[dict[str, Any]], tiers: list[str]) -> list[dict[str, Any]]:
    """Per tier and mode: p50 and mean seconds, and the prompt tokens evaluated; with the
    ratio of p50 seconds to the same tier's `off`, over the same problems. `p50_first_s`
    counts only the first request for each function in the run (`rows` in run order)
    on its model servers (the speculative modes' are their own): a model server keeps
    earlier prompts in its slots, so a later `off` request may find its prompt evaluated
    already, as if warmed."""
    seen: set[Any] = set()
    first: set[int] = set()
    for i, r in enumerate(rows):
        # The speculative modes run on model servers of their own, with their own cache.
        function = (r["mode"] in SPECULATIVE, r.get("id", i))
        if function not in seen:
            seen.add(function)
            first.add(id(r))
    out = []
    for tier in tiers:
        base = None
        for mode in SPEC_MODES:  # MODES first, in the same order
            mine = [r for r in rows if r["tier"] == tier and r["mode"] == mode]
            if not mine:
                continue
            secs = [r["seconds"] for r in mine]
            fresh = [r["seconds"] for r in mine if id(r) in first]
            p50 = statistics.median(secs)
            base = p50 if mode == "off" else base
            out.append({
                "tier": tier, "mode": mode, "requests": len(mine),
                "p50_s": round(p50, 2), "mean_s": round(statistics.fmean(secs), 2),
                "max_s": round(max(secs), 2),
                "first_requests": len(fresh),
                "p50_first_s": round(statistics.median(fresh), 2) if fresh else None,
                "prompt_tokens_p50": statistics.median(r["prompt_tokens"] for r in mine),
                "evaluated_p50": statistics.median(r["prompt_tokens_evaluated"] for r in mine),
                "warmed": sum(1 for r in mine if r["warmed_before_request"]),
                "vs_off": round(p50 / base, 2) if base else None,
            })
    return out


def table(summ: list[dict[str, Any]]) -> str:
    head = ("| tier | mode | requests | p50 s | mean s | max s | p50 s, first request "
            "of its function (n) | prompt tokens (p50) | evaluated (p50) | warmed | "
            "p50 vs off |")
    lines = [head, "|" + "---|" * 11]
    for s in summ:
        first = (f"{s['p50_first_s']} ({s['first_requests']})"
                 if s.get("p50_first_s") is not None else "-")
        lines.append(
            f"| {s['tier']} | {s['mode']} | {s['requests']} | {s['p50_s']} | {s['mean_s']} | "
            f"{s['max_s']} | {first} | {s['prompt_tokens_p50']:.0f} | "
            f"{s['evaluated_p50']:.0f} | {s['warmed']} | "
            f"{s['vs_off'] if s['vs_off'] is not None else '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cascode.benchmarks.typing_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=4)
    parser.add_argument("--split", default="test")
    parser.add_argument("--tiers", default="fast,balanced")
    parser.add_argument("--cps", type=float, default=8.0, help="typing speed, chars/second")
    parser.add_argument("--max-chars", type=int, default=400,
                        help="skip problems with more to type than this")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds before the request")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    parser.add_argument("--model-server", action="store_true",
                        help="the members in the machine's model servers, not in-process")
    parser.add_argument("--speculation", action="store_true",
                        help="with --model-server: also the modes `speculation` and `both` "
                        "(prefill and speculation), on model servers of their own that run "
                        "speculative decoding")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.speculation and not args.model_server:
        parser.error("--speculation needs --model-server (speculative decoding is a model "
                     "server's)")
    if args.json is None:
        args.json = (DEFAULT_OUT.with_name("typing_bench_server.json") if args.model_server
                     else DEFAULT_OUT)
    problems = typings(args.split, args.problems, args.max_chars)
    if not problems:
        print(f"typing_bench: no problem with a docstring in split {args.split!r}",
              file=sys.stderr)
        return 2
    tiers = [t for t in args.tiers.split(",") if t]
    t0 = time.perf_counter()
    import tempfile

    from cascode.engine.model_server import stop_servers

    from .server_bench import served_plan

    work = Path(tempfile.mkdtemp(prefix="cascode-typing-"))
    plan = served_plan(work, model_server=args.model_server)
    runtimes: list[Path] = []
    env: dict[str, str] = {}
    speculative = None
    if args.model_server:  # the servers are this run's own
        runtimes = [work / "run", *([work / "run-speculative"] if args.speculation else [])]
        for runtime in runtimes:
            runtime.mkdir(mode=0o700)
        env = {"CASCODE_RUNTIME_DIR": str(runtimes[0])}
        if args.speculation:
            speculative = (str(speculative_plan(plan, work)),
                           {"CASCODE_RUNTIME_DIR": str(runtimes[1])})
    try:
        rows = asyncio.run(run(problems, tiers, args.cps, args.pause, args.timeout,
                               str(plan), speculative, env))
    finally:
        for runtime in runtimes:
            stop_servers(runtime)
    summ = summary(rows, tiers)
    print(table(summ))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": "typing_bench",
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cpus": len(os.sched_getaffinity(0)), "python": platform.python_version()},
        "settings": {"split": args.split, "problems": [p.id for p in problems],
                     "tiers": tiers, "cps": args.cps, "pause_s": args.pause,
                     "max_chars": args.max_chars,
                     "backend": "model server" if args.model_server else "in-process",
                     "speculation": ("0.5B: n-grams of the prompt; 1.5B: drafted by the 0.5B"
                                     if args.speculation else None)},
        "wall_s": round(time.perf_counter() - t0, 1),
        "summary": summ, "rows": rows,
    }, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
