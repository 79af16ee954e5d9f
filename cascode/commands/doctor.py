"""`cascode doctor`: does this machine run what cascode needs?

Three verdicts, side by side: the sandbox (which isolation paths and layers work),
the model backend (whether the installed llama.cpp runs on this CPU: a child
process loads the smallest installed model and evaluates a full prompt batch),
and the machine's model server (whether the llama-server install.sh built runs
here, and which are running). Exit 1 when the sandbox or the backend is unusable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cascode.engine.sandbox import doctor as sandbox_doctor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sandbox_doctor.add_arguments(parser)
    parser.add_argument(
        "--backend",
        action="store_true",
        help="check only the model backend (llama.cpp on this CPU)",
    )
    parser.add_argument(
        "--plan",
        metavar="PLAN",
        help="also check the plan's members served elsewhere (backend llama_server or "
             "openai): reachable, key accepted, model loaded, tokens per second",
    )
    parser.add_argument(
        "--recheck",
        action="store_true",
        help="run the backend check again instead of using its cached verdict",
    )


def backend_report(recheck: bool = False) -> dict[str, Any]:
    """The llama.cpp backend's facts and verdict, as a dict."""
    from importlib import metadata

    from cascode.engine.backends import llama_build, llama_check
    from cascode.engine.errors import CascodeError

    machine, flags = llama_build.read_cpu()
    fits = llama_build.cmake_args(machine, flags)
    report: dict[str, Any] = {
        "backend": "llama_cpp",
        "cpu": f"{_cpu_name()} ({machine})",
        "cpu_fits": llama_build.describe_cpu(fits),
    }
    try:
        report["library"] = f"llama-cpp-python {metadata.version('llama-cpp-python')}"
        report["library_dir"] = str(llama_check.library_dir())
    except (metadata.PackageNotFoundError, CascodeError) as e:
        report.update(ok=False, verdict=f"not installed ({e})")
        return report
    stamp = llama_check.build_stamp()
    report["built_for"] = (
        llama_build.describe_cpu(stamp["cmake_args"].split())
        + ("" if stamp.get("cpu") == llama_build.cpu_key(machine, flags)
           else " (stamped on another CPU)")
        if stamp and stamp.get("cmake_args")
        else "unknown (not built by install.sh)"
    )
    model = llama_check.smallest_model()
    if model is None:
        report.update(ok=True, verdict="not checked: no llama.cpp model is installed "
                                       "(cascode models install)")
        return report
    try:
        verdict = llama_check.check(model, use_cache=not recheck)
    except CascodeError as e:
        report.update(ok=False, verdict=str(e))
        return report
    when = "cached verdict" if verdict.cached else "checked now"
    report.update(
        ok=verdict.ok,
        verdict=(f"ok: {verdict.detail} ({verdict.seconds:.1f} s, {when})"
                 if verdict.ok else verdict.detail),
    )
    return report


def server_report(recheck: bool = False) -> dict[str, Any]:
    """The machine's model server (engine/model_server.py): its binary, whether it runs
    on this CPU, and the servers running for this user."""
    import time

    from cascode.engine import model_server
    from cascode.engine.backends import llama_server_check
    from cascode.engine.errors import CascodeError

    report: dict[str, Any] = {}
    try:
        binary = model_server.server_binary()
    except CascodeError as e:
        report.update(ok=False, verdict=str(e), running=[])
        return report
    report["binary"] = str(binary)
    try:
        verdict = llama_server_check.check(binary, use_cache=not recheck)
        when = "cached verdict" if verdict.cached else "checked now"
        report.update(ok=verdict.ok, verdict=(f"ok: {verdict.detail} ({verdict.seconds:.1f} s, "
                                              f"{when})" if verdict.ok else verdict.detail))
    except CascodeError as e:
        report.update(ok=False, verdict=str(e))
    try:
        running = model_server.running_servers()
    except CascodeError as e:
        running = []
        report["running_error"] = str(e)
    now = time.time()
    report["running"] = [{"model": Path(ep.model).name, "address": ep.address, "pid": ep.pid,
                          "up_s": round(now - ep.started_at)} for ep in running]
    return report


