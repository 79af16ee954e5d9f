"""Does the installed llama.cpp run on this CPU? Asked once, in a child process.

A llama.cpp build that uses instructions this CPU lacks (AVX-512 on an AMD EPYC)
or blocks (AMX on the Intel VMs) kills the process with SIGILL or SIGSEGV, which
no `try` catches. So before the first model load in a process, a child process
loads the smallest installed llama.cpp model, evaluates one full prompt batch
(512 tokens: a single decoded token may skip the batched kernels that crash) and
decodes one token. Dying of a signal there is a failure with one clear line:
what the build was compiled for, what this CPU lacks, and the command that
rebuilds it. The verdict is cached on disk, keyed by the sha256 of the llama.cpp
library files and the CPU's flags, so a process pays for the check only after a
rebuild or on a new machine.

The parent never imports `llama_cpp` before the verdict is in: the library files
are found with `importlib.util.find_spec`, which runs nothing.

    python -m cascode.engine.backends.llama_check MODEL.gguf   # the child's work
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ModelError
from .llama_build import STAMP_NAME, X86_MACHINES, cmake_args, cpu_key, describe_cpu, read_cpu

log = logging.getLogger(__name__)

CHECK_PROMPT_TOKENS = 512  # one full batch: the kernels a long prompt runs
CHECK_TIMEOUT_S = 300.0
_CHECK_VERSION = 1  # bump when what the child does changes


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str  # the clear line on failure; what was run on success
    model: str = ""
    seconds: float = 0.0
    cached: bool = False


class VerdictCache:
    """A check's verdicts by key: this process's, else the ones saved as JSON files.

    One lock per check: two threads asking at once run it once. A read-only cache
    costs a check per process, nothing more: it is logged, naming `what`.
    """

    def __init__(self, what: str, logger: logging.Logger) -> None:
        self.what = what
        self.logger = logger
        self.verdicts: dict[str, Verdict] = {}
        self.lock = threading.Lock()

    def get(self, key: str, path: Path, run: Callable[[], Verdict], use_cache: bool) -> Verdict:
        """The verdict for `key` (saved at `path`), else `run()`'s, which is then kept in
        both. `use_cache=False` runs it regardless."""
        with self.lock:
            if use_cache and key in self.verdicts:
                return self.verdicts[key]
            if use_cache:
                try:
                    data = json.loads(path.read_text())
                    verdict = Verdict(**{**data, "cached": True})
                except (OSError, ValueError, TypeError):
                    pass
                else:
                    self.verdicts[key] = verdict
                    return verdict
            verdict = run()
            self.verdicts[key] = verdict
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(asdict(verdict)))
                os.replace(tmp, path)
            except OSError as e:
                self.logger.warning("could not cache %s in %s: %s", self.what, path, e)
            return verdict


_cache = VerdictCache("the llama.cpp check", log)


def library_dir() -> Path:
    """The folder of the installed llama_cpp package, found without importing it."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "llama-cpp-python is not installed: ./install.sh (or pip install 'cascode[llama]' "
            "with the build flags in README)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def library_files(pkg: Path) -> list[Path]:
    """The native libraries llama_cpp loads (libllama, libggml*, ...), sorted."""
    files = [
        p for p in pkg.rglob("*")
        if p.is_file() and (p.suffix in (".so", ".dylib", ".dll") or ".so." in p.name)
    ]
    return sorted(files)


def check_key(files: Iterable[Path], machine: str, cpu_flags: Iterable[str]) -> str:
    """What a verdict is valid for: these exact library files on a CPU with these flags."""
    h = hashlib.sha256(f"v{_CHECK_VERSION}\n".encode())
    for f in files:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    h.update(cpu_key(machine, cpu_flags).encode())
    return h.hexdigest()[:32]


def cache_dir() -> Path:
    env = os.environ.get("CASCODE_CHECK_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("cascode")) / "llama-check"


def smallest_model(hint: Path | None = None) -> Path | None:
    """The smallest installed llama.cpp model: the verified embedded ones and `hint`."""
    from ..models import EMBEDDED, is_verified, model_path

    found = [model_path(m) for m in EMBEDDED.values() if is_verified(m)]
    if hint is not None and hint.is_file():
        found.append(hint)
    return min(found, key=lambda p: (p.stat().st_size, str(p))) if found else None


def build_stamp() -> dict[str, str] | None:
    """What install.sh recorded of the llama.cpp build in this environment, if anything."""
    try:
        data = json.loads((Path(sys.prefix) / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def failure_line(
    how: str,
    model: Path,
    machine: str,
    cpu_flags: Iterable[str],
    stamp: dict[str, str] | None,
) -> str:
    """One line: what died, what the build needs that this CPU lacks, how to rebuild."""
    flags = frozenset(cpu_flags)
    fits = cmake_args(machine, flags)
    on_here = {a for a in fits if a.endswith("=ON")}
    if stamp and stamp.get("cmake_args"):
        built = stamp["cmake_args"].split()
        extra = [a for a in built if a.endswith("=ON") and a not in on_here
                 and a.startswith("-DGGML_")]
        if "-DGGML_NATIVE=ON" in built or not any(a.startswith("-DGGML_NATIVE") for a in built):
            needs = "llama.cpp's native build (-march=native)"
        elif extra:
            needs = describe_cpu(extra)
        else:
            needs = f"only {describe_cpu(built)}"
        what = f"the build needs {needs}"
    else:
        what = "the build's flags are unknown (it was not built by install.sh)"
    lacks = []
    if "amx_tile" in flags:
        lacks.append("this CPU reports AMX, which virtual machines often block")
    if machine.lower() in X86_MACHINES and "avx512f" not in flags:
        lacks.append("this CPU has no AVX-512")
    cpu = f"; {', '.join(lacks)}" if lacks else ""
    return (
        f"llama.cpp cannot run on this CPU: loading {model.name} and evaluating a prompt "
        f"{how}; {what}{cpu} (this CPU fits: {describe_cpu(fits)}). "
        f"Rebuild it for this CPU: ./install.sh --rebuild-llama"
    )


def check(
    model: Path,
    *,
    child: list[str] | None = None,
    timeout: float = CHECK_TIMEOUT_S,
    use_cache: bool = True,
) -> Verdict:
    """The verdict for the installed llama.cpp on this CPU, running the child if needed.

    `child` replaces the child's command line (tests make it die of a signal).
    """
    machine, flags = read_cpu()
    if child is not None:  # a stand-in child: its verdict says nothing of this build
        return _run_child(model, machine, flags, child, timeout)
    pkg = library_dir()
    key = check_key(library_files(pkg), machine, flags)
    return _cache.get(key, cache_dir() / f"{key}.json",
                      lambda: _run_child(model, machine, flags, None, timeout), use_cache)


def died_of(returncode: int) -> str:
    """`died of SIGILL (illegal instruction)`: how a process killed by a signal
    (a negative return code, as subprocess gives it) died."""
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    meaning = {"SIGILL": "illegal instruction", "SIGSEGV": "segmentation fault",
               "SIGBUS": "bus error"}.get(name, "")
    return f"died of {name}" + (f" ({meaning})" if meaning else "")


def _run_child(
    model: Path,
    machine: str,
    flags: frozenset[str],
    child: list[str] | None,
    timeout: float,
) -> Verdict:
    cmd = child or [sys.executable, "-m", "cascode.engine.backends.llama_check", str(model)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise ModelError(
            f"llama.cpp check: loading {model.name} and evaluating a {CHECK_PROMPT_TOKENS}-token "
            f"prompt did not finish in {timeout:.0f} s; is the machine overloaded?"
        ) from None
    seconds = round(time.perf_counter() - t0, 2)
    if proc.returncode < 0:
        line = failure_line(died_of(proc.returncode), model, machine, flags, build_stamp())
        return Verdict(False, line, str(model), seconds)
    if proc.returncode != 0:
        # Not a CPU verdict (a bad file, no memory): said, never cached.
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(f"llama.cpp check: loading {model.name} failed: {tail}")
    return Verdict(
        True,
        f"loaded {model.name}, evaluated {CHECK_PROMPT_TOKENS} prompt tokens, decoded one",
        str(model),
        seconds,
    )


def ensure_runs(model: Path) -> Verdict:
    """Raise ModelError with the clear line unless llama.cpp runs here (checked once)."""
    target = smallest_model(model) or model
    verdict = check(target)
    if not verdict.ok:
        raise ModelError(verdict.detail)
    return verdict


# ---------------------------------------------------------------- the child


def _child(model: str) -> int:
    import ctypes

    import llama_cpp as lib

    def quiet(level: int, text: bytes, user: object) -> None:
        return None

    callback = lib.llama_log_callback(quiet)
    lib.llama_log_set(callback, ctypes.c_void_p(0))
    lib.llama_backend_init()
    mparams = lib.llama_model_default_params()
    m = lib.llama_model_load_from_file(model.encode(), mparams)
    if not m:
        print(f"llama.cpp could not load {model}", file=sys.stderr)
        return 1
    n = CHECK_PROMPT_TOKENS
    cparams = lib.llama_context_default_params()
    cparams.n_ctx = 2 * n
    cparams.n_batch = n
    cparams.n_ubatch = n
    threads = max(1, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else 1
    cparams.n_threads = threads
    cparams.n_threads_batch = threads
    ctx = lib.llama_init_from_model(m, cparams)
    if not ctx:
        print("llama.cpp could not create a context", file=sys.stderr)
        return 1
    vocab = lib.llama_model_get_vocab(m)
    n_vocab = lib.llama_vocab_n_tokens(vocab)
    batch = lib.llama_batch_init(n, 0, 1)
    span = max(1, min(n_vocab, 30000) - 100)
    for i in range(n):
        batch.token[i] = 100 + (i * 7919) % span
        batch.pos[i] = i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = 0
    batch.logits[n - 1] = 1
    batch.n_tokens = n
    if lib.llama_decode(ctx, batch) != 0:
        print("prompt evaluation failed", file=sys.stderr)
        return 1
    logits = lib.llama_get_logits_ith(ctx, -1)
    best = max(range(n_vocab), key=lambda t: logits[t])
    batch.n_tokens = 1
    batch.token[0] = best
    batch.pos[0] = n
    batch.logits[0] = 1
    if lib.llama_decode(ctx, batch) != 0:
        print("decoding failed", file=sys.stderr)
        return 1
    lib.llama_batch_free(batch)
    lib.llama_free(ctx)
    lib.llama_model_free(m)
    print(json.dumps({"ok": True, "next_token": best}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m cascode.engine.backends.llama_check MODEL.gguf", file=sys.stderr)
        sys.exit(2)
    sys.exit(_child(sys.argv[1]))
