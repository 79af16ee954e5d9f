"""`cascode stats`: how often the server's answers were accepted, and how fast they came,
per tier and per member (from the local statistics file; nothing is sent anywhere).
Statistics files the server moved aside (unreadable, or of another version) are listed,
not counted; `--reset` leaves them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="the rows as JSON")
    parser.add_argument("--reset", action="store_true",
                        help="delete the statistics file (not the files moved aside)")


def run(args: argparse.Namespace) -> int:
    from cascode.server import stats

    path = stats.stats_file()
    aside = [str(p) for p in stats.set_aside_files(path)]
    if args.reset:
        try:
            path.unlink()
            print(f"deleted {path}")
        except FileNotFoundError:
            print(f"nothing to reset (no file {path})")
        _print_aside(aside)
        return 0
    try:
        table = stats.load(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"cascode: {path} is unreadable ({e}); the server will move it aside (to "
              f"{path.name}.{stats.aside_kind(e)}-<time>) and start a new one",
              file=sys.stderr)
        table = {}
    rows = stats.summarize(table)
    if args.json:
        print(json.dumps({"file": str(path), "rows": rows, "set_aside": aside}, indent=2))
        return 0
    if not rows:
        print(f"no answers recorded yet (file: {path})")
        _print_aside(aside)
        return 0
    print(f"file: {path}")
    header = (f"{'tier / member':<28} {'shown':>6} {'accepted':>9} {'whole':>6} {'part':>5}"
              f" {'dismissed':>9} {'rate':>7} {'p50 s':>7} {'p95 s':>7}")
    print(header)
    print("-" * len(header))
    for row in rows:
        name = row["tier"] if row["member"] is None else f"  {row['member']}"
        print(f"{name:<28} {row['shown']:>6} {row['accepted']:>9} {row['accepted_whole']:>6}"
              f" {row['accepted_part']:>5} {row['dismissed']:>9} {_pct(row['acceptance_rate']):>7}"
              f" {_secs(row['p50_s']):>7} {_secs(row['p95_s']):>7}")
    print("rate: accepted (whole or in part) / shown; p50, p95: latency of the last "
          f"{stats.KEEP_LATENCIES} answers per member")
    _print_aside(aside)
    return 0


def _print_aside(paths: list[str]) -> None:
    for path in paths:
        print(f"moved aside, not counted (unreadable or of another version): {path}")


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _secs(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}"
