"""A family member run in-process by Hugging Face transformers (accelerate on GPUs).

The member's `model` is a model directory, a Hugging Face id found in the local
cache (the backend never downloads), a `.gguf` file, or `embedded:NAME`; GGUF
files go through transformers' own GGUF loader, which dequantizes them. Options
(the member's `options` mapping, typed in `options.TransformersOptions`):

- `device_map`: accelerate's placement; default `"auto"` when CUDA is available
  (several GPUs: accelerate splits the layers), else the CPU.
- `dtype`: `"auto"` (the checkpoint's dtype) on GPUs by default, `"float32"` on
  the CPU, or any torch dtype name.
- `tokenizer`: a directory or id for the tokenizer when it is not beside the model.
- `threads`: torch's CPU threads (default: torch's own choice).

One `sample` call is one `generate` call per group of specs that share their
sampling settings: every sequence of every spec in the group is one row of a
left-padded batch (`num_return_sequences` when the specs ask for the same n).
A stopping criterion follows each row, applies the spec's stop rule and its
own `max_tokens`, and checks the cancel token between decode steps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import BackendError, Cancelled, ModelError
from ..plans import Member
from ..types import CancelTokenLike, Generation, SampleSpec
from .chat import stop_at
from .options import TransformersOptions

log = logging.getLogger(__name__)

class TransformersBackend:
    """Samples with `model.generate`; one batch per group of compatible specs."""

    def __init__(self, name: str, model: Any, tokenizer: Any, *, where: str = "") -> None:
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.where = where or str(getattr(model, "device", "cpu"))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        self._eos_ids = _eos_ids(model, tokenizer)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_member(cls, member: Member) -> TransformersBackend:
        o = member.settings()
        assert isinstance(o, TransformersOptions)
        return cls.load(member.model, name=member.name, device_map=o.device_map, dtype=o.dtype,
                        tokenizer=o.tokenizer, threads=o.threads)

    @classmethod
    def load(
        cls,
        model: str,
        *,
        name: str = "",
        device_map: str | Mapping[str, Any] | None = None,
        dtype: str | None = None,
        tokenizer: str | None = None,
        threads: int | None = None,
    ) -> TransformersBackend:
        import torch
        import transformers

        if threads:
            torch.set_num_threads(int(threads))
        cuda = torch.cuda.is_available()
        if device_map is None and cuda:
            device_map = "auto"
        dtype = dtype or ("auto" if cuda else "float32")
        source, gguf_file = _locate(model)
        kwargs: dict[str, Any] = {"local_files_only": True}
        if gguf_file:
            kwargs["gguf_file"] = gguf_file
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype, None)
        if torch_dtype is None:
            raise ModelError(f"member {name or model}: unknown dtype {dtype!r}")
        try:
            tok = transformers.AutoTokenizer.from_pretrained(tokenizer or source, **kwargs)
            lm = transformers.AutoModelForCausalLM.from_pretrained(
                source, dtype=torch_dtype, device_map=device_map, **kwargs
            )
        except (OSError, ValueError) as e:
            raise ModelError(
                f"member {name or model}: cannot load {model}: {_first_line(e)}"
            ) from e
        lm.eval()  # type: ignore[no-untyped-call]
        where = _placement(lm)
        log.info("loaded %s with transformers on %s", model, where)
        return cls(name or model, lm, tok, where=where)

    def close(self) -> None:
        self.model = None

    # ----------------------------------------------------------------- sampling

    def sample(
        self, specs: Sequence[SampleSpec], *, cancel: CancelTokenLike | None = None
    ) -> list[list[Generation]]:
        if self.model is None:
            raise BackendError(f"{self.name}: backend is closed")
        results: list[list[Generation] | None] = [None] * len(specs)
        for group in _groups(specs):
            for index, gens in zip(group, self._sample_group([specs[i] for i in group], cancel),
                                   strict=True):
                results[index] = gens
        return [r if r is not None else [] for r in results]

    def render(self, spec: SampleSpec) -> str:
        """The prompt text: the chat template's generation prompt, then the prefix (the
        prefix alone for a plain completion, a spec without messages)."""
        if not spec.messages:
            return spec.prefix
        messages = [{"role": m.role, "content": m.content} for m in spec.messages]
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return str(text) + spec.prefix

    def _sample_group(
        self, specs: Sequence[SampleSpec], cancel: CancelTokenLike | None
    ) -> list[list[Generation]]:
        import torch
        import transformers

        # num_return_sequences copies each prompt n times; generate refuses it for
        # greedy decoding, where the rows are then spelled out (n > 1 greedy rows are
        # identical: the method never asks for them).
        same_n = len({s.n for s in specs}) == 1 and (specs[0].n == 1 or not specs[0].greedy)
        prompts = [self.render(s) for s in specs]
        if not same_n:
            prompts = [p for p, s in zip(prompts, specs, strict=True) for _ in range(s.n)]
        batch = self.tokenizer(
            prompts, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.model.device)
        prompt_lens = batch["attention_mask"].sum(dim=1).tolist()
        rows = [(i, j) for i, s in enumerate(specs) for j in range(s.n)]
        watcher = _RowWatcher(
            self.tokenizer,
            [specs[i] for i, _ in rows],
            self._eos_ids,
            cancel,
        )
        first = specs[0]
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": max(s.max_tokens for s in specs),
            "num_return_sequences": first.n if same_n else 1,
            "stopping_criteria": transformers.StoppingCriteriaList([watcher]),
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self._eos_ids or None,
        }
        # The same sampling as the llama.cpp backend: no repetition penalty, no top-k
        # or min-p from the checkpoint's generation_config.
        gen_kwargs.update(repetition_penalty=None, min_p=None)
        if first.greedy:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            # One generator for the batch, seeded by its first spec: rows are
            # reproducible for a given batch (not per sequence, as in llama.cpp).
            torch.manual_seed(first.seed)
            gen_kwargs.update(
                do_sample=True, temperature=first.temperature, top_p=first.top_p, top_k=0
            )
        if cancel is not None and cancel.cancelled:
            raise Cancelled("cancelled")
        watcher.start = time.perf_counter()
        try:
            with torch.inference_mode():
                self.model.generate(**batch, **gen_kwargs)
        except Cancelled:
            raise
        except (RuntimeError, ValueError) as e:
            raise BackendError(f"{self.name}: generation failed: {_first_line(e)}") from e
        end = time.perf_counter()
        spec_prompt_lens = (
            prompt_lens if same_n else [prompt_lens[sum(s.n for s in specs[:i])]
                                        for i in range(len(specs))]
        )
        return _generations(specs, rows, watcher, spec_prompt_lens, end)


# ---------------------------------------------------------------------------
# Following rows during generate


class _RowWatcher:
    """A stopping criterion over every row: stop rule, per-row max_tokens, EOS, cancel.

    It keeps its own record of each row's tokens and text (incremental
    detokenization), so the results never depend on what `generate` pads.
    """

    def __init__(
        self,
        tokenizer: Any,
        row_specs: Sequence[SampleSpec],
        eos_ids: Sequence[int],
        cancel: CancelTokenLike | None,
    ) -> None:
        self.tokenizer = tokenizer
        self.specs = row_specs
        self.eos = set(eos_ids)
        self.cancel = cancel
        n = len(row_specs)
        self.tokens: list[list[int]] = [[] for _ in range(n)]
        self.texts = [""] * n
        self.ends: list[list[int]] = [[] for _ in range(n)]
        self.done = [False] * n
        self.finish: list[str] = ["length"] * n
        self.cut_at: list[int | None] = [None] * n
        self._offsets = [(0, 0)] * n  # (prefix_offset, read_offset) per row
        self.start = 0.0
        self.first_step: float | None = None

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        if self.first_step is None:
            self.first_step = time.perf_counter()
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled("cancelled")
        last = input_ids[:, -1].tolist()
        for row, token in enumerate(last):
            if not self.done[row]:
                self._step(row, int(token))
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)

    def _step(self, row: int, token: int) -> None:
        spec = self.specs[row]
        self.tokens[row].append(token)
        if token in self.eos:
            self.done[row], self.finish[row] = True, "stop"
            self.ends[row].append(len(self.texts[row]))
            return
        piece = self._decode_new(row)
        line_start = not self.texts[row] or self.texts[row].endswith("\n")
        self.texts[row] += piece
        self.ends[row].append(len(self.texts[row]))
        # A rule can only cut where a line ends, a fence begins or a line begins.
        if "\n" in piece or "`" in piece or line_start:
            end = stop_at(spec.prefix, spec.stop, self.texts[row])
            if end is not None:
                self.cut_at[row] = end
                self.done[row], self.finish[row] = True, "stop"
                return
        if len(self.tokens[row]) >= spec.max_tokens:
            self.done[row] = True

    def _decode_new(self, row: int) -> str:
        # Byte-level tokens may split a character: decode a small window and emit
        # only once the window's text no longer ends in a partial character.
        tokens = self.tokens[row]
        prefix_offset, read_offset = self._offsets[row]
        before = self.tokenizer.decode(tokens[prefix_offset:read_offset], skip_special_tokens=True)
        after = self.tokenizer.decode(tokens[prefix_offset:], skip_special_tokens=True)
        pending = len(tokens) - read_offset
        if len(after) > len(before) and (not after.endswith("\ufffd") or pending >= 4):
            self._offsets[row] = (read_offset, len(tokens))
            return str(after[len(before):])
        return ""

    def final_text(self, row: int) -> str:
        text = self.texts[row]
        if self.cut_at[row] is None and self._offsets[row][1] < len(self.tokens[row]):
            # Flush a trailing partial character (kept as the replacement character).
            prefix_offset, read_offset = self._offsets[row]
            tail = self.tokenizer.decode(self.tokens[row][prefix_offset:],
                                         skip_special_tokens=True)
            head = self.tokenizer.decode(self.tokens[row][prefix_offset:read_offset],
                                         skip_special_tokens=True)
            text += tail[len(head):]
        cut = self.cut_at[row]
        return text[:cut] if cut is not None else text


def _generations(
    specs: Sequence[SampleSpec],
    rows: Sequence[tuple[int, int]],
    watcher: _RowWatcher,
    prompt_lens: Sequence[int],
    end: float,
) -> list[list[Generation]]:
    first_step = watcher.first_step or end
    prompt_time = first_step - watcher.start
    decode_time = end - first_step
    total_prompt = sum(p * s.n for p, s in zip(prompt_lens, specs, strict=True)) or 1
    total_generated = sum(len(t) for t in watcher.tokens) or 1
    out: list[list[Generation]] = [[] for _ in specs]
    for row, (i, _) in enumerate(rows):
        text = watcher.final_text(row)
        n_tokens = len(watcher.tokens[row])
        out[i].append(
            Generation(
                text=text,
                prompt_tokens=int(prompt_lens[i]),
                generated_tokens=n_tokens,
                prompt_seconds=prompt_time * prompt_lens[i] / total_prompt,
                decode_seconds=decode_time * n_tokens / total_generated,
                token_ends=tuple(min(e, len(text)) for e in watcher.ends[row]),
                finish_reason="stop" if watcher.finish[row] == "stop" else "length",
            )
        )
    return out


# ---------------------------------------------------------------------------
# Helpers


def _groups(specs: Sequence[SampleSpec]) -> list[list[int]]:
    """Indices of specs that can share one generate call (same sampling settings).

    Seeds do not split a group: a stage's solutions and tests (seeded apart) stay
    one batch, seeded by its first spec.
    """
    groups: dict[tuple[float, float], list[int]] = {}
    for i, s in enumerate(specs):
        key = (0.0, 1.0) if s.greedy else (s.temperature, s.top_p)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _locate(model: str) -> tuple[str, str | None]:
    """(directory or id, gguf file name or None) for from_pretrained."""
    if model.startswith("embedded:") or model.endswith(".gguf"):
        from ..models import resolve_model_file

        path = resolve_model_file(model)
        return str(path.parent), path.name
    path = Path(model).expanduser()
    if path.exists():
        return str(path), None
    return model, None  # a Hugging Face id, looked up in the local cache only


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    config = getattr(model, "generation_config", None)
    value = getattr(config, "eos_token_id", None)
    for v in value if isinstance(value, list | tuple) else [value]:
        if isinstance(v, int):
            ids.append(v)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    # A chat model ends its turn with its end-of-turn token even when the config
    # names only the end-of-text token.
    for special in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        tid = tokenizer.convert_tokens_to_ids(special)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid not in ids:
            ids.append(tid)
    return ids


def _placement(model: Any) -> str:
    devices = getattr(model, "hf_device_map", None)
    if devices:
        names = sorted({str(d) for d in devices.values()})
        return "accelerate: " + ", ".join(names)
    return str(getattr(model, "device", "cpu"))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
