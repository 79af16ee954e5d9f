"""A member served by a llama.cpp server elsewhere (`backend: llama_server`): a team's
model server on a GPU machine, reached over the network (docs/deployment.md).

What is sent is what the machine's own model server gets (`llama_server.py`: raw
prompts rendered here with the model's chat template, `n_cmpl` sequences seeded
`seed + i`, `cache_prompt`, streamed and cut by the stop rule, the server's own
prompt counts); only prompts travel, the candidates run in this machine's sandbox.
What differs:

- the address is the member's `url` (http or https; a path prefix, as behind a
  reverse proxy, is kept), and every request carries the `model` name, which a
  router server (`--models-dir`) uses to pick the model and a one-model server
  ignores;
- the API key comes from a file only its owner can read (`api_key_file`) or from
  the environment (`api_key_env`), never from the plan or the editor's settings;
- the chat template is the server's own (`/props`) unless the plan names one;
- a server that cannot be reached, or says it is busy or loading (429, 502-504),
  is asked again `max_retries` times with a doubling wait, but only before any token
  came (a sampled request is seeded: sent again, it asks for the same answer); then
  one line names the member, the server and the cause;
- slot files are the server's, on its machine: a stage's shared opening is not
  copied between slots, and llama-server's own prompt cache (`cache_prompt`, the
  slot whose prompt is most alike) does the reuse.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import ssl
import stat
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import BackendError, CascodeError, ModelError
from ..load import ServerLoad, host_of
from ..model_server import ServerConfig
from ..plans import Member
from ..types import CancelTokenLike, Generation, SampleSpec
from .chat import compile_template
from .llama_server import (
    LlamaServerBackend,
    ServerLink,
    Unreachable,
    _check,
    _snippet,
)
from .options import LlamaServerOptions

_WITH_MODEL = ("/props", "/slots", "/metrics")  # GETs a router answers per model


def read_api_key(member: str, settings: LlamaServerOptions) -> str | None:
    """The member's API key, from its file or its environment variable; None when the
    plan names neither. ModelError naming the member and the option otherwise."""
    where = f"member {member}"
    if settings.api_key_file:
        path = Path(settings.api_key_file).expanduser()
        try:
            info = path.stat()
            text = path.read_text()
        except FileNotFoundError:
            raise ModelError(f"{where}: options.api_key_file {path} does not exist") from None
        except OSError as e:
            raise ModelError(f"{where}: options.api_key_file {path}: {e.strerror}") from None
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise ModelError(
                f"{where}: options.api_key_file {path} can be read by other users (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}")
        key = next((line.strip() for line in text.splitlines() if line.strip()), "")
        if not key:
            raise ModelError(f"{where}: options.api_key_file {path} is empty")
        return key
    if settings.api_key_env:
        key = os.environ.get(settings.api_key_env, "").strip()
        if not key:
            raise ModelError(f"{where}: the environment variable {settings.api_key_env} "
                             "(options.api_key_env) is not set")
        return key
    return None


class _Connection(http.client.HTTPConnection):
    """A connection whose connect and reads have their own timeouts."""

    def __init__(self, host: str, port: int, connect_timeout: float,
                 read_timeout: float | None) -> None:
        super().__init__(host, port, timeout=connect_timeout)
        self._read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()
        assert self.sock is not None
        self.sock.settimeout(self._read_timeout)


class _TLSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, connect_timeout: float,
                 read_timeout: float | None, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=connect_timeout, context=context)
        self._read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()
        assert self.sock is not None
        self.sock.settimeout(self._read_timeout)


@dataclass(frozen=True)
class RemoteEndpoint:
    """A llama-server at `url`, as `llama_server.ServerLink`."""

    url: str
    model: str
    key: str | None
    connect_timeout: float
    read_timeout: float | None
    ca_file: str | None = None
    slots: int = 0  # the server's `total_slots` (/props)
    model_file: str = ""  # the model it serves (/props `model_path`, else `model_alias`)
    can_copy_slots: ClassVar[bool] = False
    pid: ClassVar[int] = 0
    _parts: urllib.parse.SplitResult = field(init=False, repr=False)
    _context: ssl.SSLContext | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {self.url!r}")
        context = None
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=self.ca_file)
        object.__setattr__(self, "_parts", parts)
        object.__setattr__(self, "_context", context)

    @property
    def address(self) -> str:
        return self.url.rstrip("/")

    @property
    def slot_dir(self) -> Path:
        return Path()  # never used: can_copy_slots is False

    def connection(self, timeout: float | None) -> http.client.HTTPConnection:
        host = self._parts.hostname or ""
        read = timeout if timeout is not None else self.read_timeout
        # A short request (a load read) does not wait longer to connect than to be answered.
        connect = min(self.connect_timeout, timeout) if timeout else self.connect_timeout
        if self._context is not None:
            return _TLSConnection(host, self._parts.port or 443, connect, read, self._context)
        return _Connection(host, self._parts.port or 80, connect, read)

    def headers(self) -> dict[str, str]:
        out = {"Content-Type": "application/json"}
        if self.key:
            out["Authorization"] = f"Bearer {self.key}"
        return out

    def path(self, path: str) -> str:
        full = self._parts.path.rstrip("/") + path
        if path in _WITH_MODEL:
            full += "?" + urllib.parse.urlencode({"model": self.model})
        return full

    def alive(self) -> bool:
        return True  # not a process of this machine: what a request says is all we know


class RemoteLlamaServerBackend(LlamaServerBackend):
    """A model of a llama.cpp server elsewhere."""

    def __init__(self, name: str, model: str, settings: LlamaServerOptions,
                 key: str | None) -> None:
        # Not LlamaServerBackend.__init__: there is no model file here to read.
        self.name = name
        self.model_path = Path(model)
        self.config = ServerConfig()
        self.prefix_cache = True
        self._root = None
        self._binary = None
        self._checked = True
        self._limit_sequences = False  # the server queues what its slots cannot hold
        # A server on loopback shares this machine's cores: its requests take turns
        # with the other model servers here (model_server.turn); elsewhere, none.
        self._local = host_of(settings.url) == "this machine"
        self._model_field = {"model": model}
        self.concurrency = settings.concurrency
        self.settings = settings
        self._key = key
        self._ep: RemoteEndpoint | None = None
        self._template: Any = None
        try:
            RemoteEndpoint(settings.url, model, key, 1.0, None, settings.ca_file)
        except ValueError as e:
            raise ModelError(f"member {name}: options.url: {e}") from None
        except OSError as e:  # an unreadable ca_file
            raise ModelError(f"member {name}: options.ca_file: {e}") from None

    @classmethod
    def from_member(cls, member: Member) -> RemoteLlamaServerBackend:
        settings = member.settings()
        assert isinstance(settings, LlamaServerOptions)
        return cls(member.name, member.model, settings, read_api_key(member.name, settings))

    def _turn_key(self) -> str:
        text = f"{self.settings.url.rstrip('/')} {self._model_field['model']}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def where(self) -> str:
        return self.settings.url

    # ------------------------------------------------------------------ the server

    def endpoint(self, retry: bool = True, timeout: float | None = None) -> RemoteEndpoint:
        """The server, with its slots and chat template read once (`/props`); `retry`:
        as a request would (`max_retries`), else one try of at most `timeout` seconds."""
        if self._ep is not None:
            return self._ep
        s = self.settings
        try:
            probe = RemoteEndpoint(s.url, self._model_field["model"], self._key,
                                   min(s.connect_timeout_s, timeout or s.connect_timeout_s),
                                   s.timeout_s, s.ca_file)
        except OSError as e:
            raise ModelError(f"{self.name}: options.ca_file: {e}") from None
        props = self._retrying(lambda: self._call(probe, "GET", "/props",
                                                  timeout=timeout or s.timeout_s),
                               tries=None if retry else 1)
        if not isinstance(props, dict):
            raise BackendError(f"{self.name}: the model server at {probe.address} answered "
                               f"/props with something that is not llama-server's: "
                               f"{_snippet(str(props))}")
        if self._template is None:
            try:
                self._template = compile_template(self._template_source(props))
            except CascodeError:
                raise
            except Exception as e:  # noqa: BLE001 - jinja's errors, a bad file: one line
                raise BackendError(f"{self.name}: the chat template of the model server at "
                                   f"{probe.address} does not compile: {e}") from None
        slots = props.get("total_slots")
        served = props.get("model_path") or props.get("model_alias") or ""
        self._ep = RemoteEndpoint(s.url, probe.model, self._key, s.connect_timeout_s,
                                  s.timeout_s, s.ca_file, slots if isinstance(slots, int) else 0,
                                  str(served))
        return self._ep

    def _template_source(self, props: dict[str, Any]) -> str:
        spec = self.settings.chat_template
        if spec == "server":
            text = props.get("chat_template")
            if not isinstance(text, str) or not text:
                raise BackendError(f"{self.name}: the model server at {self.where} reports no "
                                   "chat template; name one with options.chat_template")
            return text
        from .openai import _template_source

        return _template_source(spec)

    def server_load(self, timeout: float = 1.0) -> ServerLoad | None:
        try:
            ep = self._ep or self.endpoint(retry=False, timeout=timeout)
        except BackendError:
            return None
        return self._read_load(ep, timeout)

    # ------------------------------------------------------------------ errors

    def _lost(self, ep: ServerLink, error: BaseException | str) -> str:
        if isinstance(error, TimeoutError):
            return (f"{self.name}: the model server at {ep.address} sent nothing for "
                    f"{self.settings.timeout_s:g} s (options.timeout_s)")
        text = str(error)
        if isinstance(error, ConnectionRefusedError):
            text = "connection refused (is it running?)"
        elif isinstance(error, ssl.SSLError):
            text = f"TLS failed: {error} (options.ca_file names a CA to trust)"
        return f"{self.name}: cannot reach the model server at {ep.address}: {text}"

    def _unreachable(self, ep: ServerLink, error: BaseException | str) -> BackendError:
        return Unreachable(self._lost(ep, error))

    def _unconnected(self, ep: ServerLink, error: BaseException) -> BackendError:
        if isinstance(error, TimeoutError):
            return Unreachable(
                f"{self.name}: cannot reach the model server at {ep.address}: no connection "
                f"within {self.settings.connect_timeout_s:g} s (options.connect_timeout_s)")
        return Unreachable(self._lost(ep, error))

    def _refused(self, ep: ServerLink, path: str, status: int, data: bytes) -> BackendError:
        if status in (401, 403):
            s = self.settings
            source = (f"the key in {s.api_key_file} (options.api_key_file)" if s.api_key_file
                      else f"the key in ${s.api_key_env} (options.api_key_env)"
                      if s.api_key_env else
                      "no key (set options.api_key_file or options.api_key_env)")
            return BackendError(f"{self.name}: the model server at {ep.address} refused "
                                f"{source}: HTTP {status}")
        message = (f"{self.name}: the model server at {ep.address} answered {path} with HTTP "
                   f"{status}: {_snippet(data)}")
        if status == 404 and path != "/completion":
            message += " (is it llama.cpp's server?)"
        return (Unreachable if status in (429, 502, 503, 504) else BackendError)(message)

    # ------------------------------------------------------------------ retries

    def _retrying(self, attempt: Any, cancel: CancelTokenLike | None = None,
                  tries: int | None = None) -> Any:
        tries = tries or self.settings.max_retries + 1
        for i in range(tries):
            try:
                return attempt()
            except Unreachable as e:
                if i + 1 >= tries:
                    suffix = f" (tried {tries} times)" if tries > 1 else ""
                    raise BackendError(f"{e}{suffix}") from None
                deadline = time.monotonic() + min(self.settings.backoff_s * 2 ** i, 30.0)
                while time.monotonic() < deadline:
                    _check(cancel)
                    time.sleep(0.05)
        raise AssertionError("unreachable")

    def sample(
        self, specs: Sequence[SampleSpec], *, cancel: CancelTokenLike | None = None
    ) -> list[list[Generation]]:
        self.endpoint()
        out: list[list[Generation]] = self._retrying(
            lambda: LlamaServerBackend.sample(self, specs, cancel=cancel), cancel)
        return out

    def prefill(self, spec: SampleSpec, *, cancel: CancelTokenLike | None = None) -> int:
        self.endpoint()
        return LlamaServerBackend.prefill(self, spec, cancel=cancel)

    def tokenize(self, text: str) -> list[int]:
        data = self._call(self.endpoint(), "POST", "/tokenize",
                          {**self._model_field, "content": text, "add_special": True,
                           "parse_special": True})
        return [int(t) for t in data["tokens"]]

    def render(self, spec: SampleSpec) -> str:
        if self._template is None:
            self.endpoint()
        return super().render(spec)
