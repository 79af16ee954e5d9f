"""The llama.cpp backend: a GGUF model in-process, every sequence of a stage in one batch.

How a call to `sample(specs)` runs (docs/method.md 6, "prompt prefix shared"):
1. each distinct prompt (chat template + assistant prefix) is evaluated once, into
   the KV cache of its first sequence, and copied (`llama_memory_seq_cp`, which in a
   unified cache shares the cells rather than duplicating them) to the sequences
   that share it;
2. every live sequence then decodes one token per step, all in one `llama_decode`
   batch, each with its own sampler chain from llama.cpp (greedy, or temperature,
   top-p and a seeded distribution), never a Python loop over the vocabulary;
   A prompt that opens like one evaluated before (the solution and test prompts
   share the system prompt and the code) copies that prefix and evaluates only
   the rest;
3. a sequence ends at end-of-generation, at its token budget, or where its stop
   rule cuts the text (checked when a piece holds a newline or a backtick); its
   KV cells are freed before the next step;
4. the cancel token is checked before every decode call, so a cancelled request
   stops within one decode step.

The model loads once per backend (one per process and member) and stays loaded.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BackendError, ModelError
from ..models import resolve_model_file
from ..plans import Member
from ..types import CancelTokenLike, Generation, SampleSpec
from .chat import compile_template, render_prompt, shared_prefix, stop_at
from .options import LlamaCppOptions

log = logging.getLogger(__name__)

DEFAULT_N_CTX = LlamaCppOptions().n_ctx  # a k = 10 stage plus greedy items
DEFAULT_N_SEQ_MAX = LlamaCppOptions().n_seq_max
PROMPT_BATCH = 512
# A warm-up's chunk: what a request that cancels it may lose. Small, because the
# request often comes while the last edit's warm-up runs. The 1.5B on 2 cores (AMD
# EPYC), an 803-token prompt: 16.8 ms a token in chunks of 64, against 15.9 in
# chunks of 512, 16.1 of 128 and 19.0 of 32.
PREFILL_BATCH = 64

_backend_lock = threading.Lock()
_backend_ready = False


def _lib() -> Any:
    try:
        import llama_cpp
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ModelError(
            "llama-cpp-python is not installed: pip install 'cascode[llama]' "
            "(see README for the build flags)"
        ) from e
    global _backend_ready, _log_callback
    with _backend_lock:
        if not _backend_ready:
            # llama.cpp logs every tensor it loads to stderr: route its warnings and
            # errors to logging and drop the rest (kept referenced: C holds it).
            _log_callback = llama_cpp.llama_log_callback(_forward_log)
            llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _backend_ready = True
    return llama_cpp


_log_callback: Any = None
_llama_log = logging.getLogger("cascode.llama_cpp")


_aborting = False  # a cancel stopped llama_decode: its "failed to decode" is expected


def _forward_log(level: int, text: bytes, _user: Any) -> None:
    # enum ggml_log_level: 0 none, 1 debug, 2 info, 3 warn, 4 error, 5 continuation
    if _aborting:
        return
    if level in (3, 4):
        msg = text.decode("utf-8", "replace").rstrip()
        if msg:
            # Its warnings are about the model file's metadata (e.g. token types the
            # loader fixes itself): details for -v, not for every user.
            _llama_log.log(logging.INFO if level == 3 else logging.ERROR, "%s", msg)


@dataclass
class _Seq:
    """One sequence being decoded."""

    spec_index: int
    seq_id: int
    sampler: Any
    prefix: str
    stop: Any
    max_tokens: int
    pos: int
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    text: str = ""
    token_ends: list[int] = field(default_factory=list)
    n_generated: int = 0
    last_token: int = -1
    finish: str = ""
    freed: bool = False


class LlamaCppBackend:
    """One GGUF model loaded by llama.cpp, sampling batches of sequences."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        name: str = "",
        n_ctx: int = DEFAULT_N_CTX,
        n_seq_max: int = DEFAULT_N_SEQ_MAX,
        n_threads: int | None = None,
        prefix_cache: bool = True,
    ) -> None:
        # A build that cannot run on this CPU dies of a signal at the first load:
        # a child process finds that out first (once per build and CPU).
        from .llama_check import ensure_runs

        ensure_runs(Path(model_path))
        lib = _lib()
        self._lib = lib
        self.name = name or Path(model_path).stem
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.n_seq_max = n_seq_max
        # The prompt of the last request stays in the KV cache under its own
        # sequence id (one past the stage's), so that the next request evaluates
        # only the tokens after the longest common prefix (what llama.cpp's server
        # does with cache_prompt). Bounded: one prompt, at most half the context.
        self.prefix_cache = prefix_cache
        self._cache_seq = n_seq_max
        self._cached: tuple[int, ...] = ()
        threads = n_threads or max(1, len(os.sched_getaffinity(0)))
        self._lock = threading.Lock()  # one batch at a time per model

        mparams = lib.llama_model_default_params()
        self._model = lib.llama_model_load_from_file(str(self.model_path).encode(), mparams)
        if not self._model:
            raise ModelError(f"{self.name}: llama.cpp could not load {self.model_path}")
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = PROMPT_BATCH
        cparams.n_ubatch = PROMPT_BATCH
        cparams.n_seq_max = n_seq_max + 1  # + the prefix cache's sequence
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.kv_unified = True  # shared prompt cells, one pool for all sequences
        cparams.no_perf = True
        self._ctx = lib.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            lib.llama_model_free(self._model)
            raise ModelError(f"{self.name}: llama.cpp could not create a context (n_ctx={n_ctx})")
        self._vocab = lib.llama_model_get_vocab(self._model)
        self._mem = lib.llama_get_memory(self._ctx)
        self._batch = lib.llama_batch_init(max(PROMPT_BATCH, n_seq_max), 0, 1)
        self._template = _chat_template(lib, self._model)
        self._piece_buf = ctypes.create_string_buffer(256)
        # While a prompt is evaluated, llama.cpp asks this between the graph's nodes
        # whether to stop: a cancel lands inside a chunk, not after it (kept
        # referenced: C holds it). Unset while decoding, whose steps are short.
        self._abort_token: CancelTokenLike | None = None
        self._abort_cb = lib.ggml_abort_callback(self._should_abort)

    @classmethod
    def from_member(cls, member: Member) -> LlamaCppBackend:
        path = resolve_model_file(member.model)
        o = member.settings()
        assert isinstance(o, LlamaCppOptions)
        return cls(path, name=member.name, n_ctx=o.n_ctx, n_seq_max=o.n_seq_max,
                   n_threads=o.n_threads, prefix_cache=o.prefix_cache)

    # ------------------------------------------------------------------ text

    def render(self, spec: SampleSpec) -> str:
        """The prompt text: the model's chat template, then the assistant prefix."""
        return render_prompt(self._template, spec)

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        n_max = len(data) + 16
        buf = (self._lib.llama_token * n_max)()
        n = self._lib.llama_tokenize(self._vocab, data, len(data), buf, n_max, True, True)
        if n < 0:
            raise BackendError(f"{self.name}: tokenization failed ({n})")
        return list(buf[:n])

    def _piece(self, token: int) -> bytes:
        n = self._lib.llama_token_to_piece(self._vocab, token, self._piece_buf, 256, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, -n, 0, False)
            return buf.raw[:n]
        return self._piece_buf.raw[:n]

    # ------------------------------------------------------------------ sampling

    def sample(
        self, specs: Sequence[SampleSpec], *, cancel: CancelTokenLike | None = None
    ) -> list[list[Generation]]:
        total = sum(s.n for s in specs)
        if total > self.n_seq_max:
            raise BackendError(
                f"{self.name}: {total} sequences in one batch, more than n_seq_max={self.n_seq_max}"
            )
        prompts = [self.tokenize(self.render(s)) for s in specs]
        need = sum(len(p) for p in {tuple(p) for p in prompts}) + sum(
            s.n * s.max_tokens for s in specs
        )
        if need > self.n_ctx:
            raise BackendError(
                f"{self.name}: the batch may need {need} KV cells, more than n_ctx={self.n_ctx} "
                "(raise the member's options.n_ctx)"
            )
        with self._lock:
            return self._sample_locked(specs, prompts, cancel)

    def _sample_locked(
        self,
        specs: Sequence[SampleSpec],
        prompts: list[list[int]],
        cancel: CancelTokenLike | None,
    ) -> list[list[Generation]]:
        lib = self._lib
        seqs: list[_Seq] = []
        prompt_seconds: dict[tuple[int, ...], float] = {}
        prompt_evaluated: dict[tuple[int, ...], int] = {}
        sharers: dict[tuple[int, ...], int] = {}
        self._fit_cache(prompts, specs)
        try:
            # 1. Each distinct prompt once, into its first sequence; the others
            # copy its cells and take their first token from its last logits.
            by_prompt: dict[tuple[int, ...], list[int]] = {}
            for i, tokens in enumerate(prompts):
                by_prompt.setdefault(tuple(tokens), []).append(i)
            next_id = 0
            evaluated: list[tuple[tuple[int, ...], int]] = []
            if self._cached:
                evaluated.append((self._cached, self._cache_seq))
            for key, spec_indices in by_prompt.items():
                _check(cancel)
                first = next_id
                t0 = time.perf_counter()
                # The solution and test prompts open alike (system prompt, the code):
                # copy the longest prefix already evaluated, evaluate the rest.
                shared, source = _longest_shared_prefix(key, evaluated)
                if shared:
                    lib.llama_memory_seq_cp(self._mem, source, first, 0, shared)
                self._eval_prompt(key, first, start=shared, cancel=cancel)
                prompt_seconds[key] = time.perf_counter() - t0
                prompt_evaluated[key] = len(key) - shared
                evaluated.append((key, first))
                if key == next(iter(by_prompt)):
                    self._remember_prompt(key, first)
                    # The cache's sequence now holds this prompt: no stale entry.
                    evaluated = [e for e in evaluated if e[1] != self._cache_seq]
                sharers[key] = sum(specs[i].n for i in spec_indices)
                group = []
                for i in spec_indices:
                    spec = specs[i]
                    for j in range(spec.n):
                        group.append(_Seq(i, next_id, self._make_sampler(spec, j), spec.prefix,
                                          spec.stop, spec.max_tokens, len(key)))
                        if next_id != first:
                            lib.llama_memory_seq_cp(self._mem, first, next_id, -1, -1)
                        next_id += 1
                seqs.extend(group)
                for seq in group:
                    self._accept(seq, lib.llama_sampler_sample(seq.sampler, self._ctx, -1))
            # 2. Decode all live sequences together, one token each per step.
            decode_seconds = 0.0
            while True:
                # Cells of finished sequences are freed only now: until the last
                # prompt is in, any sequence may be the source of a shared prefix.
                for seq in seqs:
                    if seq.finish and not seq.freed:
                        lib.llama_memory_seq_rm(self._mem, seq.seq_id, -1, -1)
                        seq.freed = True
                live = [s for s in seqs if not s.finish]
                if not live:
                    break
                _check(cancel)
                self._fill_batch(live)
                t0 = time.perf_counter()
                rc = lib.llama_decode(self._ctx, self._batch)
                decode_seconds += time.perf_counter() - t0
                if rc != 0:
                    raise BackendError(f"{self.name}: llama_decode failed ({rc}): KV cache full?")
                tokens = []
                t0 = time.perf_counter()
                for idx in range(len(live)):
                    tokens.append(lib.llama_sampler_sample(live[idx].sampler, self._ctx, idx))
                decode_seconds += time.perf_counter() - t0  # sampling is decoding work too
                for seq, token in zip(live, tokens, strict=True):
                    seq.pos += 1
                    self._accept(seq, token)
        except BaseException:
            # A request stopped half-way (cancelled, failed) leaves nothing to trust.
            self._forget_prompt()
            raise
        finally:
            for seq in seqs:
                lib.llama_sampler_free(seq.sampler)
            # Every sequence of the stage goes; the cached prompt stays.
            for seq_id in range(self._cache_seq):
                lib.llama_memory_seq_rm(self._mem, seq_id, -1, -1)
        return self._generations(specs, prompts, seqs, prompt_seconds, prompt_evaluated,
                                 sharers, decode_seconds)

    # ------------------------------------------------------------------ prefix cache

    def prefill(self, spec: SampleSpec, *, cancel: CancelTokenLike | None = None) -> int:
        """Evaluate the spec's prompt into the prompt cache, ahead of its request (which
        then evaluates only what changed since). The prompt tokens it evaluated; 0 when
        the cache already holds it, is off, or the prompt is too long to keep. It runs in
        chunks of PREFILL_BATCH tokens: a cancel keeps every chunk evaluated before it."""
        tokens = tuple(self.tokenize(self.render(spec)))
        if not self.prefix_cache or len(tokens) > self.n_ctx // 2:
            return 0
        with self._lock:
            # Its last token stays for the request: its logits start the sequences.
            keep = shared_prefix(tokens, self._cached)
            end = len(tokens) - 1
            if keep >= end:
                return 0
            lib, seq = self._lib, self._cache_seq
            lib.llama_memory_seq_rm(self._mem, seq, keep, -1)
            self._cached = tokens[:keep]
            for offset in range(keep, end, PREFILL_BATCH):
                stop = min(offset + PREFILL_BATCH, end)
                try:
                    self._eval_prompt(tokens[:stop], seq, start=offset, cancel=cancel)
                except BaseException:
                    # The cells of a chunk cut short are not to be trusted.
                    lib.llama_memory_seq_rm(self._mem, seq, offset, -1)
                    raise
                self._cached = tokens[:stop]
            return end - keep

    def _fit_cache(self, prompts: list[list[int]], specs: Sequence[SampleSpec]) -> None:
        """Drop the cached prompt when this batch could need its cells."""
        if not self._cached:
            return
        shared = max((shared_prefix(p, self._cached) for p in prompts), default=0)
        need = sum(len(p) for p in {tuple(p) for p in prompts}) + sum(
            s.n * s.max_tokens for s in specs)
        if need + len(self._cached) - shared > self.n_ctx:
            self._forget_prompt()

    def _remember_prompt(self, tokens: tuple[int, ...], seq_id: int) -> None:
        """Keep `tokens`' cells (evaluated into `seq_id`) as the cached prompt."""
        self._forget_prompt()
        if not self.prefix_cache or len(tokens) > self.n_ctx // 2:
            return
        self._lib.llama_memory_seq_cp(self._mem, seq_id, self._cache_seq, 0, len(tokens))
        self._cached = tokens

    def _forget_prompt(self) -> None:
        if self._cached:
            self._lib.llama_memory_seq_rm(self._mem, self._cache_seq, -1, -1)
            self._cached = ()

    def forget_cached_prompt(self) -> None:
        """Drop the cached prompt: the next request evaluates its whole prompt."""
        with self._lock:
            self._forget_prompt()

    @property
    def cached_prompt_tokens(self) -> int:
        """KV cells held by the cached prompt (0 when none)."""
        return len(self._cached)

    def _generations(
        self,
        specs: Sequence[SampleSpec],
        prompts: list[list[int]],
        seqs: list[_Seq],
        prompt_seconds: dict[tuple[int, ...], float],
        prompt_evaluated: dict[tuple[int, ...], int],
        sharers: dict[tuple[int, ...], int],
        decode_seconds: float,
    ) -> list[list[Generation]]:
        total_tokens = sum(s.n_generated for s in seqs) or 1
        out: list[list[Generation]] = [[] for _ in specs]
        counted: set[tuple[int, ...]] = set()
        for seq in seqs:
            key = tuple(prompts[seq.spec_index])
            # The tokens evaluated for a prompt are counted once, on its first sequence.
            evaluated = 0 if key in counted else prompt_evaluated.get(key, 0)
            counted.add(key)
            out[seq.spec_index].append(
                Generation(
                    text=seq.text,
                    prompt_tokens=len(key),
                    generated_tokens=seq.n_generated,
                    prompt_seconds=prompt_seconds.get(key, 0.0) / sharers[key],
                    decode_seconds=decode_seconds * seq.n_generated / total_tokens,
                    token_ends=tuple(seq.token_ends),
                    finish_reason="length" if seq.finish == "length" else "stop",
                    prompt_tokens_evaluated=evaluated,
                )
            )
        return out

    def _eval_prompt(
        self,
        tokens: Sequence[int],
        seq_id: int,
        start: int = 0,
        cancel: CancelTokenLike | None = None,
    ) -> None:
        """Evaluate tokens[start:] at their positions; logits for the last one only.

        The cancel token is checked before each chunk of PROMPT_BATCH tokens and,
        through llama.cpp's abort callback, between the nodes of a chunk's graph,
        so a cancelled request stops inside the chunk it is evaluating.
        """
        lib = self._lib
        b = self._batch
        if cancel is not None:
            self._abort_token = cancel
            lib.llama_set_abort_callback(self._ctx, self._abort_cb, None)
        try:
            for offset in range(start, len(tokens), PROMPT_BATCH):
                _check(cancel)
                chunk = tokens[offset : offset + PROMPT_BATCH]
                b.n_tokens = len(chunk)
                for i, tok in enumerate(chunk):
                    b.token[i] = tok
                    b.pos[i] = offset + i
                    b.n_seq_id[i] = 1
                    b.seq_id[i][0] = seq_id
                    b.logits[i] = 0
                if offset + len(chunk) == len(tokens):
                    b.logits[len(chunk) - 1] = 1
                rc = lib.llama_decode(self._ctx, b)
                if rc == 2:  # aborted by the callback: the request was cancelled
                    _check(cancel)
                if rc != 0:
                    raise BackendError(f"{self.name}: prompt evaluation failed ({rc})")
        finally:
            if cancel is not None:
                global _aborting
                lib.llama_set_abort_callback(self._ctx, lib.ggml_abort_callback(), None)
                self._abort_token = None
                _aborting = False

    def _should_abort(self, _data: object) -> bool:
        global _aborting
        token = self._abort_token
        if token is not None and token.cancelled:
            _aborting = True
            return True
        return False

    def _fill_batch(self, live: list[_Seq]) -> None:
        b = self._batch
        b.n_tokens = len(live)
        for i, seq in enumerate(live):
            b.token[i] = seq.last_token
            b.pos[i] = seq.pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq.seq_id
            b.logits[i] = 1

    def _accept(self, seq: _Seq, token: int) -> None:
        """Append a sampled token to a sequence and decide whether it ends there."""
        lib = self._lib
        seq.last_token = token
        if lib.llama_vocab_is_eog(self._vocab, token):
            seq.token_ends.append(len(seq.text))
            seq.n_generated += 1
            self._finish(seq, "stop")
            return
        piece = seq.decoder.decode(self._piece(token))
        line_start = not seq.text or seq.text.endswith("\n")
        seq.text += piece
        seq.n_generated += 1
        seq.token_ends.append(len(seq.text))
        # A rule can only cut where a line ends, a fence begins or a line begins.
        if "\n" in piece or "`" in piece or line_start:
            end = stop_at(seq.prefix, seq.stop, seq.text)
            if end is not None:
                seq.text = seq.text[:end]
                n = len(seq.text)
                seq.token_ends = [min(e, n) for e in seq.token_ends]
                self._finish(seq, "stop")
                return
        if seq.n_generated >= seq.max_tokens:
            self._finish(seq, "length")

    def _finish(self, seq: _Seq, reason: str) -> None:
        seq.finish = reason

    def _make_sampler(self, spec: SampleSpec, j: int) -> Any:
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if spec.greedy:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(spec.temperature))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(spec.top_p, 1))
            seed = (spec.seed + j) & 0xFFFFFFFF
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
        return chain

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        lib = self._lib
        if getattr(self, "_batch", None) is not None:
            lib.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            lib.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            lib.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:  # models are big: free them even without close()
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _longest_shared_prefix(
    tokens: Sequence[int], evaluated: list[tuple[tuple[int, ...], int]]
) -> tuple[int, int]:
    """(length, sequence id) of the longest prefix of `tokens` already in the cache,
    keeping at least one token to evaluate (its logits start the sequence)."""
    best, source = 0, -1
    for other, seq_id in evaluated:
        n = shared_prefix(tokens, other)
        if n > best:
            best, source = n, seq_id
    return min(best, len(tokens) - 1), source


def _check(cancel: CancelTokenLike | None) -> None:
    if cancel is not None and cancel.cancelled:
        cancel.raise_if_cancelled()


def _chat_template(lib: Any, model: Any) -> Any:
    """The model's own chat template from the GGUF, compiled."""
    raw = lib.llama_model_chat_template(model, None)
    if not raw:
        raise ModelError("the GGUF file has no chat template (tokenizer.chat_template)")
    return compile_template(raw.decode("utf-8"))
