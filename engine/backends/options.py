"""Each backend's `options`, as typed and documented settings.

A plan member's `options` mapping is structured into its backend's class here
when the plan file loads, so a misspelt or ill-typed option is a PlanError
naming the file, the member and the field, like every other plan error, and
never a surprise at the first model load. This module imports no backend
library: loading a plan imports neither llama_cpp nor torch nor httpx.

`docs/backends.md`'s option tables are generated from these classes:

    python -m cascode.engine.backends.options markdown
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs


def _doc(default: Any, doc: str, *validators: Callable[[Any, Any, Any], None]) -> Any:
    """A field with its documentation (the generated tables read `metadata["doc"]`)."""
    return attrs.field(default=default, metadata={"doc": doc},
                       validator=list(validators) or None)


def _required(doc: str, *validators: Callable[[Any, Any, Any], None]) -> Any:
    return attrs.field(metadata={"doc": doc}, validator=list(validators) or None)


def _at_least(low: float) -> Callable[[Any, Any, Any], None]:
    def check(_: Any, field: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and value < low:
            raise ValueError(f"must be at least {low:g}, got {value!r}")

    return check


def _positive(_: Any, field: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"must be greater than 0, got {value!r}")


def _one_of(*choices: Any) -> Callable[[Any, Any, Any], None]:
    def check(_: Any, field: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(map(repr, choices))}, got {value!r}")

    return check


def _seconds_or_never(_: Any, field: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (value < -1 or value == 0):
        raise ValueError(f"must be a number of seconds above 0, or -1 for never; got {value!r}")


def _not_empty(_: Any, field: attrs.Attribute[Any], value: Any) -> None:
    if not value:
        raise ValueError("must not be empty")


@attrs.frozen(kw_only=True)
class LlamaCppOptions:
    """A GGUF file run by llama.cpp, in the machine's model server (the default) or in-process."""

    n_ctx: int = _doc(12288, "KV cells of the context: a stage's prompt plus every sequence's "
                             "token budget must fit (the default holds a k = 10 stage)", _positive)
    n_seq_max: int = _doc(32, "the most sequences decoded in one batch (2k for a stage of k)",
                          _positive)
    n_threads: int | None = _doc(None, "CPU threads for prompt evaluation and decoding "
                                       "(default: every core this process may use)", _positive)
    prefix_cache: bool = _doc(True, "keep the last request's prompt in the KV cache, so that "
                                    "the next one evaluates only the tokens after the longest "
                                    "common prefix")
    model_server: bool | None = _doc(None, "run the model in the machine's shared model "
                                            "server (llama-server, one per user and model "
                                            "file, started on demand and shared by every "
                                            "client) instead of in this process; unset: the "
                                            "server where install.sh built it, else this "
                                            "process (with a warning)")
    keep_alive_s: int = _doc(300, "with `model_server`: the server unloads the model after this "
                                  "many seconds without a request (-1: never); the client that "
                                  "starts the server sets it", _seconds_or_never)
    port: int = _doc(0, "with `model_server`: the loopback port it listens on (0: a free one); "
                        "a port taken by another program is an error naming it", _at_least(0))
    speculative: str | None = _doc(None, "with `model_server`: speculative decoding, `ngram` "
                                         "(drafts of 8 tokens from 3-token n-grams of the "
                                         "prompt and the text so far) or a smaller model of "
                                         "the same tokenizer (a path or `embedded:NAME`) that "
                                         "drafts tokens this one verifies in one batch. Slower "
                                         "on a 2-core CPU, and about 15% of greedy answers "
                                         "change at a near-tie (see \"Speculative decoding\" "
                                         "below)")
    concurrency: int = _doc(1, "with `model_server`: sequences the server runs at once without "
                               "slowing each, for tiers that follow the load (1 on a CPU)",
                            _positive)


@attrs.frozen(kw_only=True)
class TransformersOptions:
    """A Hugging Face checkpoint or GGUF file run in-process by transformers."""

    device_map: str | dict[str, Any] | None = _doc(
        None, "accelerate's placement; default `\"auto\"` when CUDA is available (several "
              "GPUs: the layers are split), else the CPU")
    dtype: str | None = _doc(None, "a torch dtype name (`bfloat16`, `float16`) or `\"auto\"`; "
                                   "default `\"auto\"` on GPUs, `\"float32\"` on the CPU")
    tokenizer: str | None = _doc(None, "a directory or id for the tokenizer when it is not "
                                       "beside the model")
    threads: int | None = _doc(None, "torch's CPU threads (default: torch's own choice)",
                               _positive)


