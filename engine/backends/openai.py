"""A family member behind an OpenAI-compatible HTTP endpoint (vLLM, llama.cpp's
server, llama-cpp-python's server, TGI, hosted APIs), spoken to with httpx.

Options (the member's `options` mapping, typed in `options.OpenAIOptions` and checked
when the plan loads; `model` is the model name the server knows):

- `base_url` (required): e.g. `http://127.0.0.1:8000/v1`.
- `api_key_env`: the name of the environment variable that holds the API key
  (sent as `Authorization: Bearer ...`). The key itself never goes in a plan.
- `endpoint`: `"completions"` (default) renders the chat template here and
  sends the prompt with the assistant prefix already in place, so the model
  continues it exactly as a local member does; `"chat"` sends the messages to
  `/chat/completions`, where the prefix cannot be prefilled: the reply's code
  block is re-aligned to the prefix (see `realign`).
- `chat_template`: for `completions`: `"chatml"` (default), a `.jinja` file, or a
  GGUF file / `embedded:NAME` whose own template is used (`tokenizer.chat_template`).
- `system_prompt`: a system message put before the request's messages.
- `n`: `"auto"` (default: ask for n choices, and request any the server did not
  return one by one), `true`, or `false` (always k concurrent requests).
- `timeout_s` (default 120): the longest one request may take, answer included.
- `max_retries` (default 3) and `backoff_s` (default 0.5): retries on 429, 5xx
  and connection failures, waiting backoff_s * 2^attempt (or the server's
  Retry-After), up to 30 s.
- `max_concurrency` (default 16): requests in flight at once.

Token counts come from the response's `usage` (a request of n choices splits its
completion tokens among them in proportion to their length); without `usage`,
by the estimate of one token per 4 characters. The request's wall time is the
stage's cost: each sequence gets a share in proportion to its tokens, all of it
as decode time unless the server reports llama.cpp `timings`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BackendError, Cancelled, ModelError
from ..load import ServerLoad, llama_server_load, parse_metrics, vllm_load
from ..plans import Member
from ..types import CancelTokenLike, Generation, Message, SampleSpec
from .chat import apply_stop, compile_template, messages_of, render_prompt
from .options import OpenAIOptions

CHARS_PER_TOKEN = 4  # the documented estimate when a server reports no usage
_RETRY_STATUS = (429, 500, 502, 503, 504)
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class _HTTPStatus(BackendError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Choice:
    text: str
    finish: str
    tokens: int
    prompt_tokens: int
    prompt_share: float  # fraction of the request's time spent on the prompt


@dataclass
class _Tally:
    n_supported: bool | None = None
    calls: list[str] = field(default_factory=list)  # paths requested (tests read it)


class OpenAIBackend:
    """Samples through `/v1/completions` or `/v1/chat/completions`."""

    def __init__(
        self, name: str, model: str, settings: OpenAIOptions, api_key: str | None
    ) -> None:
        self.name = name
        self.model = model
        self.settings = settings
        self.where = settings.base_url
        self._api_key = api_key
        self._template: Any = None
        self.concurrency = settings.concurrency
        self._tally = _Tally(
            n_supported=None if settings.n == "auto" else bool(settings.n)
        )

    @classmethod
    def from_member(cls, member: Member) -> OpenAIBackend:
        settings = member.settings()
        assert isinstance(settings, OpenAIOptions)
        where = f"member {member.name}"
        api_key = None
        if settings.api_key_env:
            api_key = os.environ.get(settings.api_key_env)
            if not api_key:
                raise ModelError(
                    f"{where}: the environment variable {settings.api_key_env} "
                    "(options.api_key_env) is not set"
                )
        return cls(member.name, member.model, settings, api_key)

    def close(self) -> None:
        pass

    def server_load(self, timeout: float = 1.0) -> ServerLoad | None:
        """The server's load from its `/metrics` (vLLM's, or llama-server's run with
        `--metrics`), beside the `/v1` of `base_url`; None when it reports none."""
        import httpx

        root = re.sub(r"/v1/?$", "", self.settings.base_url.rstrip("/"))
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            response = httpx.get(root + "/metrics", timeout=timeout, headers=headers)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        metrics = parse_metrics(response.text)
        if "vllm:num_requests_running" in metrics:
            load = vllm_load(metrics)
        elif "llamacpp:requests_processing" in metrics:
            load = llama_server_load(None, metrics)
        else:
            return None
        from ..load import host_of

        return dataclasses.replace(load, server=root, host=host_of(root))

    # ------------------------------------------------------------------ prompt

    def render(self, spec: SampleSpec) -> str:
        """The prompt for /completions: the chat template's generation prompt + prefix."""
        if self._template is None:
            self._template = compile_template(_template_source(self.settings.chat_template))
        return render_prompt(self._template, spec, self.settings.system_prompt)

    def _messages(self, spec: SampleSpec) -> list[dict[str, str]]:
        if not spec.messages:  # a plain completion, asked for in words
            spec = dataclasses.replace(
                spec, messages=(Message("user", _CONTINUE.format(code=spec.prefix)),))
        return messages_of(spec, self.settings.system_prompt)

    # ------------------------------------------------------------------ sampling

    def sample(
        self, specs: Sequence[SampleSpec], *, cancel: CancelTokenLike | None = None
    ) -> list[list[Generation]]:
        coro = self.asample(specs, cancel=cancel)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        # Called from async code: run on a thread of its own, never on the caller's loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coro).result()

    async def asample(
        self, specs: Sequence[SampleSpec], *, cancel: CancelTokenLike | None = None
    ) -> list[list[Generation]]:
        import httpx

        if cancel is not None and cancel.cancelled:
            raise Cancelled("cancelled")
        prompts = [self.render(s) if self.settings.endpoint == "completions" else ""
                   for s in specs]
        limits = httpx.Limits(max_connections=self.settings.max_concurrency)
        semaphore = asyncio.Semaphore(self.settings.max_concurrency)
        start = time.perf_counter()
        async with httpx.AsyncClient(timeout=self.settings.timeout_s, limits=limits) as client:
            tasks = [
                asyncio.ensure_future(self._spec(client, semaphore, spec, prompt))
                for spec, prompt in zip(specs, prompts, strict=True)
            ]
            await _wait(tasks, cancel)
            results = [t.result() for t in tasks]
        wall = time.perf_counter() - start
        return _generations(specs, results, wall)

    async def _spec(
        self, client: Any, semaphore: asyncio.Semaphore, spec: SampleSpec, prompt: str
    ) -> list[_Choice]:
        choices: list[_Choice] = []
        if spec.n > 1 and self._tally.n_supported is not False:
            try:
                choices = await self._request(client, semaphore, spec, prompt, spec.n, spec.seed)
            except _HTTPStatus as e:
                if self._tally.n_supported or e.status not in (400, 422):
                    raise
                choices = []  # the server refuses n: one request per sequence
            if len(choices) < spec.n and self._tally.n_supported is None:
                self._tally.n_supported = False
            elif len(choices) >= spec.n:
                self._tally.n_supported = True
        missing = range(len(choices), spec.n)
        singles = await asyncio.gather(
            *(self._request(client, semaphore, spec, prompt, 1, spec.seed + j) for j in missing)
        )
        for one in singles:
            choices.extend(one[:1])
        return choices[: spec.n]

    async def _request(
        self,
        client: Any,
        semaphore: asyncio.Semaphore,
        spec: SampleSpec,
        prompt: str,
        n: int,
        seed: int,
    ) -> list[_Choice]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": spec.max_tokens,
            "temperature": spec.temperature if not spec.greedy else 0.0,
            "top_p": spec.top_p if not spec.greedy else 1.0,
            "seed": seed,
        }
        if n > 1:
            body["n"] = n
        if self.settings.endpoint == "completions":
            path = "/completions"
            body["prompt"] = prompt
            if spec.stop.stop_strings:
                body["stop"] = list(spec.stop.stop_strings)
        else:
            # The reply opens its own code fence: no stop strings here.
            path = "/chat/completions"
            body["messages"] = self._messages(spec)
        async with semaphore:
            data = await self._post(client, path, body)
        return self._parse(data, path, spec)

    async def _post(self, client: Any, path: str, body: dict[str, Any]) -> Any:
        import httpx

        url = self.settings.base_url.rstrip("/") + path
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        problem = ""
        for attempt in range(self.settings.max_retries + 1):
            delay = min(self.settings.backoff_s * 2**attempt, 30.0)
            self._tally.calls.append(path)
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    response = await client.post(url, json=body, headers=headers)
            except (TimeoutError, httpx.TimeoutException):
                raise BackendError(
                    f"{self.name}: {url} did not answer within {self.settings.timeout_s:g} s "
                    "(options.timeout_s)"
                ) from None
            except httpx.TransportError as e:
                problem = f"cannot reach {url}: {e or type(e).__name__}"
            else:
                status = response.status_code
                if status in _RETRY_STATUS:
                    problem = f"{url} answered HTTP {status}: {_snippet(response.text)}"
                    delay = _retry_after(response, delay)
                elif status >= 400:
                    raise _HTTPStatus(
                        f"{self.name}: {url} answered HTTP {status}: {_snippet(response.text)}",
                        status,
                    )
                else:
                    try:
                        return response.json()
                    except ValueError:
                        raise BackendError(
                            f"{self.name}: {url} returned malformed JSON: "
                            f"{_snippet(response.text)}"
                        ) from None
            if attempt < self.settings.max_retries:
                await asyncio.sleep(delay)
        raise BackendError(
            f"{self.name}: {problem} (after {self.settings.max_retries + 1} attempts)"
        )

    def _parse(self, data: Any, path: str, spec: SampleSpec) -> list[_Choice]:
        url = self.settings.base_url.rstrip("/") + path
        try:
            raw = sorted(data["choices"], key=lambda c: int(c.get("index", 0)))
            texts = [
                c["text"] if path == "/completions" else c["message"]["content"] or ""
                for c in raw
            ]
            finishes = [str(c.get("finish_reason") or "stop") for c in raw]
            if not all(isinstance(t, str) for t in texts) or not texts:
                raise TypeError("choice text is not a string")
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BackendError(
                f"{self.name}: {url} returned a response without choices ({e}): "
                f"{_snippet(str(data))}"
            ) from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt_tokens = _int(usage.get("prompt_tokens"))
        if prompt_tokens is None:
            prompt_tokens = _estimate(self.render(spec) if path == "/completions" else
                                      "".join(m["content"] for m in self._messages(spec)))
        completion = _int(usage.get("completion_tokens"))
        counts = _split_tokens(texts, completion)
        if path != "/completions":
            texts = [realign(spec.prefix, t) for t in texts]
        timings = data.get("timings") if isinstance(data.get("timings"), dict) else {}
        share = _prompt_share(timings)
        return [
            _Choice(text, finish, count, prompt_tokens, share)
            for text, finish, count in zip(texts, finishes, counts, strict=True)
        ]


