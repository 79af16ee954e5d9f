"""Fixtures for the backend tests: a tiny Qwen2 checkpoint made from a config.

The checkpoint has random weights and a tokenizer whose vocabulary is mostly
whole lines of code (`assert f(1) == 1\\n`, a closing fence, ...), so that
even random sampling reaches the stop rules within a few tokens. It is saved
with `save_pretrained` and loaded back through the backend's real loading code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from ..conftest import need_module

# The tests import their helpers (backend_loopback) from this folder.
sys.path.insert(0, str(Path(__file__).parent))

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LINE_TOKENS = [
    "assert f(1) == 1\n",
    "assert f(2) == 4\n",
    "    assert f(3) == 9\n",
    "x = f(1)\n",
    "    return x * x\n",
    "```\n",
    "```",
    "# note\n",
    "\n",
    "é",  # two bytes in UTF-8: exercises the decoder's window
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _make_tiny_qwen2(path: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789 ()=,.:_`'\"[]+-*/<>#\n"))
    vocab = {tok: i for i, tok in enumerate(["<unk>", *chars, *LINE_TOKENS])}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token="<unk>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIALS[1:2],
    )
    tokenizer.chat_template = CHATML
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIALS})
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_module("transformers", "the transformers extra (install.sh)")
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    return _make_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


# ---------------------------------------------------------------------------
# llama-cpp-python's own OpenAI-compatible server, on a free loopback port


@pytest.fixture(scope="session")
def llama_server_05b(qwen05b_path: Path):  # type: ignore[no-untyped-def]
    """The embedded 0.5B served by llama_cpp.server; its base URL."""
    from backend_loopback import start_llama_server, stop_llama_server

    proc, url = start_llama_server(qwen05b_path)
    yield url
    stop_llama_server(proc)


@pytest.fixture(scope="session")
def qwen05b_transformers(qwen05b_path: Path):  # type: ignore[no-untyped-def]
    """The embedded 0.5B GGUF loaded through transformers' GGUF path (dequantized)."""
    need_module("transformers", "the transformers extra (install.sh)")
    need_module("gguf", "the transformers extra (install.sh)")
    from cascode.engine.backends.transformers import TransformersBackend

    backend = TransformersBackend.load(str(qwen05b_path), name="qwen-0.5b-tf", threads=2)
    yield backend
    backend.close()
