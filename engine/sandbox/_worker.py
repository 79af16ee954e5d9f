"""The sandbox worker: a long-lived, single-threaded process that forks one child
per solution and streams per-assert verdicts back.

It runs from source (`python -I -c`), standard library only, with `_confine`'s
source loaded beside it as the module `_cascode_confine`. Protocol: one JSON
object per line on stdin (requests) and stdout (the ready line, then responses).

Request:  {"id": int, "solutions": [str], "tests": [str], "context": str, "limits": {...}}
Response: {"id": int, "setup": [int], "verdicts": [[int]], "seconds": float}
Verdict codes are engine.types.Verdict: 0 passed, 1 failed, 2 timeout, 3 crashed.

A child writes one byte for its setup (context + solution) and then one byte per
assert: P passed, F failed, T timed out; B means its CPU budget is spent. The
worker kills a child that makes no progress for an assert's wall time plus a
grace, or that reaches its solution's deadline, and forks a new child from the
next assert, until too many asserts in a row were lost.
"""

from __future__ import annotations

import builtins
import collections
import gc
import json
import os
import selectors
import shutil
import signal
import sys
import tempfile
import time

try:
    import _cascode_confine as confine  # type: ignore[import-not-found]
except ImportError:  # imported as a package module (tests, type checks)
    from . import _confine as confine

PASSED, FAILED, TIMEOUT, CRASHED = 0, 1, 2, 3
_CODES = {ord("P"): PASSED, ord("F"): FAILED, ord("T"): TIMEOUT}
_DEVICES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]
# Modules generated code commonly uses: imported once here, shared by every fork.
_PRELOAD = (
    "abc array bisect calendar cmath collections collections.abc contextlib copy csv "
    "dataclasses datetime decimal enum fractions functools hashlib heapq io itertools json "
    "math numbers operator random re statistics string struct textwrap typing unicodedata "
    "zlib"
).split()


class _AssertTimeout(BaseException):
    """Raised by the per-assert timers; BaseException so `except Exception` in a
    solution does not swallow it."""


# ---------------------------------------------------------------------------
# The child


def _child(fd: int, devnull: int, scratch: str, code: list[str], start: int,
           limits: dict[str, float], seccomp: bool, vm_base: int) -> None:
    os.setpgid(0, 0)
    confine.die_with_parent()
    for target in (0, 1, 2):
        os.dup2(devnull, target)
    os.closerange(3, fd)
    os.closerange(fd + 1, 65536)
    os.chdir(scratch)
    os.environ.clear()
    os.environ.update(HOME=scratch, TMPDIR=scratch, PATH="/usr/bin:/bin", LANG="C.UTF-8")
    tempfile.tempdir = scratch
    sys.stdin = open(os.devnull)  # noqa: SIM115 - the child ends with os._exit
    cpu_budget = limits["cpu_s"]
    confine.set_rlimits(
        cpu_s=cpu_budget + 0.5,
        address_space=vm_base + int(limits["memory_mb"]) * 2**20 if vm_base else 0,
        file_bytes=int(limits["file_mb"] * 2**20),
        open_files=64,
    )
    try:
        confine.drop_capabilities()
    except OSError:
        pass  # already without capabilities (user namespace)
    confine.no_new_privs()
    if seccomp:
        confine.install_seccomp()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the cap fail, not kill

    def on_timer(signum: int, frame: object) -> None:
        if armed[0]:
            raise _AssertTimeout()

    armed = [False]
    cpu_t, wall_t = limits["assert_s"], limits["assert_wall_s"]

    def run(source: str, g: dict[str, object]) -> bytes:
        # Restore what a previous assert may have changed, then arm both timers:
        # CPU time decides under load, wall time catches sleeps and blocking reads.
        signal.signal(signal.SIGALRM, on_timer)
        signal.signal(signal.SIGPROF, on_timer)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        sys.setrecursionlimit(1000)
        try:
            try:
                armed[0] = True
                signal.setitimer(signal.ITIMER_PROF, cpu_t)
                signal.setitimer(signal.ITIMER_REAL, wall_t)
                exec(compile(source, "<sandbox>", "exec"), g)
                verdict = b"P"
            finally:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.setitimer(signal.ITIMER_PROF, 0)
        except _AssertTimeout:
            verdict = b"T"
        except BaseException:  # SystemExit and KeyboardInterrupt end only this assert
            verdict = b"F"
        return verdict

    g: dict[str, object] = {"__name__": "__sandbox__", "__builtins__": builtins}
    setup = code[0]
    verdict = run(setup, g)
    os.write(fd, verdict)
    if verdict != b"P":
        os._exit(0)
    for i in range(start, len(code) - 1):
        verdict = run(code[i + 1], g)
        os.write(fd, verdict)
        if time.process_time() > cpu_budget:
            os.write(fd, b"B")
            break
    os._exit(0)


# ---------------------------------------------------------------------------
# The worker's bookkeeping