# ---------------------------------------------------------------------------
# From choices to generations


def _generations(
    specs: Sequence[SampleSpec], results: Sequence[list[_Choice]], wall: float
) -> list[list[Generation]]:
    total = sum(c.tokens for choices in results for c in choices) or 1
    all_choices = [c for choices in results for c in choices]
    prompt_share = (sum(c.prompt_share for c in all_choices) / len(all_choices)
                    if all_choices else 0.0)
    out: list[list[Generation]] = []
    for spec, choices in zip(specs, results, strict=True):
        group = []
        for c in choices:
            seconds = wall * c.tokens / total
            # The stop rule applied afterwards (the server only knew the stop strings).
            text, cut = apply_stop(spec, c.text)
            group.append(
                Generation(
                    text=text,
                    prompt_tokens=c.prompt_tokens,
                    generated_tokens=c.tokens,
                    prompt_seconds=seconds * prompt_share,
                    decode_seconds=seconds * (1 - prompt_share),
                    finish_reason="length" if c.finish == "length" and not cut else "stop",
                )
            )
        out.append(group)
    return out


_FENCE_LINE = re.compile(r"^```[A-Za-z0-9_+-]*[ \t]*\n")
# The chat endpoint's request for a plain completion (a spec without messages).
_CONTINUE = ("```python\n{code}\n```\n\nContinue the Python code above from where it stops "
             "(complete the last function, or the last line). Reply with the code in one "
             "```python code block, with no explanation.")


