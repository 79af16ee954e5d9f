"""The sandbox worker: a long-lived, single-threaded process that forks one child
per solution and collects per-assert verdicts as they are made.

It runs from source (`python -I -c`), standard library only, with `_confine`'s
source loaded beside it as the module `_cascode_confine`. Protocol: one JSON
object per line on stdin (requests) and stdout (the ready line, then responses).

Request:  {"id": int, "solutions": [str], "tests": [str], "context": str, "limits": {...}}
Response: {"id": int, "setup": [int], "verdicts": [[int]], "seconds": float}
Verdict codes are engine.types.Verdict: 0 passed, 1 failed, 2 timeout, 3 crashed.

Children are forked and confined ahead of time (spares) and each receives one
job: the setup (context + solution) and the assert lines. A child records each
verdict, as it is made, on a page of memory shared with the worker (P passed,
F failed, T timed out): no system call and no wake-up per assert, and what it
recorded survives its death. The worker wakes when a child exits (its pidfd) or
at a deadline: it kills a child that made no progress for an assert's wall time
plus a grace, or that reached its solution's deadline, and forks a new child
from the next assert, until too many asserts in a row were lost.
"""

from __future__ import annotations

import builtins
import collections
import ctypes
import gc
import json
import marshal
import mmap
import os
import resource
import selectors
import shutil
import signal
import sys
import tempfile
import time
import types

try:
    # The worker runs as a script, with _confine.py loaded under this name (paths.py).
    import _cascode_confine as confine  # type: ignore[import-not-found]  # pyright: ignore
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

# The shared board: [0] the setup's verdict, [1] B when the CPU budget ran out,
# [2] D when the child stopped by itself; assert i's verdict at _BOARD_HEAD + i.
_BOARD_HEAD = 8
MAX_TESTS = 16384
_BOARD_SIZE = _BOARD_HEAD + MAX_TESTS


class _AssertTimeout(BaseException):
    """Raised by the per-assert timers; BaseException so `except Exception` in a
    solution does not swallow it."""


# ---------------------------------------------------------------------------
# The child


def _spare(job_fd: int, board: mmap.mmap, others: list[mmap.mmap], devnull: int,
           seccomp: confine.SeccompProgram | None) -> None:
    """A child forked ahead of time: confined first, then it waits for its one job.

    Forking and confining happen while the worker is idle, so a request only pays
    for sending the job and running it.
    """
    os.setpgid(0, 0)
    confine.die_with_parent()
    # Siblings' boards were inherited with the worker's memory: unmap them, so that
    # one solution cannot write another's verdicts.
    for other in others:
        other.close()
    # And any other shared page still mapped (a board whose owner is gone).
    own = ctypes.c_char.from_buffer(board)
    confine.unmap_shared_except(ctypes.addressof(own))
    del own
    # Nor read or write a sibling's memory through /proc/<pid>/mem.
    confine.not_dumpable()
    for target in (0, 1, 2):
        os.dup2(devnull, target)
    os.closerange(3, job_fd)
    os.closerange(job_fd + 1, 65536)
    os.environ.clear()
    os.environ.update(PATH="/usr/bin:/bin", LANG="C.UTF-8")
    sys.stdin = open(os.devnull)  # noqa: SIM115 - the child ends with os._exit
    # Capabilities and no_new_privs come from the worker, which gave them up at start.
    if seccomp is not None:
        seccomp.load()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the cap fail, not kill
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    header = _read_exact(job_fd, 8)
    if len(header) < 8:
        os._exit(0)  # the worker retired this spare
    job = marshal.loads(_read_exact(job_fd, int(header)))
    os.close(job_fd)
    _run_job(board, job)
    board[2] = ord("D")
    os._exit(0)


