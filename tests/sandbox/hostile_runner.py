"""Runs the hostile cases on one forced sandbox path and writes one JSON line per case.

Never run this directly on a machine you care about: test_hostile.py starts it
with HOME pointing at a folder the test made, so that a leaked `rm -rf ~` ends
only that folder. It needs no namespaces: it makes itself a child subreaper
(prctl PR_SET_CHILD_SUBREAPER), so that whatever a hostile program forks stays
among its descendants even after leaving its parent (a daemon's double fork);
each case's strays are reported, then killed and reaped, and whatever is left
at the end is killed too. It dies with the test (PR_SET_PDEATHSIG). Where the
host permits, the test also makes it pid 1 of a throwaway pid namespace: the
one leak no subreaper contains is a `kill(-1, 9)`.

Usage: hostile_runner.py PATH WORKDIR OUT_JSONL [CASE ...]
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from hostile_cases import CASES, Case  # noqa: E402

from cascode.engine.errors import SandboxUnavailable  # noqa: E402
from cascode.engine.sandbox import create_sandbox  # noqa: E402
from cascode.engine.types import ExecutionLimits  # noqa: E402

# Small limits keep the suite fast; the verdicts do not depend on them.
LIMITS = ExecutionLimits(assert_timeout_s=0.25, solution_cpu_s=3.0, solution_wall_s=6.0,
                         memory_mb=256, max_consecutive_timeouts=2)


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Adopt every orphaned descendant, and die (SIGKILL) with the parent."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    for option, value in ((PR_SET_CHILD_SUBREAPER, 1), (PR_SET_PDEATHSIG, signal.SIGKILL)):
        if libc.prctl(option, value, 0, 0, 0) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"prctl({option}, {value}): {os.strerror(e)}")


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under root: (size, mtime_ns)."""
    out: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


def processes() -> dict[int, str]:
    """Processes visible here (the host's, or the runner's pid namespace): pid -> command."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                out[int(entry)] = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                pass
    return out


def process_tree() -> dict[int, list[int]]:
    """One reading of /proc: parent pid -> child pids."""
    children: dict[int, list[int]] = {}
    for p in processes():
        try:
            ppid = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(p)
    return children


def descendants_of(pid: int, children: dict[int, list[int]] | None = None) -> set[int]:
    children = process_tree() if children is None else children
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def kill_strays(worker_pid: int | None) -> list[int]:
    """Stop, kill and reap every descendant of this process outside the worker's tree
    (everything, with None) until none is left; the strays found first, with what
    they run. Orphans come here (the subreaper), so none escapes the tree."""
    me, found = os.getpid(), []
    deadline = time.monotonic() + 30
    while True:
        # Both sets from one reading of /proc: a spare the worker forks between two
        # readings would otherwise look like a stray.
        tree = process_tree()
        keep = set() if worker_pid is None else {worker_pid} | descendants_of(worker_pid, tree)
        strays = descendants_of(me, tree) - keep
        if not strays:
            return found
        found = found or sorted(strays)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes survive SIGKILL: {sorted(strays)}")
        for sig in (signal.SIGSTOP, signal.SIGKILL):  # stopped first: a fork bomb stops growing
            for pid in strays:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        for pid in strays:  # our own children (adopted orphans included) are ours to reap
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.01)


def main() -> int:
    path, workdir, out_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    wanted = set(sys.argv[4:])
    become_subreaper()
    # A terminated runner still cleans up (the `finally` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    home = Path(os.environ["HOME"])
    assert home.resolve().is_relative_to(workdir.resolve()), "HOME must be the test's folder"
    os.environ["CASCODE_TEST_SECRET"] = "leaked"
    victim = home / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "keep.txt").write_text("keep me")
    secret = home / "secret.txt"
    secret.write_text("TOPSECRET")
    # A folder next to the interpreter: readable in the sandbox on every path.
    victim_visible = Path(sys.prefix) / f".cascode-hostile-{os.getpid()}-{time.time_ns()}"
    (victim_visible / "sub").mkdir(parents=True)
    (victim_visible / "sub" / "keep.txt").write_text("keep me too")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]

    out = out_path.open("w")
    sandbox = create_sandbox(path)
    try:
        header = {"path": path, "available": sandbox.available, "reason": sandbox.reason,
                  "layers": sandbox.layers, "refused": sandbox.refused}
        out.write(json.dumps(header) + "\n")
        out.flush()
        if not sandbox.available:
            return 0
        worker = sandbox._worker
        assert worker is not None
        worker_pid = worker.proc.pid
        fill = {"victim": str(victim), "victim_visible": str(victim_visible),
                "secret": str(secret), "port": port, "home": str(home)}
        for c in CASES:
            if wanted and c.name not in wanted:
                continue
            out.write(json.dumps(run_case(sandbox, c, fill, listener, worker_pid,
                                          [home, victim_visible])) + "\n")
            out.flush()
    finally:
        sandbox.close()
        left = kill_strays(None)
        if left:
            print(f"hostile_runner: killed what outlived the sandbox: {left}", file=sys.stderr)
        import shutil

        shutil.rmtree(victim_visible, ignore_errors=True)
    return 0


def run_case(sandbox, c: Case, fill: dict, listener: socket.socket, worker_pid: int,
             watched: list[Path]) -> dict:
    before = {str(w): snapshot(w) for w in watched}
    solution = c.solution.format(**fill)
    tests = [t.format(**fill) for t in c.tests]
    problems: list[str] = []
    t0 = time.monotonic()
    try:
        matrix = sandbox.run_matrix([solution], tests, limits=LIMITS)
        got = [v.name for v in matrix.verdicts[0]]
    except SandboxUnavailable as e:
        got = []
        problems.append(f"sandbox unavailable: {e}")
    seconds = time.monotonic() - t0
    for i, (verdict, allowed) in enumerate(zip(got, c.expected, strict=True)):
        if verdict not in allowed:
            problems.append(f"assert {i} ({c.tests[i]!r}): got {verdict}, "
                            f"expected {'/'.join(sorted(allowed))}")
    # The worker survived, without a restart.
    w = sandbox._worker
    if w is None or w.proc.pid != worker_pid or w.proc.poll() is not None:
        problems.append("the worker died or was restarted")
    # Nothing outside scratch changed.
    for root, snap in before.items():
        after = snapshot(Path(root))
        if after != snap:
            changed = sorted(set(after.items()) ^ set(snap.items()))[:5]
            problems.append(f"files changed under {root}: {changed}")
    # Nobody reached the listener.
    try:
        conn, _ = listener.accept()
        conn.close()
        problems.append("a connection reached the listener on 127.0.0.1")
    except BlockingIOError:
        pass
    # No process outlived its request (daemons, stray children); any that did is
    # killed here, so that it cannot touch the next case.
    time.sleep(0.05)
    commands = processes()
    w = sandbox._worker
    strays = kill_strays(w.proc.pid if w is not None else None)
    if strays:
        problems.append(f"stray processes: {[(p, commands.get(p, '?')) for p in strays]}")
    # The next request still works.
    after = sandbox.run_matrix(["def f(x):\n    return x * 2\n"],
                               ["assert f(2) == 4", "assert f(2) == 5"], limits=LIMITS)
    if [v.name for v in after.verdicts[0]] != ["PASSED", "FAILED"]:
        problems.append(f"the next request gave {after.verdicts[0]}")
    return {"case": c.name, "verdicts": got, "seconds": round(seconds, 3), "problems": problems}


if __name__ == "__main__":
    sys.exit(main())
