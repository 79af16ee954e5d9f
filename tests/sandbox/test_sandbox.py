"""The sandbox's contract: verdicts, programs, threads, paths, refusals, recovery.

These run ordinary (non-destructive) code on the real worker; the destructive
cases are in test_hostile.py, inside a throwaway namespace.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from cascode.engine.errors import CascodeError, SandboxUnavailable
from cascode.engine.sandbox import create_sandbox
from cascode.engine.sandbox.process import ProcessSandbox, _self_check, _verdict_rows
from cascode.engine.types import ExecutionLimits, Verdict

from ..conftest import in_ci, need
from ..host_facts import (
    bwrap_installed,
    expected_auto_path,
    host_refusal,
    landlock_abi,
)

P, F, T, C = Verdict.PASSED, Verdict.FAILED, Verdict.TIMEOUT, Verdict.CRASHED
FAST = ExecutionLimits(assert_timeout_s=0.2, solution_cpu_s=1.0, solution_wall_s=4.0,
                       max_consecutive_timeouts=2)


def test_auto_picks_the_best_working_path(sandbox: ProcessSandbox) -> None:
    # Decided by the host, probed without the sandbox's code: bwrap where it is
    # installed and namespaces are permitted, else unshare, else Landlock.
    if in_ci():  # elsewhere, a machine without bwrap must pick the next path
        need(bwrap_installed(), "bubblewrap (bwrap) is not installed")
    expected = expected_auto_path()
    assert expected is not None, "the host permits no isolation path: no namespaces, no Landlock"
    assert sandbox.path == expected, sandbox.refused
    assert sandbox.layers == [expected, "rlimits", "seccomp"]
    # Exactly the better paths were refused, bwrap for the reason the host gives.
    better = ["bwrap", "unshare", "landlock"][: ["bwrap", "unshare", "landlock"].index(expected)]
    assert list(sandbox.refused) == better, sandbox.refused
    if not bwrap_installed():
        assert sandbox.refused["bwrap"] == "bubblewrap (bwrap) is not installed"


def test_matrix_of_solutions_and_asserts(sandbox: ProcessSandbox) -> None:
    solutions = [
        "def add(a, b):\n    return a + b\n",
        "def add(a, b):\n    return a - b\n",
        "def add(a, b):\n    raise ValueError('no')\n",
        "def add(a, b:\n",  # does not compile: every assert fails
    ]
    tests = ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(3, 0) == 3",
             "assert add(", "undefined_name"]
    m = sandbox.run_matrix(solutions, tests)
    assert m.verdicts == (
        (P, P, P, F, F),
        (F, F, P, F, F),
        (F, F, F, F, F),
        (F, F, F, F, F),
    )
    assert m.seconds > 0 and not m.unverified
    assert m.passed()[0] == [True, True, True, False, False]


def test_context_runs_before_each_solution(sandbox: ProcessSandbox) -> None:
    context = "import math\nOFFSET = 10\n\ndef helper(x):\n    return x * 2\n"
    m = sandbox.run_matrix(["def f(x):\n    return helper(x) + OFFSET + math.floor(0.5)\n"],
                           ["assert f(1) == 12"], context=context)
    assert m.verdicts == ((P,),)
    # A context that fails makes every assert fail rather than crash the request.
    m = sandbox.run_matrix(["def f(x):\n    return x\n"], ["assert f(1) == 1"],
                           context="import no_such_module_here\n")
    assert m.verdicts == ((F,),)


@pytest.mark.parametrize("future", ["", "from __future__ import annotations\n"])
def test_dataclasses_work_with_and_without_string_annotations(
        sandbox: ProcessSandbox, future: str) -> None:
    # A module-level dataclass needs its module in sys.modules (string annotations) and
    # real annotations where the file has no __future__ import (the worker's own must
    # not leak into the code it compiles).
    context = (f"{future}import dataclasses\n\n@dataclasses.dataclass\nclass Point:\n"
               "    x: int\n    y: int = 0\n")
    m = sandbox.run_matrix(["def norm1(p):\n    return abs(p.x) + abs(p.y)\n"],
                           ["assert norm1(Point(3, -4)) == 7",
                            "assert Point.__annotations__['x'] in (int, 'int')"],
                           context=context)
    assert m.verdicts == ((P, P),)
    program = context + "assert dataclasses.fields(Point)[0].name == 'x'\n"
    assert sandbox.run_program(program) == P


def test_timeouts_stop_a_solution_early_and_others_go_on(sandbox: ProcessSandbox) -> None:
    solutions = ["def f():\n    while True:\n        pass\n", "def f():\n    return 1\n"]
    tests = ["f()"] * 6 + ["assert f() == 1"]
    m = sandbox.run_matrix(solutions, tests, limits=FAST)
    # Two timeouts in a row end the first solution: the rest count as timeouts.
    assert m.verdicts[0] == (T,) * 7
    assert m.verdicts[1] == (P,) * 7


def test_a_crashing_assert_does_not_lose_the_next_ones(sandbox: ProcessSandbox) -> None:
    solution = "import os, ctypes\ndef f(x):\n    return x\n"
    tests = ["assert f(1) == 1", "ctypes.string_at(0)", "assert f(2) == 2", "os._exit(3)",
             "assert f(3) == 3", "assert f(3) == 4"]
    m = sandbox.run_matrix([solution], tests, limits=FAST)
    assert m.verdicts == ((P, C, P, C, P, F),)


def test_solution_that_hangs_at_definition(sandbox: ProcessSandbox) -> None:
    m = sandbox.run_matrix(["while True:\n    pass\n"], ["assert True", "assert 1"],
                           limits=FAST)
    assert m.verdicts == ((T, T),)


def test_run_program(sandbox: ProcessSandbox) -> None:
    program = ("def candidate(x):\n    return x * 2\n\n"
               "def check(candidate):\n"
               "    assert candidate(2) == 4\n    assert candidate(0) == 0\n\n"
               "check(candidate)\n")
    assert sandbox.run_program(program) is P
    assert sandbox.run_program(program.replace("== 4", "== 5")) is F
    assert sandbox.run_program("import time\ntime.sleep(100)\n", limits=FAST) is T
    assert sandbox.run_program("import os\nos._exit(0)\n") is C


def test_empty_requests(sandbox: ProcessSandbox) -> None:
    assert sandbox.run_matrix([], ["assert True"]).verdicts == ()
    assert sandbox.run_matrix(["x = 1"], []).verdicts == ((),)


def test_concurrent_callers_get_their_own_answers(sandbox: ProcessSandbox) -> None:
    errors: list[str] = []

    def caller(n: int) -> None:
        for r in range(4):
            sols = [f"def f():\n    return {n * 100 + r + s}\n" for s in range(3)]
            tests = [f"assert f() == {n * 100 + r + s}" for s in range(3)]
            m = sandbox.run_matrix(sols, tests)
            want = tuple(tuple(P if s == t else F for t in range(3)) for s in range(3))
            if m.verdicts != want:
                errors.append(f"caller {n} round {r}: {m.verdicts}")

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_worker_death_is_survived() -> None:
    with create_sandbox() as sb:
        assert sb._worker is not None
        first = sb._worker.proc.pid
        sb._worker.proc.kill()
        sb._worker.proc.wait()
        m = sb.run_matrix(["def f():\n    return 1\n"], ["assert f() == 1"])
        # The request that meets a dead worker restarts it and is answered.
        assert m.verdicts == ((P,),)
        assert sb._worker.proc.pid != first
    with pytest.raises(SandboxUnavailable):
        sb.run_matrix(["x = 1"], ["assert x"])


def test_a_sandbox_made_in_a_thread_outlives_the_thread() -> None:
    # The kernel's parent-death signal follows the parent *thread*: a worker started
    # from a request thread must not die when that thread ends.
    made: list[ProcessSandbox] = []
    t = threading.Thread(target=lambda: made.append(create_sandbox()))
    t.start()
    t.join()
    (sb,) = made
    with sb:
        assert sb._worker is not None
        pid = sb._worker.proc.pid
        time.sleep(0.3)
        m = sb.run_matrix(["def f():\n    return 1\n"], ["assert f() == 1"])
        assert m.verdicts == ((P,),)
        assert sb._worker.proc.pid == pid  # the same worker: it did not die


def test_unknown_layers_value_is_a_clear_error() -> None:
    with pytest.raises(CascodeError, match="sandbox.layers: unknown value 'firejail'"):
        create_sandbox("firejail")


def test_rlimits_alone_is_refused_unless_opted_in() -> None:
    sb = create_sandbox("rlimits")
    assert not sb.available
    assert "unsafe" in sb.reason
    with pytest.raises(SandboxUnavailable, match="rlimits"):
        sb.run_matrix(["x = 1"], ["assert x"])
    sb.close()
    with create_sandbox("rlimits", allow_unsafe=True) as unsafe:
        assert unsafe.available and unsafe.layers[0] == "rlimits"
        m = unsafe.run_matrix(["def f():\n    return 2\n"], ["assert f() == 2", "assert f() == 3"])
        assert m.verdicts == ((P, F),)
        # The self-check sees that this path does not contain writes.
        problems = _self_check(unsafe, isolated=True)
        assert problems is not None and "written outside scratch" in problems


def test_the_self_check_refuses_a_path_that_fails_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from cascode.engine.sandbox import process

    # Hold the rlimits path (which contains nothing) to the isolated paths' standard.
    real = process._self_check
    monkeypatch.setattr(process, "_self_check", lambda sb, isolated=True: real(sb))
    sb = ProcessSandbox("rlimits", allow_unsafe=True)
    assert not sb.available
    assert "a file was written outside scratch" in sb.refused["rlimits"]
    assert sb._worker is None
    with pytest.raises(SandboxUnavailable, match="outside scratch"):
        sb.run_matrix(["x = 1"], ["assert x"])
    sb.close()


def test_forced_path_without_its_prerequisite(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on this PATH
    sb = create_sandbox("bwrap")
    assert not sb.available
    assert "bubblewrap (bwrap) is not installed" in sb.reason
    sb.close()


@pytest.mark.parametrize("path", ["bwrap", "unshare", "landlock"])
def test_environment_variable_forces_a_path(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    refusal = host_refusal(path)  # the host's own verdict, not the sandbox's
    if refusal is not None:
        pytest.skip(f"{path}: {refusal}")
    if path == "bwrap":
        need(bwrap_installed(), "bubblewrap (bwrap) is not installed")
    monkeypatch.setenv("CASCODE_SANDBOX_LAYERS", path)
    with create_sandbox("auto") as sb:
        assert sb.available, sb.reason
        assert sb.path == path and sb.requested == path
        assert sb.layers == [path, "rlimits", "seccomp"]
        m = sb.run_matrix(["def f():\n    return 1\n"], ["assert f() == 1", "assert f() == 2"])
        assert m.verdicts == ((P, F),)


def test_landlock_is_refused_exactly_where_the_kernel_lacks_it() -> None:
    with create_sandbox("landlock") as sb:
        if landlock_abi() >= 1:
            assert sb.available, sb.reason
        else:
            assert not sb.available and "no Landlock" in sb.refused["landlock"]


def test_missing_or_malformed_results_count_as_crashes() -> None:
    assert _verdict_rows(None, 2, 1, "verdicts") == [[C], [C]]
    assert _verdict_rows({"verdicts": [[0, 1]]}, 2, 2, "verdicts") == [[C, C], [C, C]]
    rows = _verdict_rows({"verdicts": [[0, 7], "x"]}, 2, 2, "verdicts")
    assert rows == [[P, C], [C, C]]


def test_close_stops_the_worker() -> None:
    sb = create_sandbox()
    assert sb._worker is not None
    proc = sb._worker.proc
    sb.close()
    assert proc.poll() is not None
    assert not os.path.exists(sb._scratch)


_FORGER = '''
import ctypes

def _boards():
    with open("/proc/self/maps") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == "/dev/zero" and "rw-s" in parts[1]:
                yield tuple(int(x, 16) for x in parts[0].split("-"))

def count():
    return len(list(_boards()))

def forge():
    # Write "passed" into every shared anonymous mapping this process can see: the
    # verdict boards of other children must not be among them.
    hits = 0
    for lo, hi in _boards():
        ctypes.memset(lo + 9, ord("P"), min(hi - lo - 9, 63))  # slots 1..63
        hits += 1
    return hits
'''


def test_a_solution_cannot_write_another_solutions_verdicts(sandbox: ProcessSandbox) -> None:
    honest = "def count():\n    return -1\n\ndef forge():\n    return -1\n"
    # The forger counts the boards it sees before it writes: exactly one, its own.
    # It then forges slots 1.. of every board it sees; its own slot 0 (the count)
    # is never overwritten, so the worker reads the real verdict there. Its other
    # slots are not checked: it shares that page with the worker by design.
    tests = ["assert count() == 1", "assert forge() >= 1"] + ["assert False"] * 4
    # Last, so that it runs in a child forked after its siblings' boards existed.
    m = sandbox.run_matrix([honest, honest, honest, _FORGER], tests)
    assert m.verdicts[3][0] == P
    for row in m.verdicts[:3]:
        assert row == (F,) * 6


def test_scratch_is_emptied_between_children(sandbox: ProcessSandbox) -> None:
    writer = ("import os\ndef f():\n    open('note.txt', 'w').write('x')\n"
              "    os.chmod('.', 0)\n    return True\n")
    reader = ("import os\ndef f():\n    open('mine.txt', 'w').write('y')\n"
              "    return not os.path.exists('note.txt')\n")
    for _ in range(3):  # children reuse the scratch folders of earlier ones
        m = sandbox.run_matrix([writer, reader, reader, writer, reader, reader], ["assert f()"])
        assert m.verdicts == ((P,),) * 6
