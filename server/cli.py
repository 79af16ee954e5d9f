"""`cascode serve`: the language server over stdio (default) or TCP.

Light to import: pygls is imported only when the server starts.
"""

from __future__ import annotations

import argparse
import logging

from cascode.engine.errors import CascodeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument(
        "--stdio", action="store_true", help="talk LSP over stdin/stdout (the default)"
    )
    transport.add_argument(
        "--tcp", metavar="HOST:PORT", help="listen on a TCP address instead of stdio"
    )
    parser.add_argument("--log-file", metavar="PATH", help="also write the log to this file")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, dest="serve_verbose",
        help="log more (-vv: debug); the log goes to stderr, never to stdout",
    )


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CascodeError(f"--tcp {text!r}: expected HOST:PORT, e.g. 127.0.0.1:2087")
    return host.strip("[]"), int(port)


def _configure_logging(verbosity: int, log_file: str | None) -> None:
    level = logging.WARNING - 10 * min(verbosity, 2)
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_file:
        try:
            handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as e:
            raise CascodeError(f"--log-file {log_file}: {e.strerror or e}") from None
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        root.addHandler(handler)


def run(args: argparse.Namespace) -> int:
    address = parse_address(args.tcp) if args.tcp else None
    _configure_logging(getattr(args, "verbose", 0) + args.serve_verbose, args.log_file)
    from .server import create_language_server

    server = create_language_server()
    if address is not None:
        server.start_tcp(*address)
    else:
        server.start_io()
    return 0
