"""Confinement primitives, applied by the worker to itself or to each forked child.

Standard library only: the worker runs this module from source inside the sandbox,
where the package is not importable. Every function raises OSError when the kernel
refuses, so that the caller can report which layer failed and why.

The layers (see __init__.py for the order in which they are tried):
- `enter_namespaces` + `build_root`: the "unshare" path, done by the worker itself
  when bubblewrap is missing: user, mount, pid, net, ipc, uts namespaces and a new
  root made of read-only binds of the interpreter's prefixes and a size-capped tmpfs.
- `landlock_restrict`: the "landlock" path, where namespaces are not permitted:
  read-only access to the interpreter's prefixes, read-write to the scratch folder.
- `set_rlimits`, `drop_capabilities`, `compile_seccomp` (once, in the worker) and
  `SeccompProgram.load` (in every child).
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
if hasattr(_libc, "prctl"):  # Linux; elsewhere the sandbox reports itself unavailable
    _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                            ctypes.c_ulong]
    _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                            ctypes.c_ulong, ctypes.c_char_p]
    _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    _libc.unshare.argtypes = [ctypes.c_int]

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38


def _check(ret: int, what: str) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def prctl(option: int, arg2: int = 0) -> None:
    _check(_libc.prctl(option, arg2, 0, 0, 0), f"prctl({option})")


def die_with_parent(sig: int = 9) -> None:
    prctl(PR_SET_PDEATHSIG, sig)


def no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def unmap_shared_except(keep: int) -> None:
    """Unmap every shared anonymous mapping but the one starting at `keep`.

    A child forked from the worker inherits whatever shared pages the worker had
    mapped then; its own verdict board is the only one it may write.
    """
    try:
        with open("/proc/self/maps") as fh:
            maps = fh.read().splitlines()
    except OSError:
        return
    for line in maps:
        parts = line.split()
        if len(parts) >= 6 and parts[5] == "/dev/zero" and parts[1][3] == "s":
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo != keep:
                _libc.munmap(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo))


def not_dumpable() -> None:
    # Keeps children (same uid) out of /proc/<worker>/mem and ptrace of the worker.
    prctl(PR_SET_DUMPABLE, 0)


# ---------------------------------------------------------------------------
# rlimits and capabilities


def vm_bytes() -> int:
    """This process's address-space size (0 when /proc is not readable)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def set_rlimits(*, cpu_s: float, address_space: int, file_bytes: int, open_files: int) -> None:
    """Hard limits equal soft limits so the child cannot raise them back."""
    cpu = max(1, int(cpu_s + 0.999))
    # SIGXCPU at `cpu`, SIGKILL one second later if SIGXCPU is caught.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    if address_space > 0:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))