class _Request:
    def __init__(self, rid: int, n_solutions: int, n_tests: int) -> None:
        self.id = rid
        self.setup: list[int] = [CRASHED] * n_solutions
        self.verdicts = [[CRASHED] * n_tests for _ in range(n_solutions)]
        self.open_jobs = n_solutions
        self.t0 = time.monotonic()


class _Job:
    """One solution of one request, possibly over several children."""

    def __init__(self, req: _Request, index: int, code: list[str], limits: dict[str, float]):
        self.req, self.index, self.code, self.limits = req, index, code, limits
        self.next = 0  # the next assert without a verdict
        self.lost_in_row = 0  # asserts lost in a row to kills or timeouts
        self.cpu_used = 0.0
        self.deadline = 0.0  # set when its first child starts
        self.setup_done = False

    @property
    def n_tests(self) -> int:
        return len(self.code) - 1

    def set(self, verdict: int) -> None:
        self.req.verdicts[self.index][self.next] = verdict
        self.next += 1
        self.lost_in_row = self.lost_in_row + 1 if verdict in (TIMEOUT, CRASHED) else 0

    def finish(self, rest: int) -> None:
        while self.next < self.n_tests:
            self.req.verdicts[self.index][self.next] = rest
            self.next += 1


class _Child:
    def __init__(self, job: _Job, pid: int, fd: int, scratch: str, now: float) -> None:
        self.job, self.pid, self.fd, self.scratch = job, pid, fd, scratch
        self.progress_at = now
        self.got_setup = False
        self.budget_spent = False


