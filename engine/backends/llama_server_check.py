"""Does the installed llama-server run on this CPU? Asked once, in a child process.

The same question as `llama_check` asks of the Python binding, for the model
server's binary (`cascode-llama-server`, built by install.sh from the same
llama.cpp with the same flags): a build with instructions this CPU lacks dies
of SIGILL or SIGSEGV at its first batch. The child here is the server itself:
it loads the smallest installed model on a free loopback port, evaluates one
512-token prompt batch and decodes one token, and is stopped. Dying of a
signal is a failure with one clear line (what the build needs, what this CPU
lacks, `./install.sh --rebuild-llama`). The verdict is cached beside the
binding's (`llama_check.cache_dir()`), keyed by the sha256 of the binary and
the CPU's flags.

    python -m cascode.engine.backends.llama_server_check [--recheck]
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import BackendError, ModelError
from .llama_build import cpu_key, read_cpu
from .llama_check import (
    CHECK_PROMPT_TOKENS,
    CHECK_TIMEOUT_S,
    Verdict,
    VerdictCache,
    build_stamp,
    cache_dir,
    died_of,
    failure_line,
    smallest_model,
)

log = logging.getLogger(__name__)

_CHECK_VERSION = 1
_cache = VerdictCache("the model server check", log)


def check_key(binary: Path, machine: str, cpu_flags: frozenset[str]) -> str:
    h = hashlib.sha256(f"server v{_CHECK_VERSION}\n".encode())
    with open(binary, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    h.update(cpu_key(machine, cpu_flags).encode())
    return h.hexdigest()[:32]


def check(binary: Path | None = None, model: Path | None = None, *, use_cache: bool = True,
          timeout: float = CHECK_TIMEOUT_S) -> Verdict:
    """The verdict for the model server's binary on this CPU, running it if needed."""
    from ..model_server import server_binary

    binary = binary or server_binary()
    target = smallest_model(model)
    if target is None:
        raise ModelError("no llama.cpp model is installed to check the model server with: "
                         "cascode models install")
    machine, flags = read_cpu()
    key = check_key(binary, machine, flags)
    return _cache.get(key, cache_dir() / f"server-{key}.json",
                      lambda: _run(binary, target, machine, flags, timeout), use_cache)


def ensure_server_runs(binary: Path | None = None, model: Path | None = None) -> Verdict:
    """Raise ModelError with the clear line unless the model server runs here."""
    verdict = check(binary, model)
    if not verdict.ok:
        raise ModelError(verdict.detail)
    return verdict


def _run(binary: Path, model: Path, machine: str, flags: frozenset[str],
         timeout: float) -> Verdict:
    from ..model_server import _LISTENING, _child_env, _tail, http_get, http_post

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cascode-server-check-") as tmp:
        key = Path(tmp) / "key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"check\n")
        os.close(fd)
        log_path = Path(tmp) / "log"
        n = CHECK_PROMPT_TOKENS
        cmd = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", "0",
               "--api-key-file", str(key), "-c", str(2 * n), "-b", str(n), "-ub", str(n),
               "-np", "1", "--no-warmup"]
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=_child_env())
        try:
            deadline = time.monotonic() + timeout
            port = 0
            answered = False
            while time.monotonic() < deadline and proc.poll() is None:
                if not port:
                    match = _LISTENING.search(_tail(log_path, 64_000))
                    port = int(match.group(2)) if match else 0
                elif http_get("127.0.0.1", port, "/health", "check", timeout=2)[0] == 200:
                    tokens = [100 + (i * 7919) % 29_900 for i in range(n)]
                    status, _ = http_post("127.0.0.1", port, "/completion", "check",
                                          {"prompt": tokens, "n_predict": 1,
                                           "cache_prompt": False}, timeout=timeout)
                    answered = status == 200
                    break
                time.sleep(0.1)
            died = proc.poll()
            if died is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            else:
                # It may be dying of the request: let the signal be seen.
                proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        seconds = round(time.perf_counter() - t0, 2)
        code = proc.returncode
        if died is not None and code < 0:
            how = "in the model server " + died_of(code)
            return Verdict(False, failure_line(how, model, machine, flags, build_stamp()),
                           str(model), seconds)
        if not answered:
            tail = [line for line in _tail(log_path, 4000).splitlines() if line.strip()]
            raise BackendError(
                f"model server check: {binary.name} did not answer a {n}-token prompt "
                f"on {model.name} (exit status {code}): {tail[-1] if tail else 'no output'}")
    return Verdict(True, f"{binary.name} loaded {model.name}, evaluated {n} prompt tokens, "
                         "decoded one", str(model), seconds)


def _main(argv: list[str]) -> int:
    if argv not in ([], ["--recheck"]):
        print("usage: python -m cascode.engine.backends.llama_server_check [--recheck]",
              file=sys.stderr)
        return 2
    try:
        verdict = check(use_cache=not argv)
    except (ModelError, BackendError) as e:
        print(f"model server: {e}", file=sys.stderr)
        return 1
    if not verdict.ok:
        print(f"model server: {verdict.detail}", file=sys.stderr)
        return 1
    cached = " (cached verdict)" if verdict.cached else f" in {verdict.seconds:.1f} s"
    print(f"model server: ok: {verdict.detail}{cached}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