def drop_capabilities() -> None:
    """Empty the bounding, effective, permitted and inheritable sets.

    Matters on the paths without a user namespace, where the process is the real
    root: without capabilities, root can no longer override file permissions,
    load modules, or signal other users' processes.
    """
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 and ctypes.get_errno() == errno.EINVAL:
            break  # past the last capability this kernel knows
    header = struct.pack("=Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = bytes(24)  # two zeroed __user_cap_data_struct
    hbuf = ctypes.create_string_buffer(header, len(header))
    dbuf = ctypes.create_string_buffer(data, len(data))
    _check(_libc.capset(hbuf, dbuf), "capset")


# ---------------------------------------------------------------------------
# seccomp


# The filter is compiled once by libseccomp in the worker, with this placeholder where
# a child's own pid goes, and each child patches its pid into a copy and loads it:
# compiling per child took ~10 ms, loading a compiled program takes microseconds.
_PID_PLACEHOLDER = 0x3A5E5C0D


class SeccompProgram:
    """A compiled BPF program and the offsets of the pid placeholder in it."""

    def __init__(self, code: bytes) -> None:
        self.code = code
        self.pid_offsets = [
            off + 4 for off in range(0, len(code), 8)
            if struct.unpack_from("=I", code, off + 4)[0] == _PID_PLACEHOLDER
        ]

    def load(self) -> None:
        """Install the filter on this process (single-threaded: it covers the process)."""
        buf = ctypes.create_string_buffer(self.code, len(self.code))
        pid = os.getpid()
        for off in self.pid_offsets:
            struct.pack_into("=I", buf, off, pid)
        prog = _SockFprog(len(self.code) // 8, ctypes.addressof(buf))
        no_new_privs()
        # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        _check(_libc.prctl(22, 2, ctypes.addressof(prog), 0, 0), "seccomp filter")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def compile_seccomp() -> SeccompProgram:
    """Deny process creation, exec, sockets (but a local pair), tracing, namespaces and
    signals to others.

    Default allow with a deny list: an allow list breaks on whatever the
    interpreter's next version calls; the file-system and process layers around
    this one do not depend on it. Threads stay possible: clone with CLONE_THREAD
    is allowed and clone3 fails with ENOSYS so that glibc falls back to clone.
    """
    import pyseccomp as sc

    pid = _PID_PLACEHOLDER
    eperm = sc.ERRNO(errno.EPERM)
    f = sc.SyscallFilter(sc.ALLOW)

    def deny(name: str, *args: object, action: int = eperm) -> None:
        try:
            f.add_rule(action, name, *args)
        except (OSError, ValueError):  # a syscall this architecture does not have
            pass

    clone_thread = 0x00010000
    deny("clone", sc.Arg(0, sc.MASKED_EQ, clone_thread, 0))
    deny("clone3", action=sc.ERRNO(errno.ENOSYS))
    for name in _DENIED:
        deny(name)
    # A connected pair of local sockets reaches nothing outside this process, and
    # asyncio's event loop needs one (its self-pipe): every `asyncio.run(...)` example
    # failed without it. Any other domain is denied, as `socket` is.
    deny("socketpair", sc.Arg(0, sc.NE, 1))  # AF_UNIX
    # Signals only to itself.
    for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
        deny(name, sc.Arg(0, sc.NE, pid))
    # Acting on other processes by pid: only pid 0 (itself) is allowed.
    for name in ("prlimit64", "sched_setaffinity", "sched_setscheduler", "sched_setparam",
                 "sched_setattr", "setpgid"):
        deny(name, sc.Arg(0, sc.NE, 0))
    deny("setpriority", sc.Arg(1, sc.NE, 0))
    # Signals by another route: SIGIO or any F_SETSIG signal sent to an owner pid.
    for cmd in (8, 10, 15):  # F_SETOWN, F_SETSIG, F_SETOWN_EX
        deny("fcntl", sc.Arg(1, sc.EQ, cmd))
    for req in (0x8901, 0x8902, 0x5412):  # FIOSETOWN, SIOCSPGRP, TIOCSTI
        deny("ioctl", sc.Arg(1, sc.EQ, req))
    fd = os.memfd_create("cascode-seccomp", os.MFD_CLOEXEC)
    try:
        with open(fd, "w+b", closefd=False) as out:
            f.export_bpf(out)
        code = os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)
    if not code or len(code) % 8:
        raise OSError(errno.EINVAL, "libseccomp exported no program")
    return SeccompProgram(code)


_DENIED = (
    "fork", "vfork", "execve", "execveat",
    "socket",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "open_tree", "move_mount", "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
    "tkill", "pidfd_open", "pidfd_send_signal", "pidfd_getfd",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init",
    "mknod", "mknodat", "swapon", "swapoff", "reboot", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "acct",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "iopl", "ioperm", "quotactl", "syslog",
    "vhangup", "ioprio_set", "migrate_pages", "move_pages", "process_madvise",
    "memfd_secret", "lookup_dcookie", "setsid",
)


# ---------------------------------------------------------------------------
# Landlock

_SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446

_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
# Access rights known to each ABI version: 13 in v1, REFER (v2), TRUNCATE (v3), IOCTL_DEV (v5).
_FS_ALL = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1,
           5: (1 << 16) - 1}


def landlock_abi() -> int:
    """Landlock's ABI version, or 0 where the kernel lacks it or has it disabled."""
    if not hasattr(_libc, "prctl"):
        return 0
    ret = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                        ctypes.c_uint32(1))  # LANDLOCK_CREATE_RULESET_VERSION
    return max(0, int(ret))


