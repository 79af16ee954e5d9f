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
import resource
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


def _spare(job_fd: int, res_fd: int, devnull: int, seccomp: confine.SeccompProgram | None
           ) -> None:
    """A child forked ahead of time: confined first, then it waits for its one job.

    Forking and confining happen while the worker is idle, so a request only pays
    for sending the job and running it.
    """
    os.setpgid(0, 0)
    confine.die_with_parent()
    for target in (0, 1, 2):
        os.dup2(devnull, target)
    keep = sorted((job_fd, res_fd))
    os.closerange(3, keep[0])
    os.closerange(keep[0] + 1, keep[1])
    os.closerange(keep[1] + 1, 65536)
    os.environ.clear()
    os.environ.update(PATH="/usr/bin:/bin", LANG="C.UTF-8")
    sys.stdin = open(os.devnull)  # noqa: SIM115 - the child ends with os._exit
    try:
        confine.drop_capabilities()
    except OSError:
        pass  # already without capabilities (user namespace)
    confine.no_new_privs()
    if seccomp is not None:
        seccomp.load()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the cap fail, not kill
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    header = _read_exact(job_fd, 8)
    if len(header) < 8:
        os._exit(0)  # the worker retired this spare
    job = json.loads(_read_exact(job_fd, int(header)))
    os.close(job_fd)
    _run_job(res_fd, job)
    os._exit(0)


