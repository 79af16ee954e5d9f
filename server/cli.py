"""`cascode serve`: the language server over stdio (default) or TCP.

Over stdio the editor started the server itself and owns it. A TCP client may be
anyone who can reach the port, and what a client sends is run (the document's code
as context, in the sandbox) and can name files to load (`planFile`, whose plan names
model files and endpoints). So `--tcp` listens on loopback unless told otherwise,
any other address needs a token (`--token-file`), and a TCP client's settings that
load or run things are refused unless `--allow-remote-settings` (settings.py marks
them).

The token is checked here, on the connection, before pygls reads a byte: pygls shares
one protocol object between connections, so a check inside it would let a second
connection use a session the first one opened. One client is served; others are
refused while it is connected; the server stops when it disconnects.

Light to import: pygls is imported only when the server starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import socket
import stat
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cascode.engine.errors import CascodeError

if TYPE_CHECKING:
    from .server import CascodeLanguageServer

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
MIN_TOKEN_CHARS = 16
FIRST_MESSAGE_S = 30.0  # a client that connects says `initialize` within this
MAX_FIRST_MESSAGE = 1 << 20  # bytes read from a client before it is admitted
_MAX_HEADER_LINES = 16
_INVALID_REQUEST = -32600


def add_arguments(parser: argparse.ArgumentParser) -> None:
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument(
        "--stdio", action="store_true", help="talk LSP over stdin/stdout (the default)"
    )
    transport.add_argument(
        "--tcp", metavar="[HOST:]PORT",
        help=f"listen on TCP instead of stdio, on {LOOPBACK} unless HOST is given; "
             "a HOST that is not loopback needs --token-file",
    )
    parser.add_argument(
        "--token-file", metavar="PATH",
        help="with --tcp: serve only a client that sends the token in this file (readable "
             "by you alone) as initializationOptions.token of its initialize request",
    )
    parser.add_argument(
        "--allow-remote-settings", action="store_true",
        help="with --tcp: let the client set planFile and sandbox.* (they load and run "
             "things); without it they keep their local values",
    )
    parser.add_argument("--log-file", metavar="PATH", help="also write the log to this file")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, dest="serve_verbose",
        help="log more (-vv: debug); the log goes to stderr, never to stdout",
    )


@dataclass(frozen=True)
class Listen:
    """Where and how `--tcp` listens."""

    host: str
    port: int
    token: str | None  # None: any client that connects is served
    allow_remote_settings: bool


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT`, or `PORT` alone (on loopback)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host = LOOPBACK
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CascodeError(
            f"--tcp {text!r}: expected [HOST:]PORT, e.g. 2087 or {LOOPBACK}:2087")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether every address `host` stands for is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def read_token(path: str) -> str:
    """The token in `path`, a file of the user's that no one else can read."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise CascodeError(f"--token-file {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CascodeError(f"--token-file {path}: not a file")
        if hasattr(os, "getuid"):
            if st.st_uid != os.getuid():
                raise CascodeError(f"--token-file {path}: belongs to another user")
            if st.st_mode & 0o077:
                raise CascodeError(
                    f"--token-file {path}: others may read it ({stat.filemode(st.st_mode)}); "
                    f"make it yours alone: chmod 600 {path}")
        token = f.read(4096).decode("utf-8", "replace").strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise CascodeError(
            f"--token-file {path}: the token has {len(token)} characters, it needs at least "
            f"{MIN_TOKEN_CHARS}; e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return token


def listen_options(args: argparse.Namespace) -> Listen | None:
    """What `--tcp` and its options ask for (None: stdio), checked before anything starts."""
    if not args.tcp:
        for flag, given in (("--token-file", args.token_file),
                            ("--allow-remote-settings", args.allow_remote_settings)):
            if given:
                raise CascodeError(f"{flag} goes with --tcp (over stdio the editor owns "
                                   "the server)")
        return None
    host, port = parse_address(args.tcp)
    token = read_token(args.token_file) if args.token_file else None
    if token is None and not is_loopback(host):
        raise CascodeError(
            f"--tcp {args.tcp}: {host} is not a loopback address, and a client of the server "
            "can make it load files and run code: give --token-file PATH (clients send the "
            f"token as initializationOptions.token), or listen on {LOOPBACK}")
    return Listen(host, port, token, bool(args.allow_remote_settings))


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
    listen = listen_options(args)
    _configure_logging(getattr(args, "verbose", 0) + args.serve_verbose, args.log_file)
    from .server import create_language_server

    serve(create_language_server(), listen)
    return 0


def serve(server: CascodeLanguageServer, listen: Listen | None) -> None:
    """Serve over stdio (`listen` None) or as `listen` says."""
    if listen is None:
        server.start_io()
        return
    # A TCP client is not the editor that started the server (see settings.py, `remote`).
    server.controller.state.client_trusted = listen.allow_remote_settings
    try:
        asyncio.run(_serve_tcp(server, listen))
    finally:
        server.shutdown()  # type: ignore[no-untyped-call]


# -- TCP --------------------------------------------------------------------------------


def refusal(message: Any, token: str | None) -> str | None:
    """Why a connection whose first message is `message` is not served, or None. With a
    token, the first message must be `initialize` with `initializationOptions.token`."""
    if token is None:
        return None
    if not isinstance(message, dict) or message.get("method") != "initialize":
        return ("cascode: this server requires a token: send initialize first, with the "
                "token as initializationOptions.token")
    params = message.get("params")
    options = params.get("initializationOptions") if isinstance(params, dict) else None
    sent = options.get("token") if isinstance(options, dict) else None
    if not isinstance(sent, str):
        return ("cascode: this server requires a token (cascode serve --token-file): send it "
                "as initializationOptions.token")
    if not hmac.compare_digest(sent.encode(), token.encode()):
        return "cascode: wrong token (initializationOptions.token)"
    return None


def without_token(message: Any) -> Any:
    """`message` with `initializationOptions.token` removed (no one after this needs it)."""
    params = message.get("params") if isinstance(message, dict) else None
    options = params.get("initializationOptions") if isinstance(params, dict) else None
    if isinstance(options, dict):
        options.pop("token", None)
    return message


async def _serve_tcp(server: CascodeLanguageServer, listen: Listen) -> None:
    from pygls.io_ import run_async

    finished = asyncio.Event()
    serving = False

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal serving
        peer = writer.get_extra_info("peername")
        first = await _admit(reader, writer, listen.token, peer)
        if first is None:
            return
        if serving:
            await _refuse(writer, first.get("id"), "cascode: this server already serves a "
                          "client", peer)
            return
        serving = True
        log.info("serving the client at %s", peer)
        server.protocol.set_writer(writer)
        body = json.dumps(without_token(first)).encode()
        try:
            await run_async(
                stop_event=threading.Event(),
                reader=_Replay(b"Content-Length: %d\r\n\r\n" % len(body) + body, reader),
                protocol=server.protocol,
                logger=log,
                error_handler=server.report_server_error,
            )
        finally:
            log.info("the client at %s disconnected", peer)
            finished.set()

    tcp = await asyncio.start_server(connection, listen.host, listen.port)
    addresses = ", ".join(str(sock.getsockname()) for sock in tcp.sockets)
    log.info("listening on %s (%s)", addresses,
             "a token is required" if listen.token else "no token")
    async with tcp:
        await finished.wait()


async def _admit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 token: str | None, peer: Any) -> dict[str, Any] | None:
    """The connection's first message when its client may be served; else None, after
    an error answer to it (when it is a request) and the connection closed."""
    try:
        body = await asyncio.wait_for(_read_message(reader), FIRST_MESSAGE_S)
        message = json.loads(body)
    except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError) as e:
        log.warning("refused the client at %s: no first message (%s)", peer,
                    str(e) or type(e).__name__)
        await _close(writer)
        return None
    reason = refusal(message, token)
    if reason is None and not isinstance(message, dict):
        reason = "cascode: the first message is not a JSON-RPC object"
    if reason is not None:
        await _refuse(writer, message.get("id") if isinstance(message, dict) else None,
                      reason, peer)
        return None
    return message  # type: ignore[no-any-return]