def remote_report(plan_path: str) -> list[dict[str, Any]]:
    """Each member of the plan served elsewhere: one line saying that it answers with the
    key it is given and how fast, or why not."""
    import time

    from cascode.engine.backends import create_backend
    from cascode.engine.errors import CascodeError
    from cascode.engine.plans import load_plan

    out: list[dict[str, Any]] = []
    plan = load_plan(plan_path)
    for member in plan.family:
        if member.backend not in ("llama_server", "openai"):
            continue
        row: dict[str, Any] = {"member": member.name, "backend": member.backend,
                               "url": dict(member.options).get("url")
                               or dict(member.options).get("base_url")}
        try:
            backend: Any = create_backend(member)
            if member.backend == "llama_server":
                row.update(_check_llama_server(backend))
            else:
                t0 = time.perf_counter()
                from cascode.engine.extract import NoStop
                from cascode.engine.types import Message, SampleSpec

                spec = SampleSpec(messages=(Message("user", "Count to twenty."),), prefix="",
                                  n=1, max_tokens=32, stop=NoStop())
                [[g]] = backend.sample([spec])
                seconds = time.perf_counter() - t0
                row.update(ok=True, verdict=(f"ok: {member.model} answered {g.generated_tokens} "
                                             f"tokens in {seconds:.2f} s"))
            load = backend.server_load()
            if load is not None:
                row["load"] = load.to_json()
                row["verdict"] += f"; now {load.running} running, {load.waiting} waiting"
        except CascodeError as e:
            row.update(ok=False, verdict=str(e))
        out.append(row)
    return out


def _check_llama_server(backend: Any) -> dict[str, Any]:
    ep = backend.endpoint()  # /props: reachable, the key accepted, the model it serves
    model = Path(ep.model_file or "?").name
    data = backend._call(ep, "POST", "/completion", {
        **backend._model_field, "prompt": "def fibonacci(n):\n", "n_predict": 32,
        "temperature": 0, "cache_prompt": False, "ignore_eos": True},
        timeout=backend.settings.timeout_s)
    timings = data.get("timings") or {}
    decode = float(timings.get("predicted_per_second") or 0.0)
    prompt = float(timings.get("prompt_per_second") or 0.0)
    return {"ok": True, "model": model, "slots": ep.slots, "decode_tokens_per_s": round(decode, 1),
            "prompt_tokens_per_s": round(prompt, 1),
            "verdict": (f"ok: key accepted, {model} loaded, {ep.slots} slots, "
                        f"{decode:.1f} tokens/s decoding, {prompt:.0f} tokens/s prompt")}


def print_remote(rows: list[dict[str, Any]]) -> None:
    print("cascode remote members doctor")
    if not rows:
        print("  none: every member of the plan runs on this machine")
    for r in rows:
        print(f"  {r['member']:<13} {r['url']}: {r['verdict']}")


def print_server(report: dict[str, Any]) -> None:
    print("cascode model server doctor")
    if "binary" in report:
        print(f"  {'binary':<13} {report['binary']}")
    print(f"  {'verdict':<13} {report['verdict']}")
    running = report.get("running") or []
    if report.get("running_error"):
        print(f"  {'running':<13} {report['running_error']}")
    elif not running:
        print(f"  {'running':<13} none (the first client that needs a model starts one)")
    for r in running:
        print(f"  {'running':<13} {r['model']} at {r['address']} (pid {r['pid']}, "
              f"up {r['up_s']} s)")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def print_backend(report: dict[str, Any]) -> None:
    print("cascode model backend doctor")
    for key in ("backend", "library", "built_for", "cpu", "cpu_fits"):
        if key in report:
            print(f"  {key.replace('_', ' '):<13} {report[key]}")
    print(f"  {'verdict':<13} {report['verdict']}")


def run(args: argparse.Namespace) -> int:
    backend = backend_report(args.recheck)
    if args.backend:
        if args.json:
            print(json.dumps({"backend": backend}, indent=2))
        else:
            print_backend(backend)
        return 0 if backend["ok"] else 1
    sandbox = sandbox_doctor.collect(args)
    server = server_report(args.recheck)
    remote = remote_report(args.plan) if args.plan else None
    if args.json:
        print(json.dumps({**sandbox_doctor.json_view(sandbox), "backend": backend,
                          "model_server": server,
                          **({"remote_members": remote} if remote is not None else {})},
                         indent=2))
    else:
        sandbox_doctor.print_table(sandbox)
        print()
        print_backend(backend)
        print()
        print_server(server)
        if remote is not None:
            print()
            print_remote(remote)
    # The model server runs llama_cpp members by default; where it is not built they run
    # in the client's process (with a warning), so its verdict is reported, not required.
    # The members a plan names are required.
    remote_ok = remote is None or all(r["ok"] for r in remote)
    return 0 if sandbox["ok"] and backend["ok"] and remote_ok else 1