def realign(prefix: str, reply: str) -> str:
    """A chat reply as the continuation of an assistant prefix it could not see.

    The chat endpoint cannot prefill. The reply's first code block is taken
    (the whole reply when it has none); the prefix without its opening fence
    line is looked for in it, and then its shorter tails from a line start on
    (a plain completion's prefix is a whole file's code, of which a reply
    restates the last function or line at most): when one is found, the
    continuation is what follows it; otherwise a newline and the whole block (a
    function the block defines again replaces the prompt's, and a test line the
    prefix left open is invalid and dropped). The closing fence is kept so that
    the stop rule ends there.
    """
    body = _FENCE_LINE.sub("", prefix, count=1) if _FENCE_LINE.match(prefix) else prefix
    match = re.search(r"```[A-Za-z0-9_+-]*[ \t]*\n", reply)
    if match:
        end = reply.find("```", match.end())
        block = reply[match.end(): end if end != -1 else len(reply)]
        closing = "```" if end != -1 else ""
    else:
        block, closing = reply, ""
    if body:
        starts = [0] + [m.end() for m in re.finditer("\n", body) if m.end() < len(body)]
        for start in starts:
            tail = body[start:]
            at = block.find(tail) if tail.strip() else -1
            if at != -1:
                return block[at + len(tail):] + closing
        return "\n" + block + closing
    return block + closing


