"""Which llama.cpp build fits this machine, and whether the installed one was made for it.

Standard library only: `install.sh` runs this file with the system Python before
the package (or anything else) is installed:

    python3 engine/backends/llama_build.py cmake-args         # GGML flags for this CPU
    python3 engine/backends/llama_build.py describe ARGS       # those flags in words
    python3 engine/backends/llama_build.py stamp-ok VENV ARGS VERSION  # 0: the venv's build fits
    python3 engine/backends/llama_build.py write-stamp VENV ARGS VERSION

The machines this project meets differ: Intel Xeons with AVX-512 whose virtual
machine reports AMX but blocks it (llama.cpp's default `-march=native` build
segfaults in its AMX kernel there) and AMD EPYCs with AVX2 and no AVX-512 (a
build with AVX-512 flags dies with SIGILL). So on x86-64 the build is never
native: each instruction-set flag is set from the CPU's own feature flags, the
AMX family is always off, and a CPU without AVX2 gets a plain x86-64 build.
arm64 keeps llama.cpp's defaults (its native build has no such trap).
llama.cpp's runtime dispatch (GGML_CPU_ALL_VARIANTS) is not used: it would pick
the AMX variant from cpuid on the Intel VMs, and it compiles every variant.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

STAMP_NAME = "cascode-llama-build.json"

# GGML option -> the CPU flags (as /proc/cpuinfo spells them) it needs, all of them.
# GGML_AVX512 compiles with -mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw.
X86_OPTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GGML_SSE42", ("sse4_2",)),
    ("GGML_AVX", ("avx",)),
    ("GGML_AVX2", ("avx2",)),
    ("GGML_BMI2", ("bmi2",)),
    ("GGML_FMA", ("fma",)),
    ("GGML_F16C", ("f16c",)),
    ("GGML_AVX_VNNI", ("avx_vnni",)),
    ("GGML_AVX512", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")),
    ("GGML_AVX512_VNNI", ("avx512f", "avx512_vnni")),
)
# The AMX family is reported by the Intel VMs and blocked by them: never compiled in.
# AVX512-VBMI and -BF16 kernels are not used by the quantised models cascode ships
# and were never run on these machines: left out rather than trusted.
X86_ALWAYS_OFF = (
    "GGML_AVX512_VBMI",
    "GGML_AVX512_BF16",
    "GGML_AMX_TILE",
    "GGML_AMX_INT8",
    "GGML_AMX_BF16",
)
# What every build leaves out: the multimodal library cascode does not use.
COMMON = ("-DLLAVA_BUILD=OFF",)

X86_MACHINES = {"x86_64", "amd64", "x86-64", "i386", "i686"}
ARM_MACHINES = {"aarch64", "arm64", "armv8l"}


def normalise_flags(flags: Iterable[str]) -> frozenset[str]:
    """CPU flags in /proc/cpuinfo's spelling (macOS's sysctl names mapped to it)."""
    mac = {
        "avx1.0": "avx",
        "sse4.2": "sse4_2",
        "avx512vnni": "avx512_vnni",
        "avx512bf16": "avx512_bf16",
        "avxvnni": "avx_vnni",
    }
    out = set()
    for f in flags:
        f = f.strip().lower()
        if f:
            out.add(mac.get(f, f))
    return frozenset(out)


def cmake_args(machine: str, cpu_flags: Iterable[str]) -> list[str]:
    """The CMAKE_ARGS for llama.cpp on a CPU of this architecture with these flags."""
    machine = machine.lower()
    flags = normalise_flags(cpu_flags)
    if machine in X86_MACHINES:
        args = ["-DGGML_NATIVE=OFF"]
        has_avx2 = {"avx", "avx2"} <= flags
        for option, needs in X86_OPTIONS:
            # Without AVX2 the build is plain x86-64 (SSE4.2 at most): the AVX-only
            # code paths of ggml are not what these machines are tested with.
            on = all(n in flags for n in needs) and (has_avx2 or option == "GGML_SSE42")
            args.append(f"-D{option}={'ON' if on else 'OFF'}")
        args += [f"-D{option}=OFF" for option in X86_ALWAYS_OFF]
        return args + list(COMMON)
    # arm64 (and anything else): llama.cpp's own defaults for the architecture.
    return list(COMMON)


def describe_cpu(args: Iterable[str]) -> str:
    """The instruction sets a build's CMAKE_ARGS compile in, in words."""
    on = [
        a[len("-DGGML_") : -len("=ON")]
        for a in args
        if a.startswith("-DGGML_") and a.endswith("=ON") and a != "-DGGML_NATIVE=ON"
    ]
    return ", ".join(x.replace("_", "-") for x in on) if on else "the architecture's defaults"


def read_cpu() -> tuple[str, frozenset[str]]:
    """(machine, CPU flags) of this machine."""
    machine = platform.machine().lower()
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            # x86 says "flags", arm64 says "Features".
            if key.strip().lower() in ("flags", "features"):
                flags.update(value.split())
                break
    elif sys.platform == "darwin":
        for key in ("machdep.cpu.features", "machdep.cpu.leaf7_features"):
            try:
                out = subprocess.run(
                    ["sysctl", "-n", key], capture_output=True, text=True, timeout=10
                ).stdout
            except (OSError, subprocess.SubprocessError):
                out = ""
            flags.update(out.split())
    return machine, normalise_flags(flags)


def cpu_key(machine: str, flags: Iterable[str]) -> str:
    """A short hash of the architecture and CPU flags: what a build verdict is valid for."""
    text = machine.lower() + ":" + " ".join(sorted(normalise_flags(flags)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stamp_for(args: str, machine: str, flags: Iterable[str], version: str) -> dict[str, str]:
    """What a venv's stamp records about the llama.cpp build installed in it."""
    return {
        "llama_cpp_python": version,
        "cmake_args": args,
        "machine": machine.lower(),
        "cpu": cpu_key(machine, flags),
    }


def stamp_matches(venv: Path, wanted: dict[str, str]) -> bool:
    """True when the venv's stamp says its llama.cpp was built with these args for this CPU."""
    try:
        have = json.loads((venv / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(have, dict) and have == wanted


def write_stamp(venv: Path, wanted: dict[str, str]) -> None:
    path = venv / STAMP_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(wanted, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _main(argv: list[str]) -> int:
    usage = ("usage: llama_build.py cmake-args | describe ARGS | "
             "stamp-ok VENV ARGS VERSION | write-stamp VENV ARGS VERSION")
    if not argv:
        print(usage, file=sys.stderr)
        return 2
    machine, flags = read_cpu()
    if argv[0] == "cmake-args" and len(argv) == 1:
        print(" ".join(cmake_args(machine, flags)))
        return 0
    if argv[0] == "describe" and len(argv) == 2:
        print(describe_cpu(argv[1].split()))
        return 0
    if argv[0] in ("stamp-ok", "write-stamp") and len(argv) == 4:
        wanted = stamp_for(argv[2], machine, flags, argv[3])
        if argv[0] == "write-stamp":
            write_stamp(Path(argv[1]), wanted)
            return 0
        return 0 if stamp_matches(Path(argv[1]), wanted) else 1
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
