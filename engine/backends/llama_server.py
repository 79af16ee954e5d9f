"""The llama.cpp backend through the machine's model server (a `llama_cpp` member
with `model_server: true`).

The model runs in llama.cpp's own server (`engine/model_server.py`: one process per
user and model file, shared by every client) instead of in this process; what is
sent and what comes back is what the in-process backend (`llama_cpp.py`) computes:

1. Each spec's prompt is rendered here with the model's own chat template
   (`chat.render_prompt`, the GGUF's `tokenizer.chat_template`: the same text as
   in-process) and sent as a raw prompt to `/completion`. A spec's n sequences are
   one request with `n_cmpl = n`: the server evaluates the prompt once and copies
   it to n slots; its i-th completion is seeded `seed + i`, as in-process. The
   sampling chain is named (`samplers`): temperature, then top-p, then the seeded
   distribution; temperature 0 is greedy. No top-k, min-p or penalties.
2. `cache_prompt`: a slot keeps its prompt, and a request evaluates only the tokens
   after the longest prefix the server holds (its slots, and its prompt cache in
   memory). Two prompts that open alike (a stage's solutions and tests) are not
   shared by llama-server when they run at once, so the first is evaluated alone
   (`n_predict: 0`) into a slot, that slot is copied to a second one through a slot
   file (`/slots?action=save|restore`: a copy of the cells, no computation), and
   both then run together, the second evaluating only its own tail.
3. The requests stream. Each sequence's text is cut by its stop rule as it grows
   (`chat.stop_at`, checked where a line can end, as in-process); the server also
   stops at the rule's stop strings, which are put back before the rule cuts.
   When every sequence of a request is done its connection is closed, which stops
   the server's work on it; the cancel token is checked every 50 ms and closes
   them all.
4. `prompt_tokens_evaluated` is the server's own count (`timings.prompt_n`) of the
   prompt tokens it evaluated for each distinct prompt, the prefill included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import model_server
from ..errors import BackendError, Cancelled
from ..load import ServerLoad, host_of, llama_server_load, parse_metrics
from ..model_server import ServerConfig
from ..plans import Member
from ..types import CancelTokenLike, Generation, SampleSpec
from .chat import compile_template, render_prompt, shared_prefix, stop_at

log = logging.getLogger(__name__)

_RETRY_STATUS = (429, 502, 503, 504)  # busy, loading, or behind a proxy that lost it
MIN_SHARED_TOKENS = 32  # a shorter common opening is not worth a slot copy
# llama-server notices a closed connection while it evaluates a prompt only when the
# request has something to send (its 1-second poll of the socket is skipped as long
# as any other request's results keep arriving): a progress event after each batch
# lets a cancel stop the evaluation at the next batch whatever else runs.
_PROGRESS = {"timings_per_token": True, "return_progress": True}
_POLL_S = 0.05
_END = object()


@dataclass
class _Seq:
    """One sequence of a request, as it streams in."""

    spec_index: int
    prefix: str
    stop: Any
    max_tokens: int
    text: str = ""
    token_ends: list[int] = field(default_factory=list)
    n_generated: int = 0
    done: bool = False
    finish: str = ""


@dataclass
class _Request:
    """One streaming /completion: the n sequences of one spec."""

    spec_index: int
    body: dict[str, Any]
    seqs: list[_Seq]
    # A duplicate of the connection's socket, to shut it down from another thread
    # (http.client drops its own reference when the response says Connection: close).
    sock: socket.socket | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False
    first_token_at: float = 0.0
    prompt_n: int = 0  # prompt tokens the server evaluated (its first completion's timings)
    id_slot: int = -1  # the slot of its first completion
    prompt_tokens: int = 0
    error: str = ""
    unreachable: bool = False  # the server could not be reached, or said to come back

    @property
    def all_done(self) -> bool:
        return all(s.done for s in self.seqs)


class ServerLink(Protocol):
    """A llama-server as a backend reaches it: the machine's own (`model_server.Endpoint`)
    or one elsewhere (`remote.RemoteEndpoint`)."""

    @property
    def address(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def read_timeout(self) -> float | None: ...
    @property
    def can_copy_slots(self) -> bool: ...
    @property
    def slots(self) -> int: ...
    @property
    def slot_dir(self) -> Path: ...
    def connection(self, timeout: float | None) -> http.client.HTTPConnection: ...
    def headers(self) -> dict[str, str]: ...
    def path(self, path: str) -> str: ...
    def alive(self) -> bool: ...


class Unreachable(BackendError):
    """The server could not be reached, or answered that it is busy or loading: a
    request that may be sent again."""


class LlamaServerBackend:
    """One GGUF model served by the machine's model server."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        name: str = "",
        config: ServerConfig | None = None,
        prefix_cache: bool = True,
        root: Path | None = None,
        binary: Path | None = None,
    ) -> None:
        from .openai import gguf_chat_template

        self.name = name or Path(model_path).stem
        self.model_path = Path(model_path)
        self.config = config or ServerConfig()
        self.prefix_cache = prefix_cache
        self._root = root
        self._binary = binary
        self._template = compile_template(gguf_chat_template(self.model_path))
        self._checked = False
        self._model_field: dict[str, str] = {}  # a router server's `model` (remote.py)
        self._limit_sequences = True  # more sequences than slots is an error here
        self._local = True  # a server of this machine: requests take turns (model_server.turn)
        self.concurrency = 1  # sequences it runs at once without slowing each (engine/load.py)

    @classmethod
    def from_member(cls, member: Member) -> LlamaServerBackend:
        from ..models import resolve_model_file
        from .options import LlamaCppOptions

        o = member.settings()
        assert isinstance(o, LlamaCppOptions)
        speculative = o.speculative or ""
        if speculative and speculative != "ngram":
            speculative = str(resolve_model_file(speculative))
        config = ServerConfig(n_ctx=o.n_ctx, slots=o.n_seq_max, threads=o.n_threads,
                              idle_s=o.keep_alive_s, port=o.port, speculative=speculative)
        backend = cls(resolve_model_file(member.model), name=member.name, config=config,
                      prefix_cache=o.prefix_cache)
        backend.concurrency = o.concurrency
        return backend

    # ------------------------------------------------------------------ the server

    def endpoint(self) -> ServerLink:
        """The running server of this model, started (or started again) when needed."""
        if not self._checked:
            from .llama_server_check import ensure_server_runs

            ensure_server_runs(self._binary, self.model_path)
            self._checked = True
        return model_server.ensure_server(self.model_path, self.config, binary=self._binary,
                                          root=self._root)

    def _call(self, ep: ServerLink, method: str, path: str, body: Any = None,
              timeout: float = 60.0) -> Any:
        conn = ep.connection(timeout)
        try:
            conn.request(method, ep.path(path),
                         body=None if body is None else json.dumps(body).encode(),
                         headers=ep.headers())
            response = conn.getresponse()
            data = response.read()
        except OSError as e:
            raise (self._unconnected(ep, e) if conn.sock is None
                   else self._unreachable(ep, e)) from None
        finally:
            conn.close()
        if response.status != 200:
            raise self._refused(ep, path, response.status, data)
        try:
            return json.loads(data)
        except ValueError:
            raise BackendError(f"{self.name}: the model server at {ep.address} answered {path} "
                               f"with something that is not JSON: {_snippet(data)}") from None

    def _running(self) -> ServerLink | None:
        """The server if it runs now; None rather than start one."""
        ep = model_server.read_state(self.model_path, self._root)
        return ep if ep is not None and ep.alive() else None

    def server_load(self, timeout: float = 1.0) -> ServerLoad | None:
        """The server's load now (engine/load.py): `/slots` and `/metrics`; None when it
        does not run or does not answer within `timeout`."""
        ep = self._running()
        if ep is None:
            return None
        return self._read_load(ep, timeout)

    def _read_load(self, ep: ServerLink, timeout: float) -> ServerLoad | None:
        """`/slots` and `/metrics`, each a plain GET (a load unread is a load unknown:
        never an error, never a wait for a server that died)."""
        slots: Any = None
        metrics: dict[str, float] = {}
        try:
            status, data = self._fetch(ep, "/metrics", timeout)
            if status == 200:
                metrics = parse_metrics(data.decode("utf-8", "replace"))
            status, data = self._fetch(ep, "/slots", timeout)
            if status == 200:
                slots = json.loads(data)
        except (OSError, ValueError):
            pass
        if not isinstance(slots, list):
            slots = None
        if slots is None and not metrics:
            return None
        return dataclasses.replace(llama_server_load(slots, metrics), server=ep.address,
                                   host=host_of(ep.address))

    def _fetch(self, ep: ServerLink, path: str, timeout: float) -> tuple[int, bytes]:
        conn = ep.connection(timeout)
        try:
            conn.request("GET", ep.path(path), headers=ep.headers())
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _unconnected(self, ep: ServerLink, error: BaseException) -> BackendError:
        """A connection that could not be made."""
        return self._unreachable(ep, error)

    def _unreachable(self, ep: ServerLink, error: BaseException | str) -> BackendError:
        """A request that could not be sent or answered: what happened to the server."""
        return BackendError(self._lost(ep, error))

    def _refused(self, ep: ServerLink, path: str, status: int, data: bytes) -> BackendError:
        return BackendError(f"{self.name}: the model server answered {path} with HTTP "
                            f"{status}: {_snippet(data)}")

    def _lost(self, ep: ServerLink, error: BaseException | str) -> str:
        # A killed server's connections close while it is still exiting: a moment
        # for the process to be gone before saying what happened.
        deadline = time.monotonic() + 2.0
        while ep.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not ep.alive():
            return (f"{self.name}: the model server (pid {ep.pid}) died during the request; "
                    "the next request starts a new one")
        return f"{self.name}: lost the model server at {ep.address}: {error}"

    # ------------------------------------------------------------------ text

    def render(self, spec: SampleSpec) -> str:
        """The prompt text: the model's chat template, then the assistant prefix."""
        return render_prompt(self._template, spec)

    def tokenize(self, text: str) -> list[int]:
        """The model's tokens for `text`, as /completion tokenizes a prompt."""
        data = self._call(self.endpoint(), "POST", "/tokenize",
                          {"content": text, "add_special": True, "parse_special": True})
        return [int(t) for t in data["tokens"]]

    # ------------------------------------------------------------------ sampling

    def sample(
        self, specs: Sequence[SampleSpec], *, cancel: CancelTokenLike | None = None
    ) -> list[list[Generation]]:
        _check(cancel)
        if not specs:
            return []
        ep = self.endpoint()
        slots = ep.slots or self.config.slots
        if self._limit_sequences and sum(s.n for s in specs) > slots:
            raise BackendError(
                f"{self.name}: {sum(s.n for s in specs)} sequences in one batch, more than the "
                f"model server's {slots} slots (options.n_seq_max of the client that started it)")
        prompts = [self.render(s) for s in specs]
        with self._turn(cancel):
            return self._sample(ep, specs, prompts, cancel)

    def _turn(self, cancel: CancelTokenLike | None) -> contextlib.AbstractContextManager[Any]:
        """This machine's cores, while no other model's server computes
        (`model_server.turn`); a server elsewhere needs no turn here."""
        if not self._local:
            return contextlib.nullcontext()
        return model_server.turn(self._turn_key(), self._root, cancel)

    def _turn_key(self) -> str:
        return model_server.model_key(self.model_path)

    def _sample(self, ep: ServerLink, specs: Sequence[SampleSpec], prompts: list[str],
                cancel: CancelTokenLike | None) -> list[list[Generation]]:
        t0 = time.perf_counter()
        first_of: dict[str, int] = {}
        for i, p in enumerate(prompts):
            first_of.setdefault(p, i)
        evaluated = {p: 0 for p in first_of}
        pinned: dict[str, int] = {}
        if self.prefix_cache and ep.can_copy_slots and len(first_of) > 1:
            pinned = self._share_prefix(ep, list(first_of), evaluated,
                                        sum(s.n for s in specs), cancel)
        requests = [self._request(i, s, prompts[i], pinned.get(prompts[i], -1))
                    for i, s in enumerate(specs)]
        self._run(ep, requests, cancel, stagger=bool(pinned) and any(s.n > 1 for s in specs))
        t_end = time.perf_counter()
        for r in requests:
            evaluated[prompts[r.spec_index]] += r.prompt_n
        return self._generations(specs, prompts, first_of, requests, evaluated,
                                 t0, t_end - t0)

    def prefill(self, spec: SampleSpec, *, cancel: CancelTokenLike | None = None) -> int:
        """Evaluate the spec's prompt into a slot of the model server (`n_predict: 0`),
        ahead of its request; the server puts it in the slot holding the longest part of
        it, so a window's prompt does not evict another window's. The prompt tokens the
        server evaluated (its own count); 0 when the prompt cache is off."""
        _check(cancel)
        if not self.prefix_cache:
            return 0
        prefill = _Request(-1, {**self._model_field, "prompt": self.render(spec),
                                "n_predict": 0, "stream": True, "cache_prompt": True,
                                **_PROGRESS}, [])
        ep = self.endpoint()
        with self._turn(cancel):
            self._run(ep, [prefill], cancel)
        return prefill.prompt_n

    def _request(self, i: int, spec: SampleSpec, prompt: str, slot: int) -> _Request:
        body: dict[str, Any] = {
            **self._model_field,
            "prompt": prompt,
            "n_predict": spec.max_tokens,
            "n_cmpl": spec.n,
            "stream": True,
            "cache_prompt": self.prefix_cache,
            "return_tokens": True,
            **_PROGRESS,  # and the counts arrive even when a stream is closed early
            "seed": spec.seed & 0xFFFFFFFF,
            "temperature": 0.0 if spec.greedy else spec.temperature,
            "top_p": 1.0 if spec.greedy else spec.top_p,
            "samplers": ["temperature"] if spec.greedy else ["temperature", "top_p"],
            "min_keep": 1,
            "stop": list(spec.stop.stop_strings),
            "id_slot": slot,
        }
        seqs = [_Seq(i, spec.prefix, spec.stop, spec.max_tokens) for _ in range(spec.n)]
        return _Request(i, body, seqs)

    def _share_prefix(self, ep: ServerLink, prompts: list[str], evaluated: dict[str, int],
                      n_sequences: int, cancel: CancelTokenLike | None) -> dict[str, int]:
        """Evaluate the first prompt into a slot and copy it to one slot per other prompt
        that shares its opening; {prompt: slot} for the requests to be pinned to."""
        first = prompts[0]
        tokens = [self.tokenize(p) for p in prompts]
        sharing = [p for p, t in zip(prompts[1:], tokens[1:], strict=True)
                   if shared_prefix(t, tokens[0]) >= MIN_SHARED_TOKENS]
        if not sharing:
            return {}
        # The server puts the prefill in the slot that holds the longest part of it.
        prefill = _Request(-1, {"prompt": first, "n_predict": 0, "stream": True,
                                "cache_prompt": True, **_PROGRESS}, [])
        self._run(ep, [prefill], cancel)
        evaluated[first] += prefill.prompt_n
        home = prefill.id_slot
        # The copies go to the highest-numbered idle slots: the server gives a
        # request's extra completions the lowest free ones.
        idle = sorted((int(s["id"]) for s in self._call(ep, "GET", "/slots")
                       if not s.get("is_processing") and int(s["id"]) != home), reverse=True)
        if home < 0 or len(idle) < len(sharing) + n_sequences:
            return {}
        copies = idle[: len(sharing)]
        filename = f"prefix-{uuid.uuid4().hex}.bin"
        try:
            self._call(ep, "POST", f"/slots/{home}?action=save", {"filename": filename})
            for slot in copies:
                _check(cancel)
                self._call(ep, "POST", f"/slots/{slot}?action=restore", {"filename": filename})
        finally:
            (ep.slot_dir / filename).unlink(missing_ok=True)
        # Each tail alone, before any sequence decodes: a decode step batched with
        # another request's prompt tokens runs other kernels than a step of a few
        # tokens, and can flip a near-tie of a greedy answer (measured on HumanEval/0).
        for prompt, slot in zip(sharing, copies, strict=True):
            tail = _Request(-1, {"prompt": prompt, "n_predict": 0, "stream": True,
                                 "cache_prompt": True, **_PROGRESS,
                                 "id_slot": slot}, [])
            self._run(ep, [tail], cancel)
            evaluated[prompt] += tail.prompt_n
        return {first: home, **dict(zip(sharing, copies, strict=True))}

    # ------------------------------------------------------------------ streaming

    def _run(self, ep: ServerLink, requests: list[_Request], cancel: CancelTokenLike | None,
             stagger: bool = False) -> None:
        """Send the requests and follow their streams until every sequence is done;
        closes every connection before returning. `stagger`: the others only once the
        first has started (its first token is in), so that the server cannot give the
        first one's slot to another request's extra completions."""
        events: queue.Queue[tuple[_Request, Any]] = queue.Queue()
        threads: list[threading.Thread] = []

        def start(batch: list[_Request]) -> None:
            for r in batch:
                t = threading.Thread(target=self._read, args=(ep, r, events), daemon=True,
                                     name=f"cascode-{self.name}-stream")
                t.start()
                threads.append(t)

        waiting = requests[1:] if stagger else []
        start(requests[: len(requests) - len(waiting)])
        open_ = len(requests)
        try:
            while open_:
                if waiting and (requests[0].first_token_at or requests[0].closed):
                    start(waiting)
                    waiting = []
                try:
                    r, event = events.get(timeout=_POLL_S)
                except queue.Empty:
                    _check(cancel)
                    continue
                if event is _END:
                    open_ -= 1
                    if r is requests[0] and waiting:
                        start(waiting)
                        waiting = []
                    if r.error and not r.closed:
                        # Sent again only when nothing of the batch came yet.
                        again = r.unreachable and not any(q.first_token_at for q in requests)
                        raise (Unreachable if again else BackendError)(r.error)
                    if not r.closed and not r.all_done and r.seqs:
                        raise BackendError(self._lost(ep, "the stream ended early"))
                    continue
                self._on_event(r, event)
                if r.seqs and r.all_done:
                    _close(r)  # stops the server's work on sequences cut here
                _check(cancel)
        finally:
            for r in requests:
                _close(r)
            for t in threads:
                t.join(5)

    def _read(self, ep: ServerLink, r: _Request, events: queue.Queue[tuple[_Request, Any]]
              ) -> None:
        conn = ep.connection(ep.read_timeout)
        try:
            try:
                conn.connect()
            except OSError as e:
                r.error, r.unreachable = self._unconnected(ep, e).args[0], True
                return
            with r.lock:
                if r.closed:
                    return
                # (a raw duplicate of the descriptor: an SSL socket cannot be dup()ed, and
                # shutting the raw one down wakes the reader either way)
                r.sock = (socket.socket(fileno=os.dup(conn.sock.fileno()))
                          if conn.sock is not None else None)
            conn.request("POST", ep.path("/completion"), body=json.dumps(r.body).encode(),
                         headers=ep.headers())
            response = conn.getresponse()
            if response.status != 200:
                r.error = self._refused(ep, "/completion", response.status,
                                        response.read()).args[0]
                r.unreachable = response.status in _RETRY_STATUS
                return
            while not r.closed:
                line = response.readline()
                if not line:
                    break
                if line.startswith(b"data: "):
                    try:
                        event = json.loads(line[6:])
                    except ValueError:
                        r.error = (f"{self.name}: the model server at {ep.address} sent "
                                   f"something that is not llama-server's stream: "
                                   f"{_snippet(line)}")
                        break
                    events.put((r, event))
        except Exception as e:  # noqa: BLE001 - http.client fails oddly on a socket closed under it
            if not r.closed:
                r.error = self._lost(ep, e)
        finally:
            with r.lock:
                if r.sock is not None:
                    r.sock.close()
                    r.sock = None
            conn.close()
            events.put((r, _END))

    def _on_event(self, r: _Request, event: dict[str, Any]) -> None:
        if "error" in event:
            r.error = f"{self.name}: the model server: {_snippet(event['error'])}"
            _close(r)
            return
        if "prompt_progress" in event:  # (its `tokens` is a placeholder)
            return
        if not r.first_token_at:
            r.first_token_at = time.perf_counter()
        index = int(event.get("index") or 0)
        timings = event.get("timings")
        if index == 0 and isinstance(timings, dict):
            # Every completion of a request reports the prompt its first one evaluated.
            r.prompt_n = int(timings.get("prompt_n") or 0)
        r.prompt_tokens = max(r.prompt_tokens, int(event.get("tokens_evaluated") or 0))
        if index == 0 and int(event.get("id_slot", -1)) >= 0:
            r.id_slot = int(event["id_slot"])
        if not r.seqs:  # the prefill: only its counts matter
            return
        seq = r.seqs[index % len(r.seqs)]
        if event.get("stop"):
            if not seq.done:
                word = event.get("stopping_word") or ""
                if word:
                    self._append(seq, word, 0)
                if not seq.done:
                    # (an end-of-generation token came as a piece of its own, counted
                    # as in-process)
                    seq.done = True
                    seq.finish = "length" if event.get("stop_type") == "limit" else "stop"
            return
        if not seq.done:
            self._append(seq, str(event.get("content") or ""), len(event.get("tokens") or ()))

    def _append(self, seq: _Seq, piece: str, n_tokens: int) -> None:
        """A streamed piece of `n_tokens` tokens; the stop rule cuts where it may."""
        line_start = not seq.text or seq.text.endswith("\n")
        before = len(seq.text)
        seq.text += piece
        seq.token_ends.extend([before] * max(n_tokens - 1, 0))
        if n_tokens:
            seq.token_ends.append(len(seq.text))
        seq.n_generated += n_tokens
        if "\n" in piece or "`" in piece or (line_start and piece):
            end = stop_at(seq.prefix, seq.stop, seq.text)
            if end is not None:
                seq.text = seq.text[:end]
                seq.token_ends = [min(e, end) for e in seq.token_ends]
                seq.done, seq.finish = True, "stop"
                return
        if seq.n_generated >= seq.max_tokens:
            seq.done, seq.finish = True, "length"

    # ------------------------------------------------------------------ results

    def _generations(
        self,
        specs: Sequence[SampleSpec],
        prompts: list[str],
        first_of: dict[str, int],
        requests: list[_Request],
        evaluated: dict[str, int],
        t0: float,
        wall: float,
    ) -> list[list[Generation]]:
        # Wall time to the last request's first token is prompt work (the prefill and
        # slot copies included); the rest is decoding, shared by generated tokens.
        first_tokens = [r.first_token_at for r in requests if r.first_token_at]
        prompt_wall = min((max(first_tokens) - t0) if first_tokens else wall, wall)
        decode_wall = wall - prompt_wall
        total_eval = sum(evaluated.values()) or 1
        total_tokens = sum(s.n_generated for r in requests for s in r.seqs) or 1
        sharers = {p: sum(specs[i].n for i, q in enumerate(prompts) if q == p) for p in first_of}
        out: list[list[Generation]] = [[] for _ in specs]
        counted: set[str] = set()
        for r in requests:
            prompt = prompts[r.spec_index]
            share = evaluated[prompt] / total_eval if total_eval else 1 / len(first_of)
            for seq in r.seqs:
                n_eval = None if prompt in counted else evaluated[prompt]
                counted.add(prompt)
                out[r.spec_index].append(Generation(
                    text=seq.text,
                    prompt_tokens=r.prompt_tokens,
                    generated_tokens=seq.n_generated,
                    prompt_seconds=prompt_wall * share / sharers[prompt],
                    decode_seconds=decode_wall * seq.n_generated / total_tokens,
                    token_ends=tuple(seq.token_ends),
                    finish_reason="length" if seq.finish == "length" else "stop",
                    prompt_tokens_evaluated=0 if n_eval is None else n_eval,
                ))
        return out

    def close(self) -> None:
        """Nothing to free here: the server is shared, and stops itself when idle."""


def _close(r: _Request) -> None:
    """Close a request's connection: llama-server stops generating for it (and the
    request's reader wakes up)."""
    with r.lock:
        if r.closed:
            return
        r.closed = True
        if r.sock is not None:
            try:
                r.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _check(cancel: CancelTokenLike | None) -> None:
    if cancel is not None and cancel.cancelled:
        cancel.raise_if_cancelled()
        raise Cancelled("cancelled")


def _snippet(data: Any) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
    text = " ".join(text.split())
    return (text[:200] + "...") if len(text) > 200 else (text or "(empty body)")
