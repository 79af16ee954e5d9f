"""`cascode doctor`: does this machine run what cascode needs?

Two verdicts, side by side: the sandbox (which isolation paths and layers work)
and the model backend (whether the installed llama.cpp runs on this CPU: a
child process loads the smallest installed model and evaluates a full prompt
batch). Exit 1 when either is unusable.
"""

from __future__ import annotations

import argparse
import json
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
    if args.json:
        print(json.dumps({**sandbox_doctor.json_view(sandbox), "backend": backend}, indent=2))
    else:
        sandbox_doctor.print_table(sandbox)
        print()
        print_backend(backend)
    return 0 if sandbox["ok"] and backend["ok"] else 1
