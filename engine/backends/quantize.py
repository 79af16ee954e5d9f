"""Quantization variants of a GGUF model, made with llama.cpp's own quantize API.

Two quantizations of one model are two family members (docs/method.md 1). The
embedded sources are Q4_K_M files, so variants are requantized downward (Q3_K_S,
Q2_K, ...): llama.cpp dequantizes each tensor and quantizes it again, which it
does only when asked (`allow_requantize`). A variant requantized from Q4_K_M is
a little worse than one quantized from the original 16-bit weights; whether it
earns a place in a family is for the calibration to say.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import ModelError

# A quantization tag at the end of a file name: q4_k_m, q3_k_s, q8_0, f16, bf16, iq2_xs...
_TAG = re.compile(r"(?i)([-_.])(i?q\d(_[a-z0-9]+)*|b?f16|f32)$")


def quantize(
    source: str | Path,
    qtype: str,
    *,
    out: str | Path | None = None,
    threads: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `source` (a GGUF path or `embedded:NAME`) requantized to `qtype`.

    `qtype` is a llama.cpp file type name such as Q3_K_S, Q2_K or Q4_0 (any
    case). The output goes to `out`, or beside the source with the source's
    quantization tag replaced (`...-q4_k_m.gguf` -> `...-q3_k_s.gguf`). Returns
    the output path. Raises ModelError for an unknown type, a missing source, an
    existing output (unless `overwrite`) or a failed quantization.
    """
    from ..models import resolve_model_file
    from .llama_cpp import _lib

    src = resolve_model_file(str(source))
    name = qtype.strip().upper()
    lib = _lib()
    ftype = getattr(lib, "LLAMA_FTYPE_MOSTLY_" + name, None)
    if ftype is None:
        known = sorted(n.removeprefix("LLAMA_FTYPE_MOSTLY_") for n in dir(lib)
                       if n.startswith("LLAMA_FTYPE_MOSTLY_"))
        raise ModelError(f"unknown quantization type {qtype!r} (one of {', '.join(known)})")
    dst = Path(out).expanduser() if out else variant_path(src, name)
    if dst.resolve() == src.resolve():
        raise ModelError(f"{dst}: the output would overwrite the source")
    if dst.exists() and not overwrite:
        raise ModelError(f"{dst} exists: remove it or choose another output (--out)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    params = lib.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True  # the sources are already quantized (Q4_K_M)
    params.nthread = threads or len(os.sched_getaffinity(0))
    tmp = dst.with_name(dst.name + ".part")
    rc = lib.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
    if rc != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise ModelError(f"llama.cpp could not quantize {src} to {name} (code {rc})")
    os.replace(tmp, dst)
    return dst


def variant_path(source: Path, qtype: str) -> Path:
    """Where a variant goes by default: beside the source, named by its type."""
    stem = source.stem
    tag = qtype.lower()
    new = _TAG.sub(lambda m: m.group(1) + tag, stem) if _TAG.search(stem) else f"{stem}-{tag}"
    return source.with_name(new + source.suffix)