@attrs.frozen(kw_only=True)
class OpenAIOptions:
    """A model behind an OpenAI-compatible HTTP endpoint; `model` is the name it knows."""

    base_url: str = _required("the endpoint, e.g. `http://127.0.0.1:8000/v1` (required)",
                              _not_empty)
    api_key_env: str | None = _doc(None, "the name of the environment variable that holds the "
                                         "API key (sent as a bearer token); never the key itself")
    endpoint: str = _doc("completions", "`completions` renders the chat template here and "
                                        "prefills the answer; `chat` sends the messages to "
                                        "`/chat/completions` and re-aligns the reply",
                         _one_of("completions", "chat"))
    chat_template: str = _doc("chatml", "for `completions`: `chatml`, a `.jinja` file, or a GGUF "
                                        "file / `embedded:NAME` whose own template is used")
    system_prompt: str | None = _doc(None, "a system message put before the request's messages")
    n: str | bool = _doc("auto", "`auto` asks for n choices and requests the missing ones one "
                                 "by one; `true` or `false` (always k concurrent requests)",
                         _one_of("auto", True, False))
    timeout_s: float = _doc(120.0, "the longest one request may take, answer included (s)",
                            _positive)
    max_retries: int = _doc(3, "retries on 429, 5xx and connection failures", _at_least(0))
    backoff_s: float = _doc(0.5, "the first retry's wait, doubled each time (or the server's "
                                 "Retry-After), at most 30 s", _at_least(0))
    max_concurrency: int = _doc(16, "requests in flight at once", _positive)
    concurrency: int = _doc(1, "requests the server runs at once without slowing each, for "
                               "tiers that follow the load (vLLM's `/metrics` is read)",
                            _positive)


@attrs.frozen(kw_only=True)
class LlamaServerOptions:
    """A model served by a llama.cpp server elsewhere (a team's GPU machine); `model` is the
    name a router server (`--models-dir`) knows it by, and is ignored by a one-model server."""

    url: str = _required("the server, e.g. `https://gpu.example.com:8443` or "
                         "`http://10.0.0.5:8080` (a path prefix is kept; required)", _not_empty)
    api_key_file: str | None = _doc(None, "a file holding the API key (first line; mode 0600: "
                                          "a key others can read is refused)")
    api_key_env: str | None = _doc(None, "the name of the environment variable that holds the "
                                         "API key; never the key itself")
    ca_file: str | None = _doc(None, "for https: a CA bundle to trust besides the system's")
    chat_template: str = _doc("server", "`server` uses the template the server reports "
                                        "(`/props`); else a `.jinja` file, or a GGUF file / "
                                        "`embedded:NAME` whose own template is used")
    timeout_s: float = _doc(120.0, "the longest the server may stay silent during a "
                                   "request (s)", _positive)
    connect_timeout_s: float = _doc(10.0, "the longest a connection may take (s)", _positive)
    max_retries: int = _doc(2, "retries when the server cannot be reached or says it is busy "
                               "or loading (429, 502-504), before any token came", _at_least(0))
    backoff_s: float = _doc(0.5, "the first retry's wait, doubled each time", _at_least(0))
    concurrency: int = _doc(1, "sequences the server runs at once without slowing each, for "
                               "tiers that follow the load (a GPU: the slots it serves at full "
                               "speed)", _positive)


OPTIONS: dict[str, type[Any]] = {
    "llama_cpp": LlamaCppOptions,
    "llama_server": LlamaServerOptions,
    "transformers": TransformersOptions,
    "openai": OpenAIOptions,
}
BackendOptions = LlamaCppOptions | LlamaServerOptions | TransformersOptions | OpenAIOptions


