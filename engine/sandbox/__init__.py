"""The sandbox that runs model-written code: layered isolation around a forking worker.

Generated solutions and asserts never run in the caller's process. One long-lived
worker per `ProcessSandbox` (started with this interpreter, standard library
pre-imported) forks a child per solution; the child runs each assert under CPU and
wall timers and streams one verdict per assert. Isolation, best first:
bubblewrap, namespaces made by the worker itself, Landlock; inside every child,
rlimits, dropped capabilities and a seccomp filter (no fork, exec, sockets,
ptrace, namespaces, or signals to other processes). A self-check at start-up
must give the expected verdicts, or the path is refused and the next one tried.

`layers` (setting `sandbox.layers`, environment variable CASCODE_SANDBOX_LAYERS)
is "auto" or forces one path: "bwrap", "unshare", "landlock", "rlimits".
"""

from __future__ import annotations

import logging

from ..errors import SandboxUnavailable
from .paths import CHOICES, PATHS
from .process import DEFAULT_LIMITS, PROGRAM_LIMITS, ProcessSandbox

log = logging.getLogger(__name__)

__all__ = ["CHOICES", "DEFAULT_LIMITS", "PATHS", "PROGRAM_LIMITS", "ProcessSandbox",
           "create_sandbox"]


def create_sandbox(
    layers: str | None = None, *, allow_unsafe: bool = False, required: bool = False
) -> ProcessSandbox:
    """Start a sandbox on the best working path (or the forced one) and check it.

    The one sandbox factory of the CLI, the server and the calibration. `layers`
    is None or "auto" for the best path, or one forced path. Never raises for a
    machine without isolation unless `required`: the sandbox then has
    `available == False` and a `reason` (logged), and `run_matrix` raises
    SandboxUnavailable. With `required`, that is a SandboxUnavailable naming the
    reason and `cascode doctor`. An unknown `layers` value raises CascodeError.
    """
    sandbox = ProcessSandbox(None if layers == "auto" else layers, allow_unsafe=allow_unsafe)
    if not sandbox.available:
        if required:
            reason = sandbox.reason
            sandbox.close()
            raise SandboxUnavailable(
                f"cannot execute the generated code: {reason} "
                "(see `cascode doctor`; --unsafe-sandbox on a throwaway machine)"
            )
        log.warning("sandbox unavailable (%s): answers will be unverified", sandbox.reason)
    return sandbox
