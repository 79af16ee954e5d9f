"""The sandbox half of `cascode doctor`: which sandbox paths and layers work here.

Starts a worker on each path in turn and runs its self-check, so what it prints
is what `auto` would find. Light to import: the sandbox is imported in `run`.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import subprocess
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--layers",
        default="all",
        help="check one path only (bwrap, unshare, landlock, rlimits); default: all",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _bwrap_version() -> str:
    exe = shutil.which("bwrap")
    if not exe:
        return "not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=5)
        return f"{out.stdout.strip() or out.stderr.strip()} at {exe}"
    except (OSError, subprocess.SubprocessError) as e:
        return f"{exe} (does not run: {e})"


def _seccomp_state() -> str:
    from . import _confine

    try:
        prog = _confine.compile_seccomp()
    except Exception as e:
        return f"unavailable ({e}); install the sandbox extra and libseccomp2"
    return f"ok ({len(prog.code) // 8} BPF instructions)"


def _check(path: str) -> dict[str, object]:
    from .paths import prerequisite
    from .process import ProcessSandbox

    why = prerequisite(path)
    if why:
        return {"path": path, "ok": False, "why": why, "layers": [], "startup_s": None}
    # rlimits is checked for its verdicts; `auto` still refuses it without the opt-in.
    # Its self-check's warning (a write escaped, as expected there) is said in the table.
    quiet = logging.getLogger("cascode.engine.sandbox.process")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        sb = ProcessSandbox(path, allow_unsafe=path == "rlimits")
    finally:
        quiet.setLevel(level)
    try:
        result: dict[str, object] = {
            "path": path, "ok": sb.available, "why": sb.reason and sb.refused.get(path, sb.reason),
            "layers": sb.layers, "startup_s": round(sb.startup_s, 3),
        }
    finally:
        sb.close()
    if path == "rlimits" and result["ok"]:
        result["why"] = "works, but isolates nothing: used only with the unsafe setting"
    return result


def collect(args: argparse.Namespace) -> dict[str, object]:
    """The sandbox's report: facts, each path's verdict, and what `auto` uses."""
    from ..errors import CascodeError
    from . import _confine
    from .paths import PATHS

    if args.layers != "all" and args.layers not in PATHS:
        raise CascodeError(f"--layers: unknown path {args.layers!r} "
                           f"(expected one of: all, {', '.join(PATHS)})")
    paths = PATHS if args.layers == "all" else (args.layers,)
    results = [_check(p) for p in paths]
    auto = next((r for r in results if r["ok"] and r["path"] != "rlimits"), None)
    facts = {
        "python": f"{sys.executable} ({platform.python_version()})",
        "kernel": f"{platform.release()} ({platform.machine()})",
        "landlock_abi": _confine.landlock_abi(),
        "bubblewrap": _bwrap_version(),
        "seccomp": _seccomp_state(),
    }
    ok = auto is not None or args.layers != "all" and bool(results[0]["ok"])
    return {"facts": facts, "paths": results, "auto": auto and auto["path"],
            "auto_layers": auto and auto["layers"], "all": args.layers == "all", "ok": ok}


def print_table(report: dict[str, object]) -> None:
    results: list[dict[str, object]] = report["paths"]  # type: ignore[assignment]
    if report["auto"] is not None:
        auto_line = f"{report['auto']} ({', '.join(report['auto_layers'])})"  # type: ignore[arg-type]
    elif report["all"]:
        auto_line = "none: generated code will not be executed (answers are unverified)"
    else:
        auto_line = "(only checked one path)"
    print("cascode sandbox doctor")
    for key, value in report["facts"].items():  # type: ignore[attr-defined]
        print(f"  {key:<13} {value}")
    print()
    print(f"  {'path':<9} {'status':<8} {'start-up':>8}  layers / why not")
    for r in results:
        status = "ok" if r["ok"] else "refused"
        start = f"{r['startup_s']:.2f} s" if r["startup_s"] is not None else "-"
        detail = ", ".join(r["layers"]) if r["ok"] else str(r["why"])  # type: ignore[arg-type]
        if r["path"] == "rlimits" and r["ok"]:
            detail += f"  ({r['why']})"
        print(f"  {r['path']:<9} {status:<8} {start:>8}  {detail}")
    print()
    print(f"  auto uses: {auto_line}")


def json_view(report: dict[str, object]) -> dict[str, object]:
    return {k: report[k] for k in ("facts", "paths", "auto")}


def run(args: argparse.Namespace) -> int:
    report = collect(args)
    if args.json:
        print(json.dumps(json_view(report), indent=2))
    else:
        print_table(report)
    return 0 if report["ok"] else 1
