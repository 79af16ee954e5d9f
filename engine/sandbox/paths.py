"""The isolation paths, what each needs, and how the worker is launched on each.

Paths, best first: "bwrap" (bubblewrap: every namespace, read-only binds of the
interpreter's prefixes, a size-capped tmpfs), "unshare" (the worker makes the same
namespaces and root itself), "landlock" (no namespaces: Landlock rules on the file
system and TCP), "rlimits" (limits and seccomp only: not isolation, refused unless
the user opts in). rlimits and seccomp apply inside every child on every path.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
from pathlib import Path

from ._confine import landlock_abi

PATHS = ("bwrap", "unshare", "landlock", "rlimits")
CHOICES = ("auto", *PATHS)
SCRATCH_BYTES = 64 * 2**20
# Children forked and confined ahead of time: one request of 10 solutions needs no fork.
SPARES = 12


def requested_layers(layers: str | None) -> str:
    """The path a `sandbox.layers` value asks for: the setting, else the environment
    variable CASCODE_SANDBOX_LAYERS, else "auto". CascodeError for an unknown value."""
    if layers in (None, "", "auto"):
        layers = os.environ.get("CASCODE_SANDBOX_LAYERS") or "auto"
    requested = layers.strip()
    if requested not in CHOICES:
        from ..errors import CascodeError

        raise CascodeError(
            f"sandbox.layers: unknown value {requested!r} (expected one of: {', '.join(CHOICES)})"
        )
    return requested


def prerequisite(path: str) -> str | None:
    """None when `path` can be tried on this machine, else why not."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux (this is {sys.platform})"
    if path == "bwrap" and not shutil.which("bwrap"):
        return "bubblewrap (bwrap) is not installed"
    if path == "landlock" and landlock_abi() < 1:
        return "the kernel has no Landlock (or it is disabled)"
    return None


def read_paths() -> list[str]:
    """What the sandbox may read: the system's libraries and the interpreter's prefixes."""
    paths = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/ld.so.cache"]
    exe = Path(os.path.realpath(sys.executable))
    paths += [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              str(exe.parent.parent)]
    try:  # the seccomp binding, wherever it is installed
        import pyseccomp

        paths.append(str(Path(pyseccomp.__file__).parent))
    except Exception:
        pass
    out: list[str] = []
    for p in sorted({os.path.normpath(p) for p in paths}, key=len):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


@functools.lru_cache(maxsize=1)
def worker_source() -> str:
    """The worker's program: `_confine` loaded as a module, then `_worker` run."""
    here = Path(__file__).parent
    confine_src = (here / "_confine.py").read_text()
    worker_src = (here / "_worker.py").read_text()
    return (
        "import sys, types\n"
        "_m = types.ModuleType('_cascode_confine')\n"
        f"exec(compile({confine_src!r}, '<cascode-confine>', 'exec'), _m.__dict__)\n"
        "sys.modules['_cascode_confine'] = _m\n"
        f"exec(compile({worker_src!r}, '<cascode-worker>', 'exec'), "
        "{'__name__': '__main__'})\n"
    )


@functools.lru_cache(maxsize=1)
def _bwrap_has_size() -> bool:
    """bubblewrap before 0.8 has no --size (the scratch tmpfs is then uncapped; the
    children's file-size limit still applies)."""
    import subprocess

    try:
        out = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return "--size" in out.stdout + out.stderr


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_command(path: str, scratch: str, *, seccomp: bool = True) -> list[str]:
    """The argv that starts a worker on `path`; `scratch` is its scratch folder
    outside bwrap and unshare (inside them the worker has its own /tmp)."""
    readable = read_paths()
    config = {
        "path": path,
        "read_paths": readable,
        "scratch": "/tmp" if path == "bwrap" else scratch,
        "scratch_bytes": SCRATCH_BYTES,
        "seccomp": seccomp,
        "cores": cores(),
        "spares": SPARES,
    }
    python = [sys.executable, "-I", "-B", "-c", worker_source(), json.dumps(config)]
    if path != "bwrap":
        return python
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
            "--cap-drop", "ALL", "--hostname", "sandbox"]
    # bwrap mounts in order: the scratch tmpfs first, so that read-only binds
    # under /tmp (a checkout's venv there) sit on top of it instead of under it.
    if _bwrap_has_size():
        argv += ["--size", str(SCRATCH_BYTES)]
    argv += ["--tmpfs", "/tmp"]
    for p in readable:
        if os.path.islink(p):
            argv += ["--symlink", os.readlink(p), p]
        elif os.path.exists(p):
            argv += ["--ro-bind", p, p]
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp",
             "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
             "--chdir", "/tmp", "--"]
    return argv + python


def worker_env(scratch: str) -> dict[str, str]:
    """A minimal environment: nothing of the server's (keys, tokens) reaches the worker."""
    return {"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8"}
