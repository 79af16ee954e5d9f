"""The `cascode` command. Subcommands are imported lazily: `cascode complete`
never imports pygls, `cascode serve` never imports matplotlib.

A subcommand module has `add_arguments(parser)` and `run(args) -> int`.
Engine errors (CascodeError) become one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "complete": ("cascode.commands.complete", "complete the function at FILE:LINE (or stdin)"),
    "plans": ("cascode.commands.plans", "list the tiers of a plan file"),
    "models": ("cascode.commands.models", "list, install, verify or quantize family models"),
    "doctor": (
        "cascode.commands.doctor",
        "report which sandbox layers work here and whether llama.cpp runs on this CPU",
    ),
    "serve": ("cascode.server.cli", "run the language server (stdio or TCP)"),
    "stats": (
        "cascode.commands.stats",
        "acceptance rate and latency of the server's answers, per tier and member",
    ),
    "calibrate": (
        "cascode.benchmarks.cli_calibrate",
        "sample a family, search plans, write a plan file",
    ),
    "evaluate": ("cascode.benchmarks.cli_evaluate", "measure a plan's tiers on a dataset"),
}


def _chosen(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cascode",
        description="Code completion from the cheapest model that can prove its answer.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen(argv)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            # Only the chosen subcommand's module is imported.
            p.set_defaults(_module=module)
            importlib.import_module(module).add_arguments(p)
    return parser


def _version() -> str:
    from cascode import __version__

    return f"cascode {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from cascode.engine.errors import CascodeError

    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "_module", None):
            parser.print_help(sys.stderr)
            return 2
        logging.basicConfig(
            level=logging.WARNING - 10 * min(args.verbose, 2),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        return int(importlib.import_module(args._module).run(args) or 0)
    except CascodeError as e:
        print(f"cascode: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cascode: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:
        print(f"cascode: error: {e.name} is not installed ({e})", file=sys.stderr)
        return 1