async def _read_message(reader: asyncio.StreamReader) -> bytes:
    length = None
    for _ in range(_MAX_HEADER_LINES):
        line = await reader.readline()
        if not line:
            raise ConnectionError("the client closed the connection")
        if not line.strip():
            break
        name, _, value = line.decode("ascii", "replace").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    else:
        raise ValueError("too many header lines")
    if length is None or not 0 < length <= MAX_FIRST_MESSAGE:
        raise ValueError(f"Content-Length {length} (at most {MAX_FIRST_MESSAGE})")
    return await reader.readexactly(length)


async def _refuse(writer: asyncio.StreamWriter, request_id: Any, reason: str,
                  peer: Any) -> None:
    log.warning("refused the client at %s: %s", peer, reason)
    if request_id is not None:
        # The shape of an InitializeError: the client should not retry as it is.
        error = {"code": _INVALID_REQUEST, "message": reason, "data": {"retry": False}}
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}).encode()
        with contextlib.suppress(ConnectionError):
            writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
    await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


class _Replay:
    """The first message again, then the rest of the connection: what pygls reads."""

    def __init__(self, first: bytes, reader: asyncio.StreamReader) -> None:
        self._buffer = first
        self._reader = reader

    async def readline(self) -> bytes:
        if not self._buffer:
            return await self._reader.readline()
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        line, self._buffer = self._buffer[:end], self._buffer[end:]
        return line

    async def readexactly(self, n: int) -> bytes:
        head, self._buffer = self._buffer[:n], self._buffer[n:]
        if len(head) < n:
            head += await self._reader.readexactly(n - len(head))
        return head
