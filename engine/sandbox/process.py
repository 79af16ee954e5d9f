"""The server side of the sandbox: starts the worker, checks it, talks to it.

`ProcessSandbox` is thread-safe: requests from any thread are written to the one
worker, which runs them concurrently (children capped at the cores), and a reader
thread hands each response to the thread that waits for it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CascodeError, SandboxUnavailable
from ..types import ExecutionLimits, PassMatrix, Verdict
from .paths import PATHS, cores, prerequisite, requested_layers, worker_command, worker_env

log = logging.getLogger(__name__)

DEFAULT_LIMITS = ExecutionLimits(
    assert_timeout_s=1.0,
    solution_cpu_s=4.0,
    solution_wall_s=10.0,
    memory_mb=512,
    max_consecutive_timeouts=2,
)
# A dataset's hidden test program runs many asserts as one.
PROGRAM_LIMITS = ExecutionLimits(
    assert_timeout_s=6.0,
    solution_cpu_s=6.0,
    solution_wall_s=20.0,
    memory_mb=512,
    max_consecutive_timeouts=1,
)
# The self-check's limits: small, so start-up stays fast.
_CHECK_LIMITS = ExecutionLimits(
    assert_timeout_s=0.15, solution_cpu_s=3.0, solution_wall_s=8.0, max_consecutive_timeouts=9
)
_WALL_FACTOR = 3.0  # an assert's wall-clock timer, in multiples of its CPU timer


def _merge(limits: ExecutionLimits | None, defaults: ExecutionLimits) -> dict[str, float]:
    got = defaults if limits is None else limits
    pick = {f: getattr(got, f) if getattr(got, f) is not None else getattr(defaults, f)
            for f in ("assert_timeout_s", "solution_cpu_s", "solution_wall_s", "memory_mb",
                      "max_consecutive_timeouts")}
    assert_s = max(0.01, float(pick["assert_timeout_s"]))  # 0 would disarm the timers
    return {
        "assert_s": assert_s,
        "assert_wall_s": assert_s * _WALL_FACTOR,
        "cpu_s": max(0.05, float(pick["solution_cpu_s"])),
        "wall_s": max(0.05, float(pick["solution_wall_s"])),
        "memory_mb": float(pick["memory_mb"] or 512),
        "file_mb": 16.0,
        "max_timeouts": float(max(1, int(pick["max_consecutive_timeouts"] or 1))),
    }


class _Launcher:
    """One long-lived thread that starts every worker.

    The worker (and bwrap's --die-with-parent) ask the kernel for SIGKILL when their
    parent goes away, and Linux means the parent *thread*: a worker started from a
    request thread that later ends would die with it. Started from this thread, it
    dies only with the process.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = (
            queue.SimpleQueue())
        self.thread: threading.Thread | None = None

    def run(self, fn: Callable[[], Any]) -> Any:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._serve, daemon=True,
                                               name="cascode-sandbox-launcher")
                self.thread.start()
        done: Future[Any] = Future()
        self.jobs.put((fn, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            fn, done = self.jobs.get()
            try:
                done.set_result(fn())
            except BaseException as e:  # handed to the caller
                done.set_exception(e)


_launcher = _Launcher()


def _launch(fn: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc: subprocess.Popen[bytes] = _launcher.run(fn)
    return proc


@dataclass
class _Pending:
    event: threading.Event
    n_solutions: int = 0
    ahead: int = 0  # solutions in the worker when this request was sent, its own included
    response: dict[str, Any] | None = None


class _Worker:
    """One worker process and its reader thread."""

    def __init__(self, path: str, scratch: str, *, seccomp: bool = True) -> None:
        self.path = path
        self.started = time.monotonic()
        self.proc = _launch(lambda: subprocess.Popen(
            worker_command(path, scratch, seccomp=seccomp),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=worker_env(scratch),
            cwd=scratch,
            close_fds=True,
            start_new_session=True,
        ))
        self.pending: dict[int, _Pending] = {}
        self.inflight = 0  # solutions sent and not answered: what a new request waits behind
        self.lock = threading.Lock()
        self.alive = True
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        try:
            self.ready: dict[str, Any] = json.loads(line) if line else {}
        except ValueError:
            self.ready = {}
        self.startup_s = time.monotonic() - self.started
        threading.Thread(target=self._drain_stderr, daemon=True,
                         name="cascode-sandbox-stderr").start()
        if not self.ready.get("ready"):
            err = self.ready.get("error") or (line.decode(errors="replace").strip()
                                              or f"exited with {self.proc.wait(timeout=5)}")
            self.stop()
            raise OSError(f"the worker did not start: {err}")
        threading.Thread(target=self._read, daemon=True, name="cascode-sandbox-reader").start()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            log.warning("sandbox worker: %s", raw.decode(errors="replace").rstrip())

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
                rid = int(msg["id"])
            except (ValueError, KeyError, TypeError):
                log.warning("sandbox worker: unreadable line %r", line[:200])
                continue
            with self.lock:
                pending = self.pending.pop(rid, None)
                if pending is not None:
                    self.inflight -= pending.n_solutions
            if pending is not None:
                pending.response = msg
                pending.event.set()
        with self.lock:
            self.alive = False
            waiting, self.pending = list(self.pending.values()), {}
        for pending in waiting:
            pending.event.set()  # no response: every cell counts as crashed

    def submit(self, rid: int, request: dict[str, Any]) -> _Pending | None:
        """Send a request; None when the worker is gone (nothing was sent)."""
        pending = _Pending(threading.Event(), n_solutions=len(request["solutions"]))
        data = (json.dumps(request) + "\n").encode()
        with self.lock:
            if not self.alive or self.proc.poll() is not None:
                self.alive = False
                return None
            self.pending[rid] = pending
            self.inflight += pending.n_solutions
            pending.ahead = self.inflight
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except OSError:
                self.alive = False
                self.pending.pop(rid, None)
                self.inflight -= pending.n_solutions
                return None
        return pending

    def stop(self) -> None:
        self.alive = False
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


class ProcessSandbox:
    """Runs model-written code in a confined worker process; see the package docstring."""

    def __init__(self, layers: str | None = None, *, allow_unsafe: bool = False,
                 self_check: bool = True, seccomp: bool = True) -> None:
        """`self_check` and `seccomp` exist for the benchmark, which measures each
        layer's cost; everything else keeps both on."""
        # The environment variable forces a path wherever the setting is left at auto.
        self.requested = requested_layers(layers)
        self.allow_unsafe = allow_unsafe
        self._seccomp = seccomp
        self.available = False
        self.reason = ""
        self.layers: list[str] = []
        self.path: str | None = None
        self.startup_s = 0.0
        self.refused: dict[str, str] = {}  # path -> why it was not used
        self._lock = threading.Lock()
        self._next_id = 0
        self._worker: _Worker | None = None
        self._scratch = tempfile.mkdtemp(prefix="cascode-sandbox-")
        self._closed = False
        _live.add(self)
        self._choose(self_check)

    # -- choosing a path

    def _choose(self, self_check: bool) -> None:
        candidates = PATHS if self.requested == "auto" else (self.requested,)
        for path in candidates:
            if path == "rlimits" and not self.allow_unsafe:
                self.refused[path] = ("rlimits and seccomp alone do not isolate the file "
                                      "system; enable the unsafe setting to run anyway")
                continue
            why = prerequisite(path)
            if why is None:
                why = self._try(path, self_check)
            if why is None:
                self.available = True
                self.path = path
                return
            self.refused[path] = why
            log.info("sandbox path %s refused: %s", path, why)
        self.reason = "no sandbox layer works here: " + "; ".join(
            f"{p}: {w}" for p, w in self.refused.items()
        )
        log.warning("%s", self.reason)

    def _try(self, path: str, self_check: bool) -> str | None:
        t0 = time.monotonic()
        try:
            worker = _Worker(path, self._scratch, seccomp=self._seccomp)
        except OSError as e:
            return str(e)
        seccomp_error = worker.ready.get("seccomp_error")
        if seccomp_error and self._seccomp and not self.allow_unsafe:
            # Without it a child could fork, exec and signal (the Landlock path has no
            # pid namespace to contain that).
            worker.stop()
            return str(seccomp_error)
        self._worker = worker
        self.layers = list(worker.ready.get("layers", []))
        self.available = True
        why = None
        if self_check:
            # The rlimits path isolates nothing by design (the user opted in): only the
            # verdicts must be right there; an escape is logged, not refused.
            why = _self_check(self, isolated=path != "rlimits")
        self.startup_s = time.monotonic() - t0
        if why is not None:
            self.available = False
            self._worker = None
            self.layers = []
            worker.stop()
        return why

    # -- running code

    def run_matrix(self, solutions: Sequence[str], tests: Sequence[str], *, context: str = "",
                   limits: ExecutionLimits | None = None) -> PassMatrix:
        if not self.available:
            raise SandboxUnavailable(self.reason or "the sandbox is closed")
        t0 = time.monotonic()
        if not solutions:
            return PassMatrix((), 0.0)
        resp = self._request(solutions, tests, context, _merge(limits, DEFAULT_LIMITS))
        verdicts = _verdict_rows(resp, len(solutions), len(tests), "verdicts")
        return PassMatrix(tuple(tuple(row) for row in verdicts), time.monotonic() - t0)

    def run_program(self, program: str, *, limits: ExecutionLimits | None = None) -> Verdict:
        """Run a whole program; PASSED iff it completes without an exception."""
        if not self.available:
            raise SandboxUnavailable(self.reason or "the sandbox is closed")
        resp = self._request([program], [], "", _merge(limits, PROGRAM_LIMITS))
        setup = _verdict_rows({"setup": [resp.get("setup")]} if resp else None, 1, 1, "setup")
        return setup[0][0]

    def _request(self, solutions: Sequence[str], tests: Sequence[str], context: str,
                 limits: dict[str, float]) -> dict[str, Any] | None:
        request: dict[str, Any] = {"solutions": list(solutions), "tests": list(tests),
                                   "context": context, "limits": limits}
        for _ in range(2):  # a worker found dead is restarted once
            with self._lock:
                if self._closed:
                    raise SandboxUnavailable("the sandbox is closed")
                worker = self._worker
                if worker is None or not worker.alive:
                    try:
                        worker = self._restart()
                    except OSError as e:
                        raise SandboxUnavailable(f"the sandbox worker did not restart: {e}") \
                            from None
                self._next_id += 1
                request["id"] = self._next_id
            pending = worker.submit(int(request["id"]), request)
            if pending is not None:
                break
            with self._lock:
                if self._worker is worker:
                    worker.alive = False
        else:
            return None
        # The worker enforces every deadline; this one only guards against a hung worker.
        rounds = -(-pending.ahead // max(1, cores()))
        budget = rounds * (limits["wall_s"] + 2.0) + 10.0
        if not pending.event.wait(budget):
            log.warning("sandbox worker did not answer in %.0f s: restarting it", budget)
            with self._lock:
                if self._worker is worker:
                    self._worker = None
            worker.stop()
            return None
        return pending.response

    def _restart(self) -> _Worker:
        assert self.path is not None
        old = self._worker
        if old is not None:
            log.warning("sandbox worker exited (%s): starting a new one", old.proc.poll())
            old.stop()
        self._worker = _Worker(self.path, self._scratch, seccomp=self._seccomp)
        return self._worker

    # -- lifetime

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.available = False
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
        shutil.rmtree(self._scratch, ignore_errors=True)
        _live.discard(self)

    def __enter__(self) -> ProcessSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"layers={self.layers}" if self.available else f"unavailable: {self.reason}"
        return f"<ProcessSandbox {state}>"


def _verdict_rows(resp: dict[str, Any] | None, n: int, m: int, key: str) -> list[list[Verdict]]:
    """The response's rows, checked: anything missing or malformed is CRASHED."""
    rows = resp.get(key) if isinstance(resp, dict) else None
    out = [[Verdict.CRASHED] * m for _ in range(n)]
    if not isinstance(rows, list) or len(rows) != n:
        return out
    for i, row in enumerate(rows):
        if isinstance(row, list) and len(row) == m:
            out[i] = [Verdict(v) if isinstance(v, int) and 0 <= v <= 3 else Verdict.CRASHED
                      for v in row]
    return out


# ---------------------------------------------------------------------------
# The self-check


_CHECK_SOLUTION = '''
import socket
def f(x):
    return x + 1
def loop():
    while True:
        pass
def connect():
    socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
def write():
    with open({target!r}, "w") as fh:
        fh.write("escaped")
'''
_CHECK_TESTS = ["assert f(1) == 2", "assert f(1) == 3", "loop()", "connect()", "write()"]
_CHECK_EXPECTED = [Verdict.PASSED, Verdict.FAILED, Verdict.TIMEOUT, Verdict.FAILED,
                   Verdict.FAILED]
_CHECK_NAMES = ["a known pass", "a known fail", "an infinite loop",
                "a network connect to 127.0.0.1", "a write outside scratch"]


def _self_check(sandbox: ProcessSandbox, *, isolated: bool = True) -> str | None:
    """None when the sandbox gives the expected verdicts and contains the network
    and the file system (when `isolated`), else what went wrong."""
    import sys

    # A file next to the interpreter: visible (read-only) on every path.
    target = str(Path(sys.prefix) / f".cascode-selfcheck-{os.getpid()}-{time.monotonic_ns()}")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code = _CHECK_SOLUTION.format(port=port, target=target)
        try:
            matrix = sandbox.run_matrix([code], _CHECK_TESTS, limits=_CHECK_LIMITS)
        except CascodeError as e:
            return f"self-check failed: {e}"
        try:
            conn, _ = listener.accept()
            conn.close()
            reached = True
        except BlockingIOError:
            reached = False
    escaped = os.path.exists(target)
    if escaped:
        os.unlink(target)
    got = list(matrix.verdicts[0])
    checked = len(_CHECK_NAMES) if isolated else 3
    problems = [
        f"{name}: expected {want.name}, got {have.name}"
        for name, want, have in list(zip(_CHECK_NAMES, _CHECK_EXPECTED, got, strict=True))[
            :checked]
        if want != have
    ]
    escapes = []
    if reached:
        escapes.append("a connection to 127.0.0.1 reached the listener")
    if escaped:
        escapes.append("a file was written outside scratch")
    if isolated:
        problems += escapes
    elif escapes:
        log.warning("sandbox without isolation (unsafe setting): %s", "; ".join(escapes))
    return "self-check: " + "; ".join(problems) if problems else None


# Workers of sandboxes still open at interpreter exit are stopped.
_live: weakref.WeakSet[ProcessSandbox] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for sandbox in list(_live):
        try:
            sandbox.close()
        except Exception:  # exiting anyway
            pass

