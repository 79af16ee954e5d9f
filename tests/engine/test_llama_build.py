"""The llama.cpp build fits the CPU: flags from recorded CPU descriptions, the venv
stamp, and install.sh forcing the right build into a venv made for another CPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from cascode.engine.backends import llama_build

ROOT = Path(__file__).resolve().parents[2]
BUILD_PY = ROOT / "engine" / "backends" / "llama_build.py"

# /proc/cpuinfo "flags" lines as these machines report them.
INTEL_AVX512_AMX = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology cpuid pni "
    "pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand "
    "hypervisor lahf_lm abm 3dnowprefetch bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq "
    "rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt "
    "xsavec xgetbv1 xsaves avx_vnni avx512_bf16 arat avx512vbmi umip pku ospke waitpkg "
    "avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid "
    "movdiri movdir64b serialize tsxldtrk amx_bf16 avx512_fp16 amx_tile amx_int8"
).split()
AMD_EPYC_AVX2 = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm rep_good nopl cpuid "
    "extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 x2apic movbe popcnt "
    "aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse "
    "3dnowprefetch osvw topoext invpcid_single ssbd ibrs ibpb stibp vmmcall fsgsbase bmi1 avx2 "
    "smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 "
    "clzero xsaveerptr rdpru wbnoinvd arat npt nrip_save umip rdpid"
).split()
# An older x86-64 (Westmere-class): SSE4.2, no AVX at all.
OLD_X86_SSE42 = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ht syscall nx rdtscp lm constant_tsc pni pclmulqdq ssse3 cx16 sse4_1 sse4_2 "
    "popcnt aes lahf_lm"
).split()
# Sandy Bridge: AVX but no AVX2/FMA.
AVX_NO_AVX2 = OLD_X86_SSE42 + ["avx", "xsave"]
ARM64_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid".split()


def _on(args: list[str]) -> set[str]:
    return {a[2:-3] for a in args if a.endswith("=ON")}


def _off(args: list[str]) -> set[str]:
    return {a[2:-4] for a in args if a.endswith("=OFF")}


def test_intel_with_avx512_and_amx_gets_avx512_and_never_amx() -> None:
    args = llama_build.cmake_args("x86_64", INTEL_AVX512_AMX)
    assert "-DGGML_NATIVE=OFF" in args  # never -march=native: it picks the blocked AMX
    assert {"GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_AVX512",
            "GGML_AVX512_VNNI", "GGML_AVX_VNNI"} <= _on(args)
    assert {"GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16"} <= _off(args)
    assert "-DLLAVA_BUILD=OFF" in args


def test_amd_epyc_gets_avx2_fma_f16c_and_no_avx512() -> None:
    args = llama_build.cmake_args("x86_64", AMD_EPYC_AVX2)
    assert {"GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_BMI2"} <= _on(args)
    assert not any("AVX512" in o or "AMX" in o or "VNNI" in o for o in _on(args))
    assert {"GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AMX_TILE"} <= _off(args)
    assert llama_build.describe_cpu(args) == "SSE42, AVX, AVX2, BMI2, FMA, F16C"


@pytest.mark.parametrize("flags", [OLD_X86_SSE42, AVX_NO_AVX2], ids=["sse4.2", "avx-only"])
def test_x86_without_avx2_gets_a_plain_x86_64_build(flags: list[str]) -> None:
    args = llama_build.cmake_args("x86_64", flags)
    assert _on(args) == {"GGML_SSE42"}
    assert {"GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_AVX512"} <= _off(args)
    assert "-DGGML_NATIVE=OFF" in args


def test_arm64_keeps_llama_cpp_defaults() -> None:
    for machine in ("aarch64", "arm64"):
        args = llama_build.cmake_args(machine, ARM64_FEATURES)
        assert args == ["-DLLAVA_BUILD=OFF"]
        assert llama_build.describe_cpu(args) == "the architecture's defaults"


def test_macos_sysctl_names_map_to_cpuinfo_names() -> None:
    mac = "FPU SSE SSE2 SSE3 SSE4.1 SSE4.2 AVX1.0 F16C FMA AVX2 BMI2".split()
    args = llama_build.cmake_args("x86_64", mac)
    assert {"GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_SSE42"} <= _on(args)


def test_this_machine_gets_the_flags_of_its_own_cpu() -> None:
    machine, flags = llama_build.read_cpu()
    assert flags, "no CPU flags read from /proc/cpuinfo"
    args = llama_build.cmake_args(machine, flags)
    if machine in llama_build.X86_MACHINES:
        assert ("GGML_AVX512" in _on(args)) == ("avx512f" in flags and "avx512bw" in flags)
        assert ("GGML_AVX2" in _on(args)) == ("avx2" in flags)
        assert not any("AMX" in o for o in _on(args))
    # install.sh runs the file with the system Python, before anything is installed.
    out = subprocess.run(["python3", str(BUILD_PY), "cmake-args"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.split() == args


def test_the_installed_venv_is_stamped_for_this_cpu() -> None:
    """What install.sh built into this environment is what this CPU needs."""
    stamp = Path(sys.prefix) / llama_build.STAMP_NAME
    assert stamp.exists(), f"{stamp} missing: this environment was not installed by install.sh"
    machine, flags = llama_build.read_cpu()
    from importlib import metadata

    wanted = llama_build.stamp_for(" ".join(llama_build.cmake_args(machine, flags)), machine,
                                   flags, metadata.version("llama-cpp-python"))
    assert llama_build.stamp_matches(Path(sys.prefix), wanted)


def test_stamp_matches_only_the_same_args_cpu_and_version(tmp_path: Path) -> None:
    args = " ".join(llama_build.cmake_args("x86_64", AMD_EPYC_AVX2))
    amd = llama_build.stamp_for(args, "x86_64", AMD_EPYC_AVX2, "0.3.36")
    assert not llama_build.stamp_matches(tmp_path, amd)  # no stamp: an older install.sh
    llama_build.write_stamp(tmp_path, amd)
    assert llama_build.stamp_matches(tmp_path, amd)
    intel = llama_build.stamp_for(args, "x86_64", INTEL_AVX512_AMX, "0.3.36")
    assert not llama_build.stamp_matches(tmp_path, intel)  # same flags, another CPU
    other_args = llama_build.stamp_for(args + " -DGGML_AVX512=ON", "x86_64", AMD_EPYC_AVX2,
                                       "0.3.36")
    assert not llama_build.stamp_matches(tmp_path, other_args)
    assert not llama_build.stamp_matches(
        tmp_path, llama_build.stamp_for(args, "x86_64", AMD_EPYC_AVX2, "0.3.37"))
    (tmp_path / llama_build.STAMP_NAME).write_text("{not json")
    assert not llama_build.stamp_matches(tmp_path, amd)


FAKE_TOOL = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_LOG"
exit 0
"""
# cmake as install.sh's server build calls it: configure logs, `--build DIR` leaves
# DIR/bin/llama-server.
FAKE_CMAKE = """#!/bin/sh
echo "cmake $*" >> "$FAKE_LOG"
if [ "$1" = "--version" ]; then echo "cmake version 3.28.0"; fi
if [ "$1" = "--build" ]; then
  mkdir -p "$2/bin" && printf '#!/bin/sh\\necho built\\n' > "$2/bin/llama-server"
  chmod +x "$2/bin/llama-server"
fi
exit 0
"""


