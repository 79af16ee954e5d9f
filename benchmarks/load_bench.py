"""N users on one machine's model servers, with tiers that follow the load off and on.

    python -m cascode.benchmarks.load_bench [--users 1,2,4,8] [--requests 2]
        [--tier balanced] [--split test] [--json OUT] [--plot OUT.png]
    python -m cascode.benchmarks.load_bench --replay benchmarks/results/load_bench.json

The embedded family is served as a team serves it: one llama-server per model (the
machine's model servers, engine/model_server.py, each with its API key), and the
plan's members are `backend: llama_server` members pointing at them with that key
from its file (engine/backends/remote.py). Each simulated user is what one language
server holds (an `EngineHost` of its own, its own sandbox) and asks for completions
of real-code functions (benchmarks/data/realcode, the split given) on `--tier`,
pausing 2 to 6 seconds (seeded) between requests, `--requests` each. For every N,
the same requests run twice, load-following off (`max_seconds` 0: always the tier)
and on (the default budget: twice the tier's measured seconds), one after the other,
which goes first alternating with N, each on servers started anew (so that neither
finds the other's prompts in the servers' caches).

Per N and mode: requests answered and failed (nothing is cancelled here; a failure
is counted with its message, never lost), p50 / p95 seconds from request to answer,
the servers' tokens per second (their `/metrics`, prompt and generated, over the
run's wall time), the tiers that ran, and pass@1 of the answers on the problems'
hidden tests (run afterwards, in a sandbox of their own). The load each request's
decision read is recorded, so `--replay` runs the rule again on the recorded trace
(engine/load.py `replay`) and checks that it makes the same choices.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).parent / "results" / "load_bench.json"
MODES = ("off", "on")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    i = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[i]


def team_plan(root: Path | None = None, fresh: bool = False) -> tuple[Any, list[Any]]:
    """The shipped plan with its members on the machine's model servers, reached as a
    team reaches its server (url, API key file); and the servers' endpoints. `fresh`:
    servers started anew (empty prompt caches)."""
    import yaml

    from cascode.engine import model_server
    from cascode.engine.models import resolve_model_file
    from cascode.engine.plans import load_plan, parse_plan, plan_to_dict

    shipped = load_plan(None)
    data = plan_to_dict(shipped)
    endpoints = []
    for member in data["family"]:
        path = resolve_model_file(member["model"])
        if fresh:
            model_server.stop_server(path, root=root)
        ep = model_server.ensure_server(path, model_server.ServerConfig(), root=root)
        endpoints.append(ep)
        member.update(backend="llama_server", model=member["name"],
                      options={"url": ep.address, "api_key_file": ep.key_file})
    return parse_plan(yaml.safe_dump(data, sort_keys=False), "load_bench (team plan)"), endpoints


def _server_counters(endpoints: list[Any]) -> dict[str, float]:
    from cascode.engine import model_server
    from cascode.engine.load import parse_metrics

    total = {"prompt": 0.0, "generated": 0.0}
    for ep in endpoints:
        import http.client

        conn = http.client.HTTPConnection(ep.host, ep.port, timeout=10)
        try:
            conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {ep.api_key()}"})
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        m = parse_metrics(text)
        total["prompt"] += m.get("llamacpp:prompt_tokens_total", 0.0)
        total["generated"] += m.get("llamacpp:tokens_predicted_total", 0.0)
    del model_server
    return total


def run_users(plan: Any, problems: list[Any], n_users: int, n_requests: int, tier: str,
              mode: str, seed: int, endpoints: list[Any]) -> dict[str, Any]:
    from cascode.engine.cancel import CancelToken
    from cascode.engine.host import EngineHost

    hosts = []
    for _ in range(n_users):
        host = EngineHost()
        host.set_plan(plan)
        host.cache.resize(0)
        host.make_sandbox("auto", False)
        hosts.append(host)
    records: list[dict[str, Any]] = []
    lock = threading.Lock()

    def user(u: int) -> None:
        rng = random.Random(seed * 1000 + u)
        for j in range(n_requests):
            time.sleep(rng.uniform(2.0, 6.0))
            problem = problems[(u * n_requests + j) % len(problems)]
            t0 = time.perf_counter()
            record: dict[str, Any] = {"user": u, "request": j, "problem": problem.task_id}
            try:
                answered = hosts[u].answer(problem.task, tier, cancel=CancelToken(),
                                           max_seconds=0 if mode == "off" else None)
            except Exception as e:  # noqa: BLE001 - counted, with its message
                record.update(ok=False, error=str(e))
            else:
                r = answered.result
                choice = answered.choice
                record.update(ok=True, tier=r.tier, load=r.load, code=r.code,
                              verified=r.verified,
                              loads=({k: (v.to_json() if v else None)
                                      for k, v in choice.loads.items()} if choice else None))
            record["seconds"] = round(time.perf_counter() - t0, 3)
            with lock:
                records.append(record)

    before = _server_counters(endpoints)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=user, args=(u,)) for u in range(n_users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = _server_counters(endpoints)
    for host in hosts:
        host.close()
    seconds = [r["seconds"] for r in records if r["ok"]]
    tiers: dict[str, int] = {}
    for r in records:
        if r["ok"]:
            tiers[r["tier"]] = tiers.get(r["tier"], 0) + 1
    return {
        "users": n_users, "mode": mode, "requests": len(records),
        "answered": sum(r["ok"] for r in records),
        "failed": sum(not r["ok"] for r in records), "cancelled": 0,
        "p50_s": round(statistics.median(seconds), 2) if seconds else None,
        "p95_s": round(_percentile(seconds, 0.95), 2) if seconds else None,
        "wall_s": round(wall, 1),
        "prompt_tokens_per_s": round((after["prompt"] - before["prompt"]) / wall, 1),
        "generated_tokens_per_s": round((after["generated"] - before["generated"]) / wall, 1),
        "tiers": tiers, "records": sorted(records, key=lambda r: (r["user"], r["request"])),
    }


def judge(rows: list[dict[str, Any]], problems: dict[str, Any]) -> None:
    """pass@1 of each row's answers on the problems' hidden tests."""
    from cascode.engine.sandbox import create_sandbox
    from cascode.engine.types import Verdict

    sandbox = create_sandbox("auto", required=True)
    try:
        for row in rows:
            passed = 0
            for r in row["records"]:
                if r["ok"]:
                    program = problems[r["problem"]].program(r["code"])
                    r["passed"] = sandbox.run_program(program) == Verdict.PASSED
                    passed += r["passed"]
            row["pass_at_1"] = round(passed / row["requests"], 3) if row["requests"] else None
    finally:
        sandbox.close()


def table(rows: list[dict[str, Any]]) -> str:
    from .tables import markdown_table

    return markdown_table(
        ["users", "load-following", "answered / requests", "failed", "p50 s", "p95 s",
         "pass@1", "tiers run", "server tokens/s (prompt + generated)"],
        [[r["users"], r["mode"], f"{r['answered']} / {r['requests']}", r["failed"],
          r["p50_s"], r["p95_s"], r.get("pass_at_1"),
          ", ".join(f"{k} {v}" for k, v in sorted(r["tiers"].items())),
          f"{r['prompt_tokens_per_s']} + {r['generated_tokens_per_s']}"] for r in rows])


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, style in (("off", "o-"), ("on", "s-")):
        points = [(r["users"], r["p95_s"]) for r in rows if r["mode"] == mode and r["p95_s"]]
        if points:
            ax.plot(*zip(*points, strict=True), style,
                    label=f"load-following {mode}")
    ax.set_xlabel("simulated users (N)")
    ax.set_ylabel("p95 request to answer (s)")
    ax.set_xscale("log", base=2)
    ax.set_title("One machine's model servers, N users")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def replay_file(path: Path) -> int:
    """The rule replayed on the recorded loads: the same choices as in the run?"""
    from cascode.engine.load import ServerLoad, replay
    from cascode.engine.plans import parse_plan

    data = json.loads(path.read_text())
    plan = parse_plan(data["plan"], f"{path} (plan)")
    same = total = 0
    for row in data["rows"]:
        if row["mode"] != "on":
            continue
        recorded = [r for r in row["records"] if r["ok"] and r.get("loads")]
        trace = [{k: (ServerLoad.from_json(v) if v else None) for k, v in r["loads"].items()}
                 for r in recorded]
        replayed = replay(plan, data["tier"], None if data["budget"] is None else
                          float(data["budget"]), trace)
        for r, c in zip(recorded, replayed.choices, strict=True):
            total += 1
            same += c.tier == r["tier"]
        print(f"N = {row['users']}: {len(recorded)} decisions replayed; expected pass@1 "
              f"{replayed.pass_at_1:.3f}, expected seconds {replayed.seconds:.1f}")
    print(f"{same} of {total} replayed choices are the run's")
    return 0 if same == total else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cascode.benchmarks.load_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="1,2,4,8")
    parser.add_argument("--requests", type=int, default=2, help="requests per user")
    parser.add_argument("--tier", default="balanced")
    parser.add_argument("--split", default="test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--plot", type=Path, default=None,
                        help="the p95 plot (default: the JSON's path with .png)")
    parser.add_argument("--runtime-dir", type=Path, default=None,
                        help="where the model servers' state lives (default: this user's; "
                             "another directory starts servers of its own)")
    parser.add_argument("--replay", type=Path, default=None,
                        help="replay the rule on a recorded run's loads instead of running")
    args = parser.parse_args(argv)
    if args.replay:
        return replay_file(args.replay)
    import yaml

    from cascode.engine.load import default_budget
    from cascode.engine.plans import plan_to_dict

    from .datasets import load_dataset

    dataset = load_dataset(f"realcode:{args.split}")
    problems = list(dataset.problems)
    random.Random(args.seed).shuffle(problems)
    rows = []
    plan = None
    for i, n in enumerate(int(x) for x in args.users.split(",")):
        order = MODES if i % 2 == 0 else MODES[::-1]
        for mode in order:
            # Fresh servers for every run: the other mode's prompts (the same functions)
            # must not be in their caches.
            plan, endpoints = team_plan(args.runtime_dir, fresh=True)
            print(f"N = {n}, load-following {mode} ...", file=sys.stderr, flush=True)
            row = run_users(plan, problems, n, args.requests, args.tier, mode, args.seed,
                            endpoints)
            print(f"  p50 {row['p50_s']} s, p95 {row['p95_s']} s, tiers {row['tiers']}",
                  file=sys.stderr, flush=True)
            rows.append(row)
    assert plan is not None
    rows.sort(key=lambda r: (r["users"], MODES.index(r["mode"])))
    judge(rows, {p.task_id: p for p in problems})
    print(table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": "load_bench",
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cpus": len(os.sched_getaffinity(0))},
        "tier": args.tier, "budget": default_budget(plan, args.tier), "split": args.split,
        "plan": yaml.safe_dump(plan_to_dict(plan), sort_keys=False),
        "rows": rows,
    }, indent=1) + "\n")
    out = args.plot or args.json.with_suffix(".png")
    plot(rows, out)
    print(f"wrote {args.json} and {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
