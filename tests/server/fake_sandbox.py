"""A minimal sandbox stand-in: one child interpreter per solution, plain data back.

Used by the server tests when the real sandbox (cascode.engine.sandbox) is not
installed; it isolates nothing beyond the process boundary.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence

from cascode.engine.types import PassMatrix, Verdict

_CHILD = r"""
import json, sys
data = json.load(sys.stdin)
ns = {}
try:
    exec(data["context"], ns)
    exec(data["solution"], ns)
    ok = True
except BaseException:
    ok = False
out = []
for t in data["tests"]:
    if not ok:
        out.append(1)
        continue
    try:
        exec(t, ns)
        out.append(0)
    except BaseException:
        out.append(1)
print(json.dumps(out))
"""


class ChildProcessSandbox:
    available = True
    reason = ""

    def run_matrix(self, solutions: Sequence[str], tests: Sequence[str], *, context: str = "",
                   limits: object = None) -> PassMatrix:
        start = time.perf_counter()
        rows = []
        for solution in solutions:
            data = json.dumps({"context": context, "solution": solution, "tests": list(tests)})
            try:
                proc = subprocess.run([sys.executable, "-I", "-c", _CHILD], input=data,
                                      capture_output=True, text=True, timeout=10)
                codes = json.loads(proc.stdout.strip().splitlines()[-1])
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                codes = [int(Verdict.CRASHED)] * len(tests)
            rows.append(tuple(Verdict(c) for c in codes))
        return PassMatrix(tuple(rows), time.perf_counter() - start)

    def close(self) -> None:
        pass


def child_process_sandbox(layers: str, allow_unsafe: bool) -> ChildProcessSandbox:
    return ChildProcessSandbox()