def _fake_checkout(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """install.sh and llama_build.py in a folder whose venv's python and cascode only
    log their arguments, with a cached wheel: runs the script's real logic in seconds."""
    repo = tmp_path / "repo"
    (repo / "engine" / "backends").mkdir(parents=True)
    shutil.copy(ROOT / "install.sh", repo / "install.sh")
    shutil.copy(BUILD_PY, repo / "engine" / "backends" / "llama_build.py")
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    bin_ = repo / ".venv" / "bin"
    bin_.mkdir(parents=True)
    for tool in ("python", "cascode"):
        (bin_ / tool).write_text(FAKE_TOOL)
        (bin_ / tool).chmod(0o755)
    cache = tmp_path / "cache"
    args = " ".join(llama_build.cmake_args(*llama_build.read_cpu()))
    import hashlib

    key = hashlib.sha256(f"0.3.36 {args}".encode()).hexdigest()[:12]
    wheels = cache / f"wheels-{key}"
    wheels.mkdir(parents=True)
    (wheels / "llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl").write_bytes(b"")
    # A llama-server built before, and the source a rebuild unpacks.
    server = cache / f"llama-server-{key}"
    server.mkdir()
    (server / "llama-server").write_text("#!/bin/sh\necho cached\n")
    (server / "llama-server").chmod(0o755)
    vendored = tmp_path / "src" / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp"
    vendored.mkdir(parents=True)
    (vendored / "CMakeLists.txt").write_text("")
    (cache / "sdist").mkdir()
    with tarfile.open(cache / "sdist" / "llama_cpp_python-0.3.36.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "llama_cpp_python-0.3.36", "llama_cpp_python-0.3.36")
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "cmake").write_text(FAKE_CMAKE)
    (tools / "make").write_text(FAKE_TOOL)
    for tool in ("cmake", "make"):
        (tools / tool).chmod(0o755)
    log = tmp_path / "log"
    env = {**os.environ, "CASCODE_BUILD_CACHE": str(cache), "CASCODE_WITH_TORCH": "0",
           "FAKE_LOG": str(log), "PATH": f"{tools}:{os.environ['PATH']}"}
    env.pop("CMAKE_ARGS", None)
    return repo, log, env


def _run_install(repo: Path, log: Path, env: dict[str, str], *args: str) -> list[str]:
    log.write_text("")
    subprocess.run(["bash", str(repo / "install.sh"), *args], cwd=repo, env=env, check=True,
                   capture_output=True, text=True, timeout=120)
    return log.read_text().splitlines()


def test_install_forces_this_cpus_build_into_a_venv_built_for_another(tmp_path: Path) -> None:
    repo, log, env = _fake_checkout(tmp_path)
    # A venv stamped by an install on another CPU (or with AVX-512 flags).
    stale = llama_build.stamp_for("-DGGML_NATIVE=OFF -DGGML_AVX512=ON", "x86_64",
                                  INTEL_AVX512_AMX, "0.3.36")
    llama_build.write_stamp(repo / ".venv", stale)
    calls = _run_install(repo, log, env)
    forced = [c for c in calls if "--force-reinstall" in c]
    assert len(forced) == 1 and "llama_cpp_python-0.3.36-" in forced[0], calls
    machine, flags = llama_build.read_cpu()
    args = " ".join(llama_build.cmake_args(machine, flags))
    assert llama_build.stamp_matches(repo / ".venv",
                                     llama_build.stamp_for(args, machine, flags, "0.3.36"))
    # Stamped right: the next install keeps what is there.
    again = _run_install(repo, log, env)
    assert not [c for c in again if "--force-reinstall" in c]
    # An unstamped venv (made by an older install.sh) is stale too.
    (repo / ".venv" / llama_build.STAMP_NAME).unlink()
    assert [c for c in _run_install(repo, log, env) if "--force-reinstall" in c]
    # The cached llama-server is installed, and no install so far built it again.
    server = repo / ".venv" / "bin" / "cascode-llama-server"
    assert "cached" in server.read_text()
    assert not [c for c in calls + again if c.startswith("cmake")]
    # --rebuild-llama builds the wheel and the server again and forces them in.
    calls = _run_install(repo, log, env, "--rebuild-llama")
    assert any(c.startswith("python -m pip wheel ") for c in calls), calls
    assert any("--force-reinstall" in c for c in calls), calls
    assert any(c.startswith("cmake --build ") and "--target llama-server" in c
               for c in calls), calls
    assert "built" in server.read_text()


def test_install_rejects_an_unknown_option(tmp_path: Path) -> None:
    repo, _log, env = _fake_checkout(tmp_path)
    out = subprocess.run(["bash", str(repo / "install.sh"), "--fast"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "unknown option --fast" in out.stderr