class Worker:
    def __init__(self, config: dict[str, object]) -> None:
        self.cores = max(1, int(config.get("cores", 1)))  # type: ignore[call-overload]
        self.scratch = str(config["scratch"])
        self.seccomp = bool(config.get("seccomp"))
        self.grace = float(config.get("grace_s", 0.5))  # type: ignore[arg-type]
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.sel = selectors.DefaultSelector()
        self.queue: collections.deque[_Job] = collections.deque()
        self.children: dict[int, _Child] = {}  # by result fd
        self.inbuf = b""
        self.vm_base = int(config.get("vm_base", 0))  # type: ignore[call-overload]

    # -- requests

    def on_request(self, line: bytes) -> None:
        msg = json.loads(line)
        solutions, tests = msg["solutions"], msg["tests"]
        req = _Request(int(msg["id"]), len(solutions), len(tests))
        limits = msg["limits"]
        context = msg.get("context") or ""
        for i, sol in enumerate(solutions):
            setup = context + "\n" + sol if context else sol
            self.queue.append(_Job(req, i, [setup, *tests], limits))
        if not solutions:
            self.respond(req)

    def respond(self, req: _Request) -> None:
        out = {"id": req.id, "setup": req.setup, "verdicts": req.verdicts,
               "seconds": time.monotonic() - req.t0}
        os.write(1, (json.dumps(out) + "\n").encode())

    def job_done(self, job: _Job) -> None:
        job.req.open_jobs -= 1
        if job.req.open_jobs == 0:
            self.respond(job.req)

    # -- children

    def start(self, job: _Job) -> None:
        now = time.monotonic()
        if not job.deadline:
            job.deadline = now + job.limits["wall_s"]
        limits = dict(job.limits)
        limits["cpu_s"] = max(0.05, job.limits["cpu_s"] - job.cpu_used)
        scratch = tempfile.mkdtemp(dir=self.scratch)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                _child(w, self.devnull, scratch, job.code, job.next, limits, self.seccomp,
                       self.vm_base)
            finally:
                os._exit(70)
        os.close(w)
        os.set_blocking(r, False)
        self.children[r] = _Child(job, pid, r, scratch, now)
        self.sel.register(r, selectors.EVENT_READ, "child")

    def on_child_output(self, child: _Child) -> None:
        try:
            data = os.read(child.fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        job = child.job
        for b in data:
            child.progress_at = time.monotonic()
            if not child.got_setup:
                child.got_setup = True
                verdict = _CODES.get(b, CRASHED)
                if not job.setup_done:
                    job.setup_done = True
                    job.req.setup[job.index] = verdict
                if verdict != PASSED:
                    job.finish(FAILED if verdict == FAILED else verdict)
            elif b == ord("B"):
                child.budget_spent = True
            elif job.next < job.n_tests:
                job.set(_CODES.get(b, CRASHED))
        if not data:
            self.reap(child, killed=False)
        elif job.lost_in_row >= int(job.limits["max_timeouts"]):
            self.reap(child, killed=True)

    def reap(self, child: _Child, *, killed: bool) -> None:
        """End a child (killing it when it still runs) and decide what comes next."""
        self.sel.unregister(child.fd)
        del self.children[child.fd]
        os.close(child.fd)
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid == 0:
            killed = True
            for target in (-child.pid, child.pid):
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass
            _, status, usage = os.wait4(child.pid, 0)
        shutil.rmtree(child.scratch, ignore_errors=True)
        job = child.job
        job.cpu_used += usage.ru_utime + usage.ru_stime
        timed_out = killed or os.WIFSIGNALED(status) and os.WTERMSIG(status) in (
            signal.SIGXCPU, signal.SIGKILL
        )
        lost = TIMEOUT if timed_out else CRASHED  # else os._exit, a segfault, memory
        if not child.got_setup:
            # The context or the solution itself hangs or crashes: no assert can run.
            if not job.setup_done:
                job.setup_done = True
                job.req.setup[job.index] = lost
            job.finish(lost)
        elif job.next < job.n_tests and not child.budget_spent:
            job.set(lost)
        out_of_time = time.monotonic() >= job.deadline or job.cpu_used >= job.limits["cpu_s"]
        if child.budget_spent or out_of_time:
            job.finish(TIMEOUT)
        elif job.lost_in_row >= int(job.limits["max_timeouts"]):
            job.finish(TIMEOUT if job.req.verdicts[job.index][job.next - 1] == TIMEOUT
                       else CRASHED)
        if job.next < job.n_tests:
            self.queue.appendleft(job)  # go on from the next assert in a new child
        else:
            self.job_done(job)

    def check_deadlines(self) -> None:
        now = time.monotonic()
        for child in list(self.children.values()):
            stalled = now - child.progress_at > child.job.limits["assert_wall_s"] + self.grace
            if now >= child.job.deadline or stalled:
                self.reap(child, killed=True)

    def next_timeout(self) -> float | None:
        if not self.children:
            return None
        now = time.monotonic()
        soonest = min(
            min(c.job.deadline, c.progress_at + c.job.limits["assert_wall_s"] + self.grace)
            for c in self.children.values()
        )
        return max(0.0, soonest - now) + 0.001

    # -- the loop

    def serve(self) -> None:
        self.sel.register(0, selectors.EVENT_READ, "stdin")
        os.set_blocking(0, False)
        while True:
            while self.queue and len(self.children) < self.cores:
                self.start(self.queue.popleft())
            for key, _ in self.sel.select(self.next_timeout()):
                if key.data == "stdin":
                    if not self.on_stdin():
                        return
                else:
                    child = self.children.get(key.fd)
                    if child is not None:
                        self.on_child_output(child)
            self.check_deadlines()

    def on_stdin(self) -> bool:
        try:
            data = os.read(0, 1 << 20)
        except BlockingIOError:
            return True
        if not data:
            return False  # the server closed the pipe: stop
        self.inbuf += data
        while b"\n" in self.inbuf:
            line, self.inbuf = self.inbuf.split(b"\n", 1)
            if line.strip():
                self.on_request(line)
        return True

    def shutdown(self) -> None:
        for child in list(self.children.values()):
            self.reap(child, killed=True)


# ---------------------------------------------------------------------------
# Start-up


def _confine_worker(config: dict[str, object]) -> list[str]:
    """Apply the worker-wide layers of the chosen path; returns the active layers."""
    path = config["path"]
    read_paths = [str(p) for p in config["read_paths"]]  # type: ignore[attr-defined]
    layers: list[str] = []
    if path == "bwrap":
        layers.append("bwrap")
    elif path == "unshare":
        confine.enter_namespaces()
        pid = os.fork()  # the child is pid 1 of the new pid namespace
        if pid:
            signal.signal(signal.SIGTERM, lambda *a: os.kill(pid, signal.SIGKILL))
            _, status = os.waitpid(pid, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        confine.die_with_parent()
        confine.build_root(read_paths, _DEVICES, int(config["scratch_bytes"]))  # type: ignore[call-overload]
        config["scratch"] = "/tmp"
        layers.append("unshare")
    elif path == "landlock":
        abi = confine.landlock_restrict(read_paths + _DEVICES, [str(config["scratch"])])
        layers.append("landlock")
        config["landlock_abi"] = abi
    layers.append("rlimits")
    if config.get("seccomp"):
        layers.append("seccomp")
    return layers


def main() -> None:
    config = json.loads(sys.argv[1])
    confine.die_with_parent()
    for name in _PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    error = None
    if config.get("seccomp"):
        why = confine.seccomp_available()
        if why:
            config["seccomp"] = False
            error = why
    config["vm_base"] = confine.vm_bytes()  # before Landlock hides /proc
    try:
        layers = _confine_worker(config)
        confine.not_dumpable()
    except OSError as e:
        os.write(1, (json.dumps({"ready": False, "error": str(e)}) + "\n").encode())
        return
    gc.collect()
    gc.freeze()  # fewer copy-on-write faults in the children
    ready = {"ready": True, "layers": layers, "pid": os.getpid(), "seccomp_error": error,
             "landlock_abi": config.get("landlock_abi", 0)}
    os.write(1, (json.dumps(ready) + "\n").encode())
    worker = Worker(config)
    try:
        worker.serve()
    finally:
        worker.shutdown()


if __name__ == "__main__":
    main()