def _read_exact(fd: int, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _run_job(fd: int, job: dict[str, object]) -> None:
    limits: dict[str, float] = job["limits"]  # type: ignore[assignment]
    code: list[str] = job["code"]  # type: ignore[assignment]
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
    verdict = run(code[0], g)  # the context and the solution
    os.write(fd, verdict)
    if verdict != b"P":
        return
    for source in code[1 + int(job["start"]):]:  # type: ignore[call-overload]
        os.write(fd, run(source, g))
        if time.process_time() > cpu_end:
            os.write(fd, b"B")
            return


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
    def __init__(self, job: _Job, pid: int, pidfd: int, fd: int, scratch: str, now: float
                 ) -> None:
        self.job, self.pid, self.pidfd, self.fd, self.scratch = job, pid, pidfd, fd, scratch
        self.progress_at = now
        self.got_setup = False
        self.budget_spent = False
        self.eof = False


class Worker:
    def __init__(self, config: dict[str, object]) -> None:
        self.cores = max(1, int(config.get("cores", 1)))  # type: ignore[call-overload]
        self.scratch = str(config["scratch"])
        self.seccomp = bool(config.get("seccomp"))
        self.grace = float(config.get("grace_s", 0.5))  # type: ignore[arg-type]
        self.devnull = int(config["devnull"])  # type: ignore[call-overload]
        self.sel = selectors.DefaultSelector()
        self.queue: collections.deque[_Job] = collections.deque()
        self.children: dict[int, _Child] = {}  # by pid
        self.inbuf = b""
        self.spares: collections.deque[tuple[int, int, int, int]] = collections.deque()
        self.n_spares = max(2 * self.cores, int(config.get("spares", 0)))  # type: ignore[call-overload]
        prog = config.get("seccomp_program")
        self.seccomp_program = prog if isinstance(prog, confine.SeccompProgram) else None
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

    def fork_spare(self) -> tuple[int, int, int, int]:
        """Fork a confined child that waits for a job: (pid, pidfd, job fd, result fd).

        The pidfd becomes readable when the child has exited, so the worker reaps
        it without waiting; -1 on kernels without pidfds (before 5.3).
        """
        job_r, job_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(job_w)
                os.close(res_r)
                _spare(job_r, res_w, self.devnull, self.seccomp_program)
            finally:
                os._exit(70)
        os.close(job_r)
        os.close(res_w)
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = -1
        return pid, pidfd, job_w, res_r

    def start(self, job: _Job) -> None:
        now = time.monotonic()
        if not job.deadline:
            job.deadline = now + job.limits["wall_s"]
        limits = dict(job.limits)
        limits["cpu_s"] = max(0.05, job.limits["cpu_s"] - job.cpu_used)
        scratch = tempfile.mkdtemp(dir=self.scratch)
        payload = json.dumps({"code": job.code, "start": job.next, "limits": limits,
                              "scratch": scratch, "vm_base": self.vm_base}).encode()
        while True:
            pid, pidfd, job_w, res_r = self.spares.popleft() if self.spares else self.fork_spare()
            try:
                # A job larger than the pipe's buffer is written while the child reads.
                os.write(job_w, b"%08d" % len(payload))
                view = memoryview(payload)
                while view:
                    view = view[os.write(job_w, view):]
                break
            except OSError:  # the spare died while waiting: use another
                os.close(res_r)
                if pidfd >= 0:
                    os.close(pidfd)
                _kill_and_wait(pid)
            finally:
                os.close(job_w)
        os.set_blocking(res_r, False)
        child = _Child(job, pid, pidfd, res_r, scratch, now)
        self.children[pid] = child
        self.sel.register(res_r, selectors.EVENT_READ, ("out", child))
        if pidfd >= 0:
            self.sel.register(pidfd, selectors.EVENT_READ, ("exit", child))

    def top_up(self) -> None:
        """Fork one spare when the worker has nothing else to do."""
        if len(self.spares) < self.n_spares:
            self.spares.append(self.fork_spare())

    def on_child_output(self, child: _Child) -> None:
        while not child.eof:
            try:
                data = os.read(child.fd, 4096)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                child.eof = True
                self.sel.unregister(child.fd)
                break
            self.on_bytes(child, data)
        if child.eof and child.pidfd < 0:
            self.reap(child, killed=False)  # no pidfd: the end of output stands for the exit
        elif child.job.lost_in_row >= int(child.job.limits["max_timeouts"]):
            self.reap(child, killed=True)

    def on_bytes(self, child: _Child, data: bytes) -> None:
        job = child.job
        child.progress_at = time.monotonic()
        for b in data:
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

    def on_child_exit(self, child: _Child) -> None:
        self.on_child_output(child)  # what it wrote before exiting
        if child.pid in self.children:
            self.reap(child, killed=False)

    def reap(self, child: _Child, *, killed: bool) -> None:
        """End a child (killing it when it still runs) and decide what comes next.

        `killed`: the worker ends it for a deadline or too many timeouts in a row.
        """
        del self.children[child.pid]
        if not child.eof:
            self.sel.unregister(child.fd)
        os.close(child.fd)
        if child.pidfd >= 0:
            self.sel.unregister(child.pidfd)
            os.close(child.pidfd)
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid == 0 and not killed and child.pidfd < 0:
            # Without a pidfd, the end of output comes a moment before the exit.
            for _ in range(50):
                time.sleep(0.001)
                pid, status, usage = os.wait4(child.pid, os.WNOHANG)
                if pid:
                    break
        if pid == 0:
            status, usage = _kill_and_wait(child.pid)
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
            timeout = self.next_timeout()
            if not self.queue and not self.children and len(self.spares) < self.n_spares:
                timeout = 0.0  # poll, and fork a spare if nothing came in
            events = self.sel.select(timeout)
            if not events and not self.queue and not self.children:
                self.top_up()
            for key, _ in events:
                if key.data == "stdin":
                    if not self.on_stdin():
                        return
                else:
                    kind, child = key.data
                    if child.pid not in self.children:
                        continue  # reaped earlier in this round
                    if kind == "out":
                        self.on_child_output(child)
                    else:
                        self.on_child_exit(child)
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
        while self.spares:
            pid, pidfd, job_w, res_r = self.spares.popleft()
            for fd in (pidfd, job_w, res_r):
                if fd >= 0:
                    os.close(fd)
            _kill_and_wait(pid)


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