def landlock_restrict(read_paths: list[str], write_paths: list[str]) -> int:
    """Allow reading `read_paths` and everything in `write_paths`; nothing else.

    Also denies TCP bind/connect (ABI 4) and signals or abstract sockets reaching
    outside the domain (ABI 6). Returns the ABI used.
    """
    abi = landlock_abi()
    if abi < 1:
        raise OSError(errno.EOPNOTSUPP, "Landlock is not available in this kernel")
    handled_fs = _FS_ALL[min(abi, 5)]
    handled_net = 0b11 if abi >= 4 else 0  # BIND_TCP | CONNECT_TCP
    scoped = 0b11 if abi >= 6 else 0  # ABSTRACT_UNIX_SOCKET | SIGNAL
    if abi >= 6:
        attr = struct.pack("=QQQ", handled_fs, handled_net, scoped)
    elif abi >= 4:
        attr = struct.pack("=QQ", handled_fs, handled_net)
    else:
        attr = struct.pack("=Q", handled_fs)
    abuf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _check(int(_libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, abuf,
                                       ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))),
                     "landlock_create_ruleset")
    try:
        for path, access in [(p, _FS_READ) for p in read_paths] + [
            (p, handled_fs) for p in write_paths
        ]:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a path this machine does not have
            try:
                if not os.path.isdir(path):
                    # Only file rights apply to a file.
                    access &= _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | (1 << 14) | (1 << 15)
                rule = struct.pack("=Qi", access, fd)  # landlock_path_beneath_attr, packed
                rbuf = ctypes.create_string_buffer(rule, len(rule))
                _check(int(_libc.syscall(_SYS_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset),
                                         ctypes.c_int(1), rbuf, ctypes.c_uint32(0))),
                       f"landlock_add_rule({path})")
            finally:
                os.close(fd)
        no_new_privs()
        _check(int(_libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset),
                                 ctypes.c_uint32(0))), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


# ---------------------------------------------------------------------------
# Namespaces, done by the worker itself (the path without bubblewrap)

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2
# glibc has no pivot_root wrapper.
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}


def enter_namespaces() -> None:
    """New user, mount, pid, net, ipc, uts namespaces; this process maps to root in them.

    The pid namespace applies to children: the caller must fork once and run the
    worker in the child, which becomes pid 1 of the new namespace.
    """
    uid, gid = os.getuid(), os.getgid()
    flags = (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC
             | CLONE_NEWUTS)
    _check(_libc.unshare(flags), "unshare")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return s.encode() if s is not None else None

    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)),
           f"mount {source or fstype} on {target}")


def _locked_flags(path: str) -> int:
    """The flags of the mount holding `path`, which a remount must keep."""
    st = os.statvfs(path).f_flag
    flags = 0
    for st_bit, ms_bit in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV),
                           (os.ST_NOEXEC, MS_NOEXEC), (os.ST_NOATIME, MS_NOATIME),
                           (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME)):
        if st & st_bit:
            flags |= ms_bit
    return flags


def _bind_ro(src: str, dst: str) -> None:
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        open(dst, "a").close()
    _mount(src, dst, None, MS_BIND | MS_REC)
    _mount(None, dst, None,
           MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | _locked_flags(src))


def build_root(read_paths: list[str], devices: list[str], scratch_bytes: int) -> None:
    """Replace / by a tmpfs holding read-only binds of `read_paths`, a few device
    nodes, /proc and a size-capped tmpfs at /tmp; the old root is detached."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Any existing directory that holds none of the paths to bind: the staging
    # tmpfs hides it in this namespace only (a checkout under /tmp must stay visible).
    candidates = ("/mnt", "/media", "/srv", "/run", "/var/tmp", "/tmp")
    base = next(
        (d for d in candidates
         if os.path.isdir(d) and not any(p == d or p.startswith(d + "/") for p in read_paths)),
        None,
    )
    if base is None:
        raise OSError(f"no staging directory for the new root: each of {', '.join(candidates)} "
                      "is missing or holds a path to bind")
    _mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    new = base + "/root"
    os.mkdir(new)
    _mount(new, new, None, MS_BIND | MS_REC)
    # Scratch first: read-only binds under /tmp (a venv there) then sit on top of it.
    os.makedirs(new + "/tmp", exist_ok=True)
    _mount("tmpfs", new + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
           f"mode=0777,size={scratch_bytes}")
    for path in read_paths:
        if os.path.islink(path):
            os.makedirs(os.path.dirname(new + path), exist_ok=True)
            os.symlink(os.readlink(path), new + path)
        elif os.path.exists(path):
            _bind_ro(path, new + path)
    for dev in devices:
        if os.path.exists(dev):
            os.makedirs(new + "/dev", exist_ok=True)
            open(new + dev, "a").close()
            _mount(dev, new + dev, None, MS_BIND)
    os.makedirs(new + "/proc", exist_ok=True)
    try:
        _mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass  # a container that masks parts of /proc: the worker does without it
    os.makedirs(new + "/old", exist_ok=True)
    nr = _PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise OSError(errno.ENOSYS, "pivot_root: unknown syscall number on this machine")
    _check(int(_libc.syscall(nr, new.encode(), (new + "/old").encode())), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/old", MNT_DETACH), "umount old root")
    os.rmdir("/old")
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    try:
        _libc.sethostname(b"sandbox", 7)
    except Exception:
        pass