def _read_exact(fd: int, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _run_job(board: mmap.mmap, job: dict[str, object]) -> None:
    limits: dict[str, float] = job["limits"]  # type: ignore[assignment]
    setup = str(job["setup"])
    # Assert lines come compiled by the worker (None: they did not compile).
    tests: list[object] = marshal.loads(job["tests"])  # type: ignore[arg-type]
    start = int(job["start"])  # type: ignore[call-overload]
    scratch = str(job["scratch"])
    os.chdir(scratch)
    os.environ.update(HOME=scratch, TMPDIR=scratch)
    tempfile.tempdir = scratch
    cpu_end = time.process_time() + limits["cpu_s"]
    vm_base = int(job["vm_base"])  # type: ignore[call-overload]
    confine.set_rlimits(
        cpu_s=cpu_end + 0.5,
        address_space=vm_base + int(limits["memory_mb"]) * 2**20 if vm_base else 0,
        file_bytes=int(limits["file_mb"] * 2**20),
        open_files=64,
    )

    def on_timer(signum: int, frame: object) -> None:
        if armed[0]:
            raise _AssertTimeout()

    armed = [False]
    cpu_t, wall_t = limits["assert_s"], limits["assert_wall_s"]
    max_lost = int(limits["max_timeouts"])

    def run(source: object, g: dict[str, object]) -> int:
        # Restore what a previous assert may have changed, then arm both timers:
        # CPU time decides under load, wall time catches sleeps and blocking reads.
        if signal.getsignal(signal.SIGALRM) is not on_timer:
            signal.signal(signal.SIGALRM, on_timer)
        if signal.getsignal(signal.SIGPROF) is not on_timer:
            signal.signal(signal.SIGPROF, on_timer)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        sys.setrecursionlimit(1000)
        try:
            try:
                armed[0] = True
                signal.setitimer(signal.ITIMER_PROF, cpu_t)
                signal.setitimer(signal.ITIMER_REAL, wall_t)
                if isinstance(source, str):
                    source = compile(source, "<sandbox>", "exec", dont_inherit=True)
                if source is None:
                    raise SyntaxError("the assert line does not compile")
                exec(source, g)  # type: ignore[arg-type]
                verdict = ord("P")
            finally:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.setitimer(signal.ITIMER_PROF, 0)
        except _AssertTimeout:
            verdict = ord("T")
        except BaseException:  # SystemExit and KeyboardInterrupt end only this assert
            verdict = ord("F")
        return verdict

    # A real module, registered under its name: dataclasses and typing look the module
    # of a class up in sys.modules (string annotations of `from __future__ import
    # annotations` fail without it). This child runs one solution, then exits.
    module = types.ModuleType("__sandbox__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__sandbox__"] = module
    g: dict[str, object] = module.__dict__
    verdict = run(setup, g)  # the context and the solution
    board[0] = verdict
    if verdict != ord("P"):
        return
    lost = 0
    for i in range(start, len(tests)):
        verdict = run(tests[i], g)
        board[_BOARD_HEAD + i] = verdict
        lost = lost + 1 if verdict == ord("T") else 0
        if lost >= max_lost:
            return  # the worker counts the rest as timeouts
        if time.process_time() > cpu_end:
            board[1] = ord("B")
            return


# ---------------------------------------------------------------------------
# The worker's bookkeeping


class _Request:
    def __init__(self, rid: int, n_solutions: int, n_tests: int, tests: bytes) -> None:
        self.id = rid
        self.tests = tests  # the assert lines' code objects, marshalled once for every child
        self.setup: list[int] = [CRASHED] * n_solutions
        self.verdicts = [[CRASHED] * n_tests for _ in range(n_solutions)]
        self.open_jobs = n_solutions
        self.t0 = time.monotonic()


class _Job:
    """One solution of one request, possibly over several children."""

    def __init__(self, req: _Request, index: int, setup: str, n_tests: int,
                 limits: dict[str, float]):
        self.req, self.index, self.setup, self.limits = req, index, setup, limits
        self.n_tests = n_tests
        self.next = 0  # the next assert without a verdict
        self.lost_in_row = 0  # asserts lost in a row to kills or timeouts
        self.cpu_used = 0.0
        self.deadline = 0.0  # set when its first child starts
        self.setup_done = False

    def set(self, verdict: int) -> None:
        self.req.verdicts[self.index][self.next] = verdict
        self.next += 1
        self.lost_in_row = self.lost_in_row + 1 if verdict in (TIMEOUT, CRASHED) else 0

    def finish(self, rest: int) -> None:
        while self.next < self.n_tests:
            self.req.verdicts[self.index][self.next] = rest
            self.next += 1


class _Child:
    def __init__(self, job: _Job, pid: int, pidfd: int, board: mmap.mmap, scratch: str,
                 now: float) -> None:
        self.job, self.pid, self.pidfd, self.board, self.scratch = job, pid, pidfd, board, scratch
        self.progress_at = now
        self.got_setup = False


class _Spare:
    def __init__(self, pid: int, pidfd: int, job_w: int, board: mmap.mmap) -> None:
        self.pid, self.pidfd, self.job_w, self.board = pid, pidfd, job_w, board

    def discard(self) -> None:
        os.close(self.job_w)
        if self.pidfd >= 0:
            os.close(self.pidfd)
        _kill_and_wait(self.pid)
        self.board.close()


class Worker:
    def __init__(self, config: dict[str, object]) -> None:
        self.cores = max(1, int(config.get("cores", 1)))  # type: ignore[call-overload]
        self.scratch = str(config["scratch"])
        self.grace = float(config.get("grace_s", 0.5))  # type: ignore[arg-type]
        self.devnull = int(config["devnull"])  # type: ignore[call-overload]
        self.vm_base = int(config.get("vm_base", 0))  # type: ignore[call-overload]
        self.sel = selectors.DefaultSelector()
        self.queue: collections.deque[_Job] = collections.deque()
        self.children: dict[int, _Child] = {}  # by pid
        self.spares: collections.deque[_Spare] = collections.deque()
        self.n_spares = max(2 * self.cores, int(config.get("spares", 0)))  # type: ignore[call-overload]
        prog = config.get("seccomp_program")
        self.seccomp_program = prog if isinstance(prog, confine.SeccompProgram) else None
        self.inbuf = b""
        self.compiled: dict[str, object] = {}
        # One scratch folder per concurrent child, emptied after each: creating and
        # removing a folder per child costs milliseconds on a disk file system.
        self.free_slots = [tempfile.mkdtemp(dir=self.scratch, prefix="slot-")
                           for _ in range(self.cores)]

    # -- requests

    def compile_test(self, source: str) -> object:
        """An assert line's code object (None when it does not compile), compiled once
        here rather than once per child; cached, as callers repeat their suites."""
        code = self.compiled.get(source, False)
        if code is False:
            try:
                code = compile(source, "<sandbox>", "exec", dont_inherit=True)
            except BaseException:  # SyntaxError, ValueError (NUL bytes), RecursionError
                code = None
            if len(self.compiled) > 8192:
                self.compiled.clear()
            self.compiled[source] = code
        return code

    def on_request(self, line: bytes) -> None:
        msg = json.loads(line)
        solutions, tests = msg["solutions"], msg["tests"][:MAX_TESTS]
        blob = marshal.dumps([self.compile_test(t) for t in tests])
        req = _Request(int(msg["id"]), len(solutions), len(msg["tests"]), blob)
        limits = msg["limits"]
        context = msg.get("context") or ""
        for i, sol in enumerate(solutions):
            setup = context + "\n" + sol if context else sol
            self.queue.append(_Job(req, i, setup, len(msg["tests"]), limits))
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

    def fork_spare(self) -> _Spare:
        """Fork a confined child that waits for a job.

        Its pidfd becomes readable when it has exited, so the worker reaps it
        without waiting; -1 on kernels without pidfds (before 5.3), where the
        worker polls instead.
        """
        board = mmap.mmap(-1, _BOARD_SIZE)  # shared with the child across fork
        job_r, job_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(job_w)
                others = [s.board for s in self.spares] + [
                    c.board for c in self.children.values()]
                _spare(job_r, board, others, self.devnull, self.seccomp_program)
            finally:
                os._exit(70)
        os.close(job_r)
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = -1
        return _Spare(pid, pidfd, job_w, board)

    def start(self, job: _Job) -> None:
        now = time.monotonic()
        if not job.deadline:
            job.deadline = now + job.limits["wall_s"]
        limits = dict(job.limits)
        limits["cpu_s"] = max(0.05, job.limits["cpu_s"] - job.cpu_used)
        scratch = self.free_slots.pop()
        payload = marshal.dumps({"setup": job.setup, "tests": job.req.tests, "start": job.next,
                                 "limits": limits, "scratch": scratch,
                                 "vm_base": self.vm_base})
        while True:
            spare = self.spares.popleft() if self.spares else self.fork_spare()
            try:
                # A job larger than the pipe's buffer is written while the child reads.
                os.write(spare.job_w, b"%08d" % len(payload))
                view = memoryview(payload)
                while view:
                    view = view[os.write(spare.job_w, view):]
                os.close(spare.job_w)
                break
            except OSError:  # the spare died while waiting: use another
                spare.discard()
        child = _Child(job, spare.pid, spare.pidfd, spare.board, scratch, now)
        self.children[spare.pid] = child
        if spare.pidfd >= 0:
            self.sel.register(spare.pidfd, selectors.EVENT_READ, child)

    def clean_slot(self, slot: str) -> str:
        """Empty a child's scratch folder for the next child (a fresh one if that fails)."""
        try:
            with os.scandir(slot) as entries:
                if next(entries, None) is None and os.stat(slot).st_mode & 0o777 == 0o700:
                    return slot  # untouched: the usual case, one directory read
        except OSError:
            pass
        for path in (self.scratch, slot):  # a child may have taken permissions away
            try:
                os.chmod(path, 0o700)
            except OSError:
                pass
        shutil.rmtree(slot, ignore_errors=True)
        if os.path.exists(slot):
            return tempfile.mkdtemp(dir=self.scratch, prefix="slot-")
        os.mkdir(slot, 0o700)
        return slot

    def top_up(self) -> None:
        """Fork one spare when the worker has nothing else to do."""
        if len(self.spares) < self.n_spares:
            self.spares.append(self.fork_spare())

    def collect(self, child: _Child) -> None:
        """Take the verdicts the child has recorded since the last look."""
        job, board = child.job, child.board
        if not child.got_setup:
            verdict = _CODES.get(board[0])
            if verdict is None:
                return
            child.got_setup = True
            child.progress_at = time.monotonic()
            if not job.setup_done:
                job.setup_done = True
                job.req.setup[job.index] = verdict
            if verdict != PASSED:
                job.finish(verdict)
                return
        moved = False
        while job.next < job.n_tests and job.next < MAX_TESTS:
            code = board[_BOARD_HEAD + job.next]
            if code == 0:
                break
            job.set(_CODES.get(code, CRASHED))
            moved = True
        if moved:
            child.progress_at = time.monotonic()

    def reap(self, child: _Child, *, killed: bool) -> None:
        """End a child (killing it when it still runs) and decide what comes next.

        `killed`: the worker ends it for a deadline or for making no progress.
        """
        del self.children[child.pid]
        if child.pidfd >= 0:
            self.sel.unregister(child.pidfd)
            os.close(child.pidfd)
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid == 0:
            status, usage = _kill_and_wait(child.pid)
        self.collect(child)
        stopped = child.board[2] == ord("D")  # it stopped by itself, for a reason below
        budget_spent = child.board[1] == ord("B")
        child.board.close()
        self.free_slots.append(self.clean_slot(child.scratch))
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
        elif job.next < job.n_tests and not stopped:
            job.set(lost)
        max_lost = int(job.limits["max_timeouts"])
        out_of_time = time.monotonic() >= job.deadline or job.cpu_used >= job.limits["cpu_s"]
        if budget_spent or out_of_time:
            job.finish(TIMEOUT)
        elif job.lost_in_row >= max_lost:
            job.finish(TIMEOUT if job.req.verdicts[job.index][job.next - 1] == TIMEOUT
                       else CRASHED)
        elif job.next >= MAX_TESTS:
            job.finish(CRASHED)  # more asserts than the board holds: not run
        if job.next < job.n_tests:
            self.queue.appendleft(job)  # go on from the next assert in a new child
        else:
            self.job_done(job)

    def check_children(self) -> None:
        """Collect progress; end children past a deadline or stalled; reap the exited
        ones where there is no pidfd to say so."""
        now = time.monotonic()
        for child in list(self.children.values()):
            self.collect(child)
            if child.pidfd < 0 and os.waitid(os.P_PID, child.pid,
                                             os.WEXITED | os.WNOHANG | os.WNOWAIT):
                self.reap(child, killed=False)
                continue
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
        timeout = max(0.0, soonest - now) + 0.001
        if any(c.pidfd < 0 for c in self.children.values()):
            timeout = min(timeout, 0.005)  # no pidfd: poll for exits
        return timeout

    # -- the loop

    def serve(self) -> None:
        self.sel.register(0, selectors.EVENT_READ, None)
        os.set_blocking(0, False)
        while True:
            while self.queue and len(self.children) < self.cores:
                self.start(self.queue.popleft())
            timeout = self.next_timeout()
            if not self.queue and not self.children and len(self.spares) < self.n_spares:
                timeout = 0.0  # poll, and fork a spare if nothing came in
            events = self.sel.select(timeout)
            if not events and not self.queue and not self.children:
                self.top_up()
            for key, _ in events:
                if key.data is None:
                    if not self.on_stdin():
                        return
                elif key.data.pid in self.children:
                    self.reap(key.data, killed=False)
            self.check_children()

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
        while self.spares:
            self.spares.popleft().discard()


def _kill_and_wait(pid: int) -> tuple[int, resource.struct_rusage]:
    for target in (-pid, pid):  # its process group, then itself
        try:
            os.kill(target, signal.SIGKILL)
        except OSError:
            pass
    _, status, usage = os.wait4(pid, 0)
    return status, usage


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
        try:
            config["seccomp_program"] = confine.compile_seccomp()
        except Exception as e:  # pyseccomp or libseccomp missing, or refused
            config["seccomp"] = False
            error = f"seccomp unavailable: {e}"
    config["vm_base"] = confine.vm_bytes()  # before Landlock hides /proc
    config["devnull"] = os.open(os.devnull, os.O_RDWR)  # Landlock grants /dev/null read only
    try:
        layers = _confine_worker(config)
        confine.not_dumpable()
        # The worker needs no capability from here on, and its children inherit none:
        # root without capabilities cannot override file modes or signal other users.
        confine.drop_capabilities()
        confine.no_new_privs()
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
