"""Hostile inputs for the sandbox: each a solution, its assert lines, and the verdicts
each line may get. Run only by hostile_runner.py, inside a throwaway pid namespace.

Placeholders filled by the runner: {victim} (a folder outside scratch, to delete),
{victim_visible} (one next to the interpreter, visible read-only on every path),
{secret} (a file outside scratch), {port} (a listener on 127.0.0.1), {home} (the
test's HOME).
"""

from __future__ import annotations

from dataclasses import dataclass

P, F, T, C = "PASSED", "FAILED", "TIMEOUT", "CRASHED"
LOST = {F, T, C}  # anything but a pass


@dataclass(frozen=True)
class Case:
    name: str
    solution: str
    tests: tuple[str, ...]
    expected: tuple[frozenset[str], ...]  # allowed verdicts, per assert line


def case(name: str, solution: str, *tests_and_expected: tuple[str, set[str] | str]) -> Case:
    tests = tuple(t for t, _ in tests_and_expected)
    expected = tuple(frozenset({e} if isinstance(e, str) else e) for _, e in tests_and_expected)
    return Case(name, solution.strip() + "\n", tests, expected)


CASES = [
    case("fork_bomb", """
import os
def f():
    while True:
        os.fork()
""", ("f()", F)),
    case("while_true", """
def f():
    while True:
        pass
""", ("f()", T), ("assert 1 + 1 == 2", P)),
    case("c_level_loop", """
def f():
    return sum(range(10**10))
""", ("f()", T)),
    case("sleep_forever", """
import time
def f():
    time.sleep(10**6)
""", ("f()", T), ("assert True", P)),
    case("memory_blowup", """
def f():
    return bytearray(10**11)
def g():
    chunks = []
    while True:
        chunks.append(bytearray(10**7))
""", ("f()", F), ("g()", LOST), ("assert 2 * 2 == 4", P)),
    case("gigabytes_of_output", """
import sys
def f():
    while True:
        sys.stdout.write("x" * 10**6)
        sys.stderr.write("y" * 10**6)
""", ("f()", T)),
    case("os_system_rm_rf", """
import os
def f():
    return os.system("rm -rf {victim} {victim_visible}")
""", ("assert f() == 0", F)),
    case("shutil_rmtree", """
import shutil
def f(p):
    shutil.rmtree(p)
""", ("f({victim!r})", F), ("f({victim_visible!r})", F)),
    case("read_secret", """
def f():
    with open({secret!r}) as fh:
        return fh.read()
""", ("assert 'TOPSECRET' in f()", F),
         ("assert 'root' in open('/etc/passwd').read()", F)),
    case("tcp_connect", """
import socket
def f():
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
""", ("f()", F)),
    # A connected local pair reaches nothing outside the child, and asyncio's event loop
    # needs one: an async function's example runs. Any other socket is still denied.
    case("socket_pairs", """
import asyncio, socket
async def double(x):
    return 2 * x
def pair():
    a, b = socket.socketpair()
    a.sendall(b"hi")
    return b.recv(2)
def inet_pair():
    socket.socketpair(socket.AF_INET)
def udp():
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", {port}))
""", ("assert asyncio.run(double(2)) == 4", P), ("assert pair() == b'hi'", P),
         ("inet_pair()", F), ("udp()", F)),
    case("kill_parent", """
import os
def f():
    os.kill(os.getppid(), 9)
""", ("f()", F), ("assert 3 > 2", P)),
    case("kill_everything", """
import os, signal
def f():
    os.kill(-1, 9)
def g():
    os.killpg(0, 9)
def h():
    import ctypes
    assert ctypes.CDLL(None).kill(-1, 9) == 0
""", ("f()", F), ("g()", F), ("h()", F), ("assert 3 > 2", P)),
    case("ctypes_segfault", """
import ctypes
def f():
    return ctypes.string_at(0)
""", ("f()", C), ("assert 5 == 5", P)),
    case("thread_never_ends", """
import threading
def spin():
    while True:
        pass
def f():
    threading.Thread(target=spin).start()
    return 1
""", ("assert f() == 2", F), ("assert 6 == 6", LOST | {P})),
    case("threads_work", """
import threading
def f():
    out = []
    t = threading.Thread(target=lambda: out.append(42))
    t.start()
    t.join()
    return out[0]
""", ("assert f() == 42", P)),
    case("read_stdin", """
import sys, os
def f():
    return input()
""", ("f()", F), ("assert len(sys.stdin.read()) > 0", F), ("assert os.read(0, 10)", F)),
    case("deep_recursion", """
import sys
def r(n):
    return r(n + 1)
def deeper():
    sys.setrecursionlimit(10**7)
    return r(0)
""", ("r(0)", F), ("deeper()", LOST), ("assert 7 == 7", P)),
    case("exits_inside_asserts", """
import os, sys
def f(x):
    return x + 1
""", ("sys.exit(0)", F), ("assert f(1) == 2", P), ("os._exit(0)", C),
         ("assert f(2) == 3", P), ("raise KeyboardInterrupt", F), ("assert f(3) == 4", P),
         ("raise SystemExit(3)", F), ("assert f(4) == 5", P)),
    case("replaces_sigalrm", """
import signal
def f():
    for s in (signal.SIGALRM, signal.SIGPROF, signal.SIGXCPU, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM, signal.SIGPROF])
    while True:
        pass
""", ("f()", T)),
    case("daemonize", """
import os
def f():
    os.setsid()
def g():
    if os.fork():
        os._exit(0)
    if os.fork():
        os._exit(0)
    import time
    time.sleep(10**6)
""", ("f()", F), ("g()", F)),
    case("huge_file", """
def f(path):
    with open(path, "wb") as fh:
        for _ in range(4096):
            fh.write(b"0" * 2**20)
""", ("f('big.bin')", F), ("f({home!r} + '/big.bin')", F)),
    case("spawn_and_exec", """
import os, subprocess
def f():
    return subprocess.run(["/bin/true"]).returncode
def g():
    return os.posix_spawn("/bin/true", ["true"], {{}})
def h():
    os.execv("/bin/true", ["true"])
""", ("assert f() == 0", F), ("g()", F), ("h()", F)),
    case("other_processes", """
import os, fcntl
def mem():
    with open("/proc/%d/mem" % os.getppid(), "wb") as fh:
        fh.write(b"x")
def nice():
    os.setpriority(os.PRIO_PROCESS, os.getppid(), 19)
def sigio():
    r, w = os.pipe()
    fcntl.fcntl(r, fcntl.F_SETOWN, os.getppid())
""", ("mem()", F), ("nice()", F), ("sigio()", F)),
    case("environment", """
import os
def f():
    return os.environ.get("CASCODE_TEST_SECRET")
""", ("assert f() == 'leaked'", F)),
    case("bad_code", """
def f(:
""", ("assert f() == 1", F)),
]