def _split_tokens(texts: Sequence[str], completion: int | None) -> list[int]:
    if completion is None:
        return [_estimate(t) for t in texts]
    if len(texts) == 1:
        return [completion]
    chars = sum(len(t) for t in texts)
    if chars == 0:
        return [completion // len(texts)] * len(texts)
    counts = [completion * len(t) // chars for t in texts]
    counts[-1] += completion - sum(counts)
    return counts


def _estimate(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _prompt_share(timings: dict[str, Any]) -> float:
    prompt_ms = timings.get("prompt_ms")
    predicted_ms = timings.get("predicted_ms")
    if isinstance(prompt_ms, int | float) and isinstance(predicted_ms, int | float):
        total = prompt_ms + predicted_ms
        return float(prompt_ms / total) if total > 0 else 0.0
    return 0.0


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _retry_after(response: Any, default: float) -> float:
    try:
        return min(float(response.headers.get("retry-after", "")), 30.0)
    except ValueError:
        return default


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return (text[:160] + "...") if len(text) > 160 else (text or "(empty body)")


async def _wait(tasks: Sequence[asyncio.Future[Any]], cancel: CancelTokenLike | None) -> None:
    """Wait for every request, checking the cancel token every 50 ms."""
    pending: set[asyncio.Future[Any]] = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(
                pending, timeout=0.05, return_when=asyncio.FIRST_EXCEPTION
            )
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if cancel is not None and cancel.cancelled:
                raise Cancelled("cancelled")
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


# ---------------------------------------------------------------------------
# Chat templates


def _template_source(spec: str) -> str:
    if spec == "chatml":
        return CHATML
    if spec.startswith("embedded:") or spec.endswith(".gguf"):
        from ..models import resolve_model_file

        return gguf_chat_template(resolve_model_file(spec))
    try:
        return Path(spec).expanduser().read_text(encoding="utf-8")
    except OSError as e:
        raise ModelError(f"chat_template {spec}: cannot read: {e.strerror or e}") from None


def gguf_chat_template(path: Path) -> str:
    """`tokenizer.chat_template` from a GGUF file's metadata (read without llama.cpp).

    The file is mapped, not read: the metadata before the template holds the whole
    vocabulary (150k strings for Qwen2.5), which a read and a seek per string took
    half a second to pass; offsets over the mapping take a few tens of milliseconds."""
    import mmap
    import struct

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    u32, u64 = struct.Struct("<I"), struct.Struct("<Q")
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m[:4] != b"GGUF":
                raise ModelError(f"{path}: not a GGUF file")
            pos = 4 + 4 + 8  # magic, version, tensor count

            def skip(kind: int, pos: int) -> int:
                if kind == 8:
                    return pos + 8 + int(u64.unpack_from(m, pos)[0])
                if kind == 9:
                    item, count = u32.unpack_from(m, pos)[0], u64.unpack_from(m, pos + 4)[0]
                    pos += 12
                    if item in sizes:
                        return pos + sizes[item] * int(count)
                    if item == 8:
                        unpack = u64.unpack_from
                        for _ in range(count):
                            pos += 8 + unpack(m, pos)[0]
                        return pos
                    for _ in range(count):
                        pos = skip(item, pos)
                    return pos
                return pos + sizes[kind]

            keys = u64.unpack_from(m, pos)[0]
            pos += 8
            for _ in range(keys):
                n = u64.unpack_from(m, pos)[0]
                key = m[pos + 8:pos + 8 + n]
                pos += 8 + n
                kind = u32.unpack_from(m, pos)[0]
                pos += 4
                if key == b"tokenizer.chat_template" and kind == 8:
                    n = u64.unpack_from(m, pos)[0]
                    return m[pos + 8:pos + 8 + n].decode("utf-8")
                pos = skip(kind, pos)
    except (struct.error, KeyError, ValueError) as e:
        raise ModelError(f"{path}: a damaged GGUF header ({e})") from None
    raise ModelError(f"{path}: the GGUF file has no chat template (tokenizer.chat_template)")
