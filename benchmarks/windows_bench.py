"""Two editor windows and a CLI call on one machine's model servers; and a model server
killed during a request.

    python -m cascode.benchmarks.windows_bench [--tier fast] [--json OUT]

Two `cascode serve` processes (two editor windows, each driven over stdio by a pygls
client) and `cascode complete` use the shipped plan with its members in the machine's
model servers (`model_server: true`; a runtime directory of the run's own, so the
servers start here and are stopped at the end). Real-code test-split functions
(benchmarks/data/realcode), the answer cache off. Measured:

1. alone: each window's request, three times;
2. at once: each window's request while the other window's runs, three pairs; the median
   at once against the median alone (target: at most 2.2 times); then both again while a
   `cascode complete` asks for a third function; and the resident memory (RSS) of every
   process, sampled from /proc every 0.5 s during that step (not during the measured
   pairs: the sampler shares the cores): the language servers (with their sandbox
   workers), the CLI, the model servers, counted once whoever started them; the models
   are resident once. Each window asks once before the measured requests, so its prompt
   is evaluated as the warm-up while typing (`prefill`) would have done;
3. a second `cascode complete` on the warm servers (three calls, the median): its wall
   time against the answer's own seconds (target: at most 0.5 s more);
4. `kill -9` of the model servers 1.5 s into window A's request for a fourth function,
   whose prompt is new to the servers (so that the request is still running; the
   result says whether it was): what the editor is told
   (the request's answer and every message), that the language server is alive, and
   the next request answered by servers started again.

Results go to `benchmarks/results/windows_bench.json` (`windows_bench_TIER.json` for
another tier than fast) and a table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .server_bench import Window

DEFAULT_OUT = Path(__file__).parent / "results" / "windows_bench.json"
REPEATS = 3  # requests alone and pairs at once, per window


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    """`pid`'s descendants, from /proc (each thread's `children`): no process started.
    A process or thread that ends while it is read is skipped."""
    kids: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return kids
    for task in tasks:
        try:
            with open(task / "children") as f:
                kids += [int(x) for x in f.read().split()]
        except OSError:
            continue
    return kids + [g for k in kids for g in _children(k)]


def _functions(n: int) -> list[dict[str, Any]]:
    from .realcode import read_records

    seen: set[str] = set()
    out = []
    for record in read_records():
        if record.project.split != "test" or record.project.name in seen:
            continue
        seen.add(record.project.name)
        row, col = record.cursor
        out.append({"id": record.id, "source": record.source, "line": row, "col": col})
        if len(out) == n:
            break
    return out


class FunctionWindow(Window):
    """An editor window on the plan `plan` and tier `tier` (answer cache, warm-up while
    typing and the load's tier choice off) that opens real-code functions and asks for
    them, timing each answer."""

    def __init__(self, name: str, plan: str, tier: str) -> None:
        super().__init__(name, {"planFile": plan, "tier": tier, "cacheSize": 0,
                                "prefill": False, "maxSeconds": 0})

    def open_function(self, fn: dict[str, Any]) -> str:
        uri = f"file:///{self.name}/{fn['id'].replace('/', '_')}.py"
        self.open(uri, fn["source"])
        return uri

    async def ask(self, uri: str, fn: dict[str, Any]) -> dict[str, Any]:
        from lsprotocol import types

        t0 = time.perf_counter()
        try:
            result = await self.complete(uri, fn["line"], fn["col"])
        except Exception as e:  # noqa: BLE001 - what the editor would be told
            return {"ok": False, "error": str(e), "seconds": time.perf_counter() - t0}
        items = result.items if isinstance(result, types.InlineCompletionList) else []
        return {"ok": bool(items), "seconds": round(time.perf_counter() - t0, 2),
                "items": len(items)}


def _cli(plan: str, tier: str, path: Path, line: int, env: dict[str, str]
         ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cascode", "complete", "--plan-file", plan, "--tier", tier,
         "--max-seconds", "0", "--json", f"{path}:{line + 1}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})


def _servers(runtime: Path) -> list[dict[str, Any]]:
    out = []
    for state in sorted(runtime.glob("server-*.json")):
        data = json.loads(state.read_text())
        out.append({"pid": int(data["pid"]), "model": Path(data["model"]).name})
    return out


async def run(tier: str) -> dict[str, Any]:
    from cascode.engine.model_server import stop_servers

    from .server_bench import served_plan

    work = Path(tempfile.mkdtemp(prefix="cascode-windows-"))
    runtime = work / "run"
    runtime.mkdir(mode=0o700)
    env = {"CASCODE_RUNTIME_DIR": str(runtime)}
    plan = str(served_plan(work))
    f1, f2, f3, f4 = _functions(4)
    f3_path = work / "cli_target.py"
    f3_path.write_text(f3["source"])
    out: dict[str, Any] = {"tier": tier, "functions": [f["id"] for f in (f1, f2, f3, f4)]}
    a, b = FunctionWindow("a", plan, tier), FunctionWindow("b", plan, tier)
    try:
        for window in (a, b):
            await window.start(env)
            await window.ready(600)
        ua, ub = a.open_function(f1), b.open_function(f2)
        # Each window's first request loads the models and evaluates its prompt, as
        # the warm-up while typing would (`prefill`, on by default); the requests
        # measured then find their prompts evaluated, alone and together alike.
        out["warm_up"] = {"a": await a.ask(ua, f1), "b": await b.ask(ub, f2)}
        alone_a = [await a.ask(ua, f1) for _ in range(REPEATS)]
        alone_b = [await b.ask(ub, f2) for _ in range(REPEATS)]
        out["alone_s"] = {"a": [r["seconds"] for r in alone_a],
                          "b": [r["seconds"] for r in alone_b]}
        peak: dict[str, float] = {}

        def servers() -> dict[int, str]:
            return {s["pid"]: f"model server {s['model']}" for s in _servers(runtime)}

        async def sample_rss(done: asyncio.Future[Any], cli_pid: int) -> None:
            # A window's own processes (its sandbox workers) count with it; the model
            # servers are counted once, under their own names, whoever started them.
            while not done.done():
                shared = servers()
                pids = {"window a": a.pid, "window b": b.pid, "cli": cli_pid,
                        **{name: pid for pid, name in shared.items()}}
                for name, pid in pids.items():
                    if not pid:
                        continue
                    kids = [k for k in _children(pid) if k not in shared]
                    peak[name] = max(peak.get(name, 0.0),
                                     _rss_mib(pid) + sum(_rss_mib(k) for k in kids))
                await asyncio.sleep(0.5)

        # Two windows at once: A's request while B's runs, REPEATS times; each ratio
        # is the median at once over the median alone (these machines are noisy).
        # Memory is sampled in the next step only: the sampler shares the cores.
        pairs = [await asyncio.gather(a.ask(ua, f1), b.ask(ub, f2)) for _ in range(REPEATS)]
        together = {"a": [ra["seconds"] for ra, _ in pairs],
                    "b": [rb["seconds"] for _, rb in pairs]}
        out["two_windows"] = {
            "a": pairs[-1][0], "b": pairs[-1][1], "seconds": together,
            "all_answered": all(r["ok"] for pair in pairs for r in pair),
            **{f"ratio_{w}": round(statistics.median(together[w])
                                   / statistics.median(out["alone_s"][w]), 2)
               for w in ("a", "b")}}
        # Two windows and a CLI call at once (the CLI's prompt is new to the servers).
        cli = _cli(plan, tier, f3_path, f3["line"], env)
        three = asyncio.gather(a.ask(ua, f1), b.ask(ub, f2))
        sampler = asyncio.ensure_future(sample_rss(three, cli.pid))
        ra, rb = await three
        await sampler
        cli_out, cli_err = await asyncio.to_thread(cli.communicate)
        cli_s = (round(float(json.loads(cli_out).get("seconds", 0.0)), 2)
                 if cli.returncode == 0 else None)
        out["with_cli"] = {"a": ra, "b": rb, "cli_rc": cli.returncode, "cli_answer_s": cli_s,
                           "cli_stderr_tail": cli_err.strip().splitlines()[-2:],
                           "ratio_a": round(ra["seconds"]
                                            / statistics.median(out["alone_s"]["a"]), 2)}
        out["rss_mib"] = {k: round(v) for k, v in sorted(peak.items())}
        out["rss_total_mib"] = round(sum(peak.values()))
        # A second CLI call on the warm servers: wall time against its answer's seconds.
        # REPEATS calls; the median overhead, with its call's figures.
        calls = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            cli = _cli(plan, tier, f3_path, f3["line"], env)
            cli_out, _ = await asyncio.to_thread(cli.communicate)
            wall = time.perf_counter() - t0
            answer_s = (float(json.loads(cli_out).get("seconds", 0.0))
                        if cli.returncode == 0 else 0.0)
            calls.append({"wall_s": round(wall, 2), "answer_s": round(answer_s, 2),
                          "overhead_s": round(wall - answer_s, 2), "rc": cli.returncode})
        calls.sort(key=lambda c: c["overhead_s"])
        out["cli_warm"] = {**calls[len(calls) // 2],
                           "overheads_s": [c["overhead_s"] for c in calls]}
        # kill -9 of the model servers during A's request: for a function whose prompt
        # is new to the servers, so that the request is still evaluating it 1.5 s in
        # (a warm prompt is answered sooner than that).
        before = len(a.messages)
        u4 = a.open_function(f4)
        request = asyncio.ensure_future(a.ask(u4, f4))
        await asyncio.sleep(1.5)
        in_flight = not request.done()
        killed = _servers(runtime)
        for s in killed:
            os.kill(s["pid"], signal.SIGKILL)
        crashed = await request
        await asyncio.sleep(0.5)
        alive = a.pid > 0 and os.path.exists(f"/proc/{a.pid}")
        after = await a.ask(u4, f4)
        out["crash"] = {"function": f4["id"], "in_flight_at_kill": in_flight,
                        "killed": killed, "request": crashed,
                        "told": a.messages[before:], "language_server_alive": alive,
                        "next_request": after,
                        "new_servers": _servers(runtime)}
    finally:
        for window in (a, b):
            try:
                await window.stop()
            except Exception as e:  # noqa: BLE001 - the servers are stopped all the same
                print(f"windows_bench: stopping window {window.name}: {e}", file=sys.stderr)
        stop_servers(runtime)
    return out


def table(out: dict[str, Any]) -> str:
    """The measured rows: seconds alone and at once, memory, the CLI and the crash."""
    from .tables import markdown_table

    alone = out["alone_s"]
    two, three, crash = out["two_windows"], out["with_cli"], out["crash"]
    rows: list[list[object]] = [
        ["window A alone", f"{statistics.median(alone['a'])} s", f"median of {alone['a']}"],
        ["window B alone", f"{statistics.median(alone['b'])} s", f"median of {alone['b']}"],
        ["A while B's request runs", f"{statistics.median(two['seconds']['a'])} s",
         f"{two['ratio_a']}x A alone (target at most 2.2x); median of {two['seconds']['a']}"],
        ["B while A's request runs", f"{statistics.median(two['seconds']['b'])} s",
         f"{two['ratio_b']}x B alone (target at most 2.2x); median of {two['seconds']['b']}"],
        ["A while B and a `cascode complete` run", f"{three['a']['seconds']} s",
         f"{three['ratio_a']}x A alone; the CLI's answer took {three['cli_answer_s']} s"],
        ["resident memory, all processes", f"{out['rss_total_mib']} MiB",
         ", ".join(f"{k} {v}" for k, v in out["rss_mib"].items())],
        ["second `cascode complete`, warm servers", f"{out['cli_warm']['wall_s']} s",
         f"the answer's own {out['cli_warm']['answer_s']} s + "
         f"{out['cli_warm']['overhead_s']} s (target at most 0.5 s)"],
        ["`kill -9` of the model servers during A's request",
         f"{crash['request']['seconds']} s",
         ("" if crash.get("in_flight_at_kill", True) else
          "the request had ended before the kill; ") + ("; ".join(crash["told"])
                                                        or "nothing said")],
        ["A's next request (servers started again)", f"{crash['next_request']['seconds']} s",
         f"answered: {crash['next_request']['ok']}; language server alive: "
         f"{crash['language_server_alive']}"],
    ]
    return markdown_table(["measured", "value", "notes"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cascode.benchmarks.windows_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--tier", default="fast")
    parser.add_argument("--json", type=Path, default=None,
                        help="results file (default: benchmarks/results/windows_bench.json "
                        "for the fast tier, windows_bench_TIER.json for another)")
    args = parser.parse_args(argv)
    from cascode.engine.hardware import hardware

    out = asyncio.run(run(args.tier))
    print(table(out))
    if args.json is None:
        args.json = (DEFAULT_OUT if args.tier == "fast"
                     else DEFAULT_OUT.with_name(f"windows_bench_{args.tier}.json"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "windows_bench", "machine": hardware(),
                                     **out}, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