class OptionsError(ValueError):
    """An option that does not fit its backend's class: `field` and `message`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"options.{field}: {message}" if field else f"options: {message}")
        self.field = field


_converter = cattrs.Converter(forbid_extra_keys=True)


def _strict(kind: type[Any], name: str) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            raise ValueError(f"expected {name}, got {value!r}")
        return value

    return hook


def _number(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _str_or_bool(value: Any, _: Any) -> str | bool:
    if not isinstance(value, str | bool):
        raise ValueError(f"expected a string or true/false, got {value!r}")
    return value


def _device_map(value: Any, _: Any) -> str | dict[str, Any] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return dict(value)
    raise ValueError(f"expected a string or a mapping, got {value!r}")


_converter.register_structure_hook(int, _strict(int, "an integer"))
_converter.register_structure_hook(str, _strict(str, "a string"))
_converter.register_structure_hook(float, _number)
_converter.register_structure_hook(bool, _strict(bool, "true or false"))
_converter.register_structure_hook(str | bool, _str_or_bool)
_converter.register_structure_hook(str | dict[str, Any] | None, _device_map)


def structure_options(backend: str, options: Mapping[str, Any]) -> BackendOptions:
    """`options` as `backend`'s class; OptionsError naming the field otherwise."""
    cls = OPTIONS[backend]
    if not isinstance(options, Mapping):
        raise OptionsError("", f"expected a mapping, got {options!r}")
    unknown = sorted(set(options) - {f.name for f in attrs.fields(cls)})
    if unknown:
        known = ", ".join(f.name for f in attrs.fields(cls))
        raise OptionsError(unknown[0], f"unknown {backend} option (known: {known})")
    try:
        out: BackendOptions = _converter.structure(dict(options), cls)
    except cattrs.ClassValidationError as e:
        typed = [x for x in e.exceptions if getattr(x, "__notes__", None)]
        if not typed:  # the constructor's validators ran: one of them said no
            first = e.exceptions[0]
            raise OptionsError(_failed_field(cls, options), str(first)) from None
        for message in cattrs.transform_error(e, path=""):
            # "invalid value for type, expected int @ $.n_ctx" -> ("n_ctx", the reason)
            text, _, where = message.rpartition(" @ ")
            field = where.lstrip("$.").split(".")[0] if where else ""
            missing = "required field missing" in message
            raise OptionsError(field, "required" if missing else text or message) from None
        raise OptionsError("", str(e)) from None
    return out


def _failed_field(cls: type[Any], options: Mapping[str, Any]) -> str:
    """The field whose validator raised: each validator run alone on its value."""
    for f in attrs.fields(cls):
        if f.validator is None:
            continue
        value = options.get(f.name, f.default)
        try:
            f.validator(None, f, value)
        except ValueError:
            return str(f.name)
    return ""


# ---------------------------------------------------------------- documentation


def markdown_table(backend: str) -> str:
    """The options of `backend` as a Markdown table (docs/backends.md is made of these)."""
    cls = attrs.resolve_types(OPTIONS[backend])  # the same names whatever ran before
    rows = ["| option | type | default | what it does |", "|---|---|---|---|"]
    for f in attrs.fields(cls):
        kind = _type_name(f.type)
        if f.default is attrs.NOTHING:
            default = "required"
        elif f.default is None:
            default = "none"
        else:
            default = f"`{f.default!r}`".replace("'", '"')
        rows.append(f"| `{f.name}` | {kind} | {default} | {f.metadata['doc']} |")
    return "\n".join(rows)


def _type_name(kind: Any) -> str:
    if isinstance(kind, type):
        return {"int": "integer", "str": "string", "float": "number", "bool": "boolean"}.get(
            kind.__name__, kind.__name__)
    parts = [p.strip() for p in str(kind).replace("typing.", "").split("|")]
    names = {"int": "integer", "str": "string", "float": "number", "bool": "boolean",
             "dict[str, Any]": "mapping", "None": "null"}
    return " or ".join(names.get(p, p) for p in parts)


def markdown() -> str:
    parts = []
    for backend, cls in OPTIONS.items():
        parts.append(f"### `{backend}` options\n\n{cls.__doc__}\n\n{markdown_table(backend)}\n")
    return "\n".join(parts)


if __name__ == "__main__":
    if sys.argv[1:] != ["markdown"]:
        print("usage: python -m cascode.engine.backends.options markdown", file=sys.stderr)
        sys.exit(2)
    print(markdown(), end="")
