"""What this host lets a process do, found without the sandbox's own code.

The tests decide what the sandbox (and `cascode doctor`) must do from these
facts, never from what the sandbox says of itself: a path that the host permits
and the product refuses is a failure, not a skip. The only skips they allow are
the host's own refusals (`host_refusal`), which stay skips even under CI=true.

- `landlock_abi()`: the kernel's Landlock ABI (the `landlock_create_ruleset`
  version query), cross-checked with /sys/kernel/security/lsm where securityfs
  is mounted.
- `namespaces_blocked()`: None when a fresh process may create the user, mount,
  pid, net, ipc and uts namespaces that the bwrap and unshare paths need (and
  map its uid and mount a tmpfs in them), else the host's refusal (errno).
- `bwrap_installed()`: bubblewrap on PATH.
"""

from __future__ import annotations

import ctypes
import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

_LSM = Path("/sys/kernel/security/lsm")


@functools.lru_cache(maxsize=1)
def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 without Landlock (or with it disabled)."""
    if not sys.platform.startswith("linux"):
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION): syscall 444
    # on every architecture.
    abi = max(0, int(libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))))
    try:
        enabled = "landlock" in _LSM.read_text().split(",")
    except OSError:  # securityfs not mounted (containers): the syscall alone decides
        return abi
    assert enabled == (abi > 0), f"{_LSM} and the landlock syscall disagree (ABI {abi})"
    return abi


# Runs in a fresh interpreter: unshare(2) the namespaces of the unshare path, map
# this uid to root, then mount a tmpfs (a host that restricts unprivileged user
# namespaces, as Ubuntu's AppArmor does, refuses that mount rather than unshare).
_PROBE = r"""
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def fail(step):
    e = ctypes.get_errno()
    print(json.dumps({"step": step, "errno": errno.errorcode.get(e, str(e)),
                      "message": os.strerror(e)}))
    sys.exit(0)
uid, gid = os.getuid(), os.getgid()
flags = 0x10000000 | 0x00020000 | 0x20000000 | 0x40000000 | 0x08000000 | 0x04000000
if libc.unshare(flags) != 0:
    fail("unshare")
try:
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"),
                       ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as fh:
            fh.write(text)
except OSError as e:
    print(json.dumps({"step": name, "errno": errno.errorcode.get(e.errno, str(e.errno)),
                      "message": e.strerror}))
    sys.exit(0)
if libc.mount(b"none", b"/", None, 16384 | (1 << 18), None) != 0:  # MS_REC | MS_PRIVATE
    fail("make / private")
if libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, b"size=1m") != 0:
    fail("mount a tmpfs")
print(json.dumps(None))
"""
# The errors by which a kernel or its security policy refuses namespaces: no
# permission (seccomp, AppArmor, no capability), none left (user.max_user_namespaces
# = 0), or not built in.
_REFUSALS = ("EPERM", "EACCES", "ENOSPC", "EUSERS", "EINVAL", "ENOSYS")


@functools.lru_cache(maxsize=1)
def namespaces_blocked() -> str | None:
    """None when the host permits the namespaces of the bwrap and unshare paths,
    else the host's refusal. Any other outcome of the probe fails the caller."""
    if not sys.platform.startswith("linux"):
        return f"no Linux namespaces on {sys.platform}"
    proc = subprocess.run([sys.executable, "-I", "-c", _PROBE], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, f"the namespace probe crashed: {proc.stderr[-2000:]}"
    result = json.loads(proc.stdout)
    if result is None:
        return None
    assert result["errno"] in _REFUSALS, f"the namespace probe failed oddly: {result}"
    return (f"the host does not permit user namespaces: {result['step']}: "
            f"{result['errno']} ({result['message']})")


def bwrap_installed() -> bool:
    return shutil.which("bwrap") is not None


def expected_auto_path() -> str | None:
    """The path `auto` must choose here: the first, in the sandbox's order, that
    the host permits (rlimits never: it needs the unsafe setting)."""
    if bwrap_installed() and namespaces_blocked() is None:
        return "bwrap"
    if namespaces_blocked() is None:
        return "unshare"
    if landlock_abi() >= 1:
        return "landlock"
    return None


def host_refusal(path: str) -> str | None:
    """Why the host itself rules out `path` (a legitimate skip, even in CI), or None
    when the sandbox must make `path` work. A missing bwrap is not a host refusal:
    .ci/steps/sandbox.sh installs it."""
    if path in ("bwrap", "unshare"):
        return namespaces_blocked()
    if path == "landlock" and landlock_abi() < 1:
        return "the kernel has no Landlock (ABI 0: not built in, or not enabled at boot)"
    return None
