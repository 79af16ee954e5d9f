"""The chat template read from a GGUF file's metadata, without llama.cpp.

A model server's backend reads it to render prompts exactly as the in-process backend
does; the reader walks the metadata over a mapping of the file. Checked against files
written here (every kind of value in front of the template, the errors), and against
llama.cpp's own reading of the embedded models.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from cascode.engine.backends.openai import gguf_chat_template
from cascode.engine.errors import ModelError

from ..conftest import need_model, need_module

MODEL_05B = "embedded:qwen2.5-coder-0.5b-instruct-q4_k_m"
MODEL_15B = "embedded:qwen2.5-coder-1.5b-instruct-q4_k_m"


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _gguf(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A GGUF v3 header: no tensors, `entries` as (key, value kind, encoded value)."""
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(entries))
    for key, kind, value in entries:
        out += _string(key) + struct.pack("<I", kind) + value
    return out


TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
# Every kind of value a reader must pass before the template: scalars of each size,
# a string, arrays of fixed-size items, of strings (the vocabulary) and of arrays.
BEFORE = [
    ("general.architecture", 8, _string("qwen2")),
    ("u8", 0, struct.pack("<B", 7)),
    ("i16", 3, struct.pack("<h", -2)),
    ("u32", 4, struct.pack("<I", 9)),
    ("f32", 6, struct.pack("<f", 0.5)),
    ("flag", 7, struct.pack("<?", True)),
    ("u64", 10, struct.pack("<Q", 1 << 40)),
    ("f64", 12, struct.pack("<d", 2.5)),
    ("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, 3) + struct.pack("<3f", 0, 1, 2)),
    ("tokenizer.ggml.tokens", 9,
     struct.pack("<IQ", 8, 4) + b"".join(_string(t) for t in ["a", "bc", "", "tokenizer"])),
    ("nested", 9, struct.pack("<IQ", 9, 2)
     + struct.pack("<IQ", 4, 2) + struct.pack("<2I", 1, 2)
     + struct.pack("<IQ", 8, 1) + _string("x")),
]


def test_the_template_after_every_kind_of_value(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(_gguf([*BEFORE, ("tokenizer.chat_template", 8, _string(TEMPLATE)),
                            ("after", 4, struct.pack("<I", 1))]))
    assert gguf_chat_template(path) == TEMPLATE


@pytest.mark.parametrize("content, why", [
    (_gguf(BEFORE), "has no chat template"),
    (b"GGML" + b"\0" * 40, "not a GGUF file"),
    (_gguf([*BEFORE, ("tokenizer.chat_template", 8, _string(TEMPLATE))])[:200],
     "a damaged GGUF header"),
    (b"", "a damaged GGUF header"),
])
def test_a_file_without_a_readable_template_names_the_file(tmp_path: Path, content: bytes,
                                                           why: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=why) as e:
        gguf_chat_template(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("spec", [MODEL_05B, MODEL_15B])
def test_the_embedded_models_template_is_the_one_llama_cpp_reads(spec: str) -> None:
    path = need_model(spec)
    llama_cpp = need_module("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        assert gguf_chat_template(path) == llm.metadata["tokenizer.chat_template"]
    finally:
        llm.close()
