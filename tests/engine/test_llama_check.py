"""The child-process check that llama.cpp runs on this CPU, before any model loads.

The real check runs the real library on the real 0.5B. The failures use a real
child process that dies of a real signal: a stand-in `llama_cpp` package, put first
on PYTHONPATH, kills its process with SIGILL when imported, as a build with
instructions this CPU lacks does at the first model load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cascode.benchmarks.server_bench import served_plan
from cascode.engine.backends import llama_build, llama_check
from cascode.engine.errors import ModelError
from cascode.engine.models import EMBEDDED, is_verified, model_path

SMALL = EMBEDDED["qwen2.5-coder-0.5b-instruct-q4_k_m"]
STUB = 'def add(a, b):\n    """Return a + b."""\n'
DIES = "import os, signal\nos.kill(os.getpid(), signal.SIG{sig})\n"


@pytest.fixture
def small_model() -> Path:
    assert is_verified(SMALL), "the embedded 0.5B is not installed (./install.sh installs it)"
    return model_path(SMALL)


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CASCODE_CHECK_DIR", str(tmp_path / "checks"))
    monkeypatch.setattr(llama_check._cache, "verdicts", {})
    return tmp_path / "checks"


def _dying_llama(tmp_path: Path, sig: str = "ILL") -> Path:
    """A folder holding a `llama_cpp` package whose import dies of SIG<sig>."""
    root = tmp_path / f"sig{sig}"
    pkg = root / "llama_cpp"
    (pkg / "lib").mkdir(parents=True)
    (pkg / "__init__.py").write_text(DIES.format(sig=sig))
    (pkg / "lib" / "libllama.so").write_bytes(b"\x7fELF built for another CPU")
    return root


@pytest.mark.slow
def test_the_real_library_passes_on_this_cpu_and_the_verdict_is_cached(
    small_model: Path, fresh_cache: Path
) -> None:
    verdict = llama_check.check(small_model)
    assert verdict.ok, verdict.detail
    assert "evaluated 512 prompt tokens" in verdict.detail and not verdict.cached
    (saved,) = fresh_cache.glob("*.json")
    assert json.loads(saved.read_text())["ok"] is True
    # The same process asks again: answered from memory, no child.
    assert llama_check.check(small_model) is verdict
    # A new process (memory empty) reads it from disk.
    llama_check._cache.verdicts.clear()
    again = llama_check.check(small_model)
    assert again.ok and again.cached


def test_the_smallest_installed_model_is_the_one_checked(small_model: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.gguf"
    big.write_bytes(b"\0" * 4096)
    # The embedded 0.5B (~490 MB) is larger than this file, so the file is chosen...
    assert llama_check.smallest_model(big) == big
    # ...and without a hint, the smallest verified embedded model.
    assert llama_check.smallest_model() == small_model


def test_a_child_that_dies_of_a_signal_is_a_clear_failure(small_model: Path,
                                                          fresh_cache: Path) -> None:
    child = [sys.executable, "-c", DIES.format(sig="ILL")]
    verdict = llama_check.check(small_model, child=child)
    assert not verdict.ok
    line = verdict.detail
    assert "\n" not in line
    assert "died of SIGILL (illegal instruction)" in line
    assert "./install.sh --rebuild-llama" in line
    fits = llama_build.describe_cpu(llama_build.cmake_args(*llama_build.read_cpu()))
    assert f"this CPU fits: {fits}" in line
    # A stand-in child's verdict says nothing of the real build: nothing is kept.
    assert not fresh_cache.exists() and llama_check._cache.verdicts == {}
    segv = llama_check.check(small_model, child=[sys.executable, "-c", DIES.format(sig="SEGV")])
    assert "died of SIGSEGV (segmentation fault)" in segv.detail


def test_a_child_that_fails_without_a_signal_is_an_error_not_a_verdict(
    small_model: Path, fresh_cache: Path
) -> None:
    child = [sys.executable, "-c", "import sys; sys.exit('no memory for the model')"]
    with pytest.raises(ModelError, match="loading .* failed: no memory for the model"):
        llama_check.check(small_model, child=child)


def test_the_failure_line_names_what_the_build_needs_and_the_cpu_lacks(tmp_path: Path) -> None:
    from test_llama_build import AMD_EPYC_AVX2, INTEL_AVX512_AMX

    avx512_build = " ".join(llama_build.cmake_args("x86_64", INTEL_AVX512_AMX))
    line = llama_check.failure_line(
        "died of SIGILL (illegal instruction)", tmp_path / "m.gguf", "x86_64", AMD_EPYC_AVX2,
        {"cmake_args": avx512_build})
    assert "the build needs AVX-VNNI, AVX512, AVX512-VNNI" in line
    assert "this CPU has no AVX-512" in line
    assert "this CPU fits: SSE42, AVX, AVX2, BMI2, FMA, F16C" in line
    native = llama_check.failure_line(
        "died of SIGSEGV (segmentation fault)", tmp_path / "m.gguf", "x86_64", INTEL_AVX512_AMX,
        {"cmake_args": "-DLLAVA_BUILD=OFF"})
    assert "llama.cpp's native build (-march=native)" in native
    assert "reports AMX" in native
    unknown = llama_check.failure_line("died of SIGILL", tmp_path / "m.gguf", "x86_64",
                                       AMD_EPYC_AVX2, None)
    assert "flags are unknown" in unknown


def _cli(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cascode", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_cli_stops_with_one_clear_line_when_the_build_cannot_run(
    small_model: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(_dying_llama(tmp_path)),
           "CASCODE_CHECK_DIR": str(tmp_path / "checks")}
    # The members in this process: the binding is what cannot run.
    plan = served_plan(tmp_path, model_server=False)
    out = _cli(["complete", "--plan-file", str(plan)], env, STUB)
    assert out.returncode == 1, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("cascode: error: llama.cpp cannot run on this CPU")
    assert "died of SIGILL" in lines[0] and "./install.sh --rebuild-llama" in lines[0]
    assert out.stdout == ""
    # The verdict was cached for that (stand-in) library: doctor reports it without a child.
    doctor = _cli(["doctor", "--backend", "--json"], env)
    assert doctor.returncode == 1
    backend = json.loads(doctor.stdout)["backend"]
    assert not backend["ok"] and "died of SIGILL" in backend["verdict"]


@pytest.mark.slow
def test_doctor_shows_the_backend_verdict_next_to_the_sandbox(small_model: Path,
                                                              tmp_path: Path) -> None:
    env = {**os.environ, "CASCODE_CHECK_DIR": str(tmp_path / "checks")}
    out = _cli(["doctor", "--json"], env)
    report = json.loads(out.stdout)
    assert report["auto"] is not None and out.returncode == 0, out.stderr
    backend = report["backend"]
    assert backend["ok"] is True, backend
    assert backend["verdict"].startswith("ok: loaded qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    assert backend["built_for"] == llama_build.describe_cpu(
        llama_build.cmake_args(*llama_build.read_cpu()))
    table = _cli(["doctor"], env)
    assert "cascode sandbox doctor" in table.stdout
    assert "cascode model backend doctor" in table.stdout
    assert "cached verdict" in table.stdout  # the JSON run above checked and cached it

