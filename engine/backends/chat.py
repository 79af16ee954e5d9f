"""What every backend does alike: the chat template and the stop rule.

A request's messages are rendered with the model's chat template (Jinja2, in a
sandboxed environment, as Hugging Face renders it) and the assistant's turn is
prefilled with the spec's prefix; a generated continuation ends where the
spec's stop rule cuts prefix + text. The llama.cpp, OpenAI-compatible and
transformers backends, the calibration's replay and the synthetic family all
call these, so the prompt and the cut are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ModelError
from ..types import SampleSpec, StopRule


def compile_template(source: str) -> Any:
    """A chat template compiled with Jinja2's immutable sandbox (`raise_exception` defined)."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.ChainableUndefined
    )

    def raise_exception(message: str) -> None:
        raise ModelError(f"chat template: {message}")

    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)


def messages_of(spec: SampleSpec, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The spec's messages as the template takes them; `system_prompt` first when the
    spec has no system message of its own."""
    messages = [{"role": m.role, "content": m.content} for m in spec.messages]
    if system_prompt and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def render_prompt(template: Any, spec: SampleSpec, system_prompt: str | None = None) -> str:
    """The prompt text: the template's generation prompt, then the assistant prefix;
    a spec without messages is a plain completion, its prefix alone."""
    if not spec.messages:
        return spec.prefix
    rendered = template.render(messages=messages_of(spec, system_prompt),
                               add_generation_prompt=True)
    return str(rendered) + spec.prefix


def stop_at(prefix: str, stop: StopRule, text: str) -> int | None:
    """Where the continuation `text` of `prefix` ends under `stop` (an index into
    `text`), or None when the rule does not cut it."""
    cut = stop.cut(prefix + text)
    if cut is None:
        return None
    return max(cut - len(prefix), 0)


def apply_stop(spec: SampleSpec, text: str) -> tuple[str, bool]:
    """`text` cut by the spec's stop rule, and whether it was cut."""
    end = stop_at(spec.prefix, spec.stop, text)
    return (text, False) if end is None else (text[:end], True)


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two prompts share (what a prefix cache can reuse)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
