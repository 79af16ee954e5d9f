"""Starts `cascode serve`'s server over stdio with a scripted backend (tests, benchmark).

CASCODE_TEST_SCRIPT names the JSON script (see fake_backend.py). The sandbox is
the real one when it is installed and CASCODE_TEST_SANDBOX is not "fake".
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fake_backend import scripted_factory  # noqa: E402
from fake_sandbox import child_process_sandbox  # noqa: E402

from cascode.server.server import create_language_server  # noqa: E402


def _sandbox_factory():
    if os.environ.get("CASCODE_TEST_SANDBOX") == "fake":
        return child_process_sandbox
    try:
        import cascode.engine.sandbox as sandbox

        if hasattr(sandbox, "create_sandbox"):
            return None  # the real one
    except ImportError:
        pass
    return child_process_sandbox


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(relativeCreated)d server %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pygls").setLevel(logging.WARNING)
    script = json.loads(Path(os.environ["CASCODE_TEST_SCRIPT"]).read_text())
    server = create_language_server(backend_factory=scripted_factory(script),
                                    sandbox_factory=_sandbox_factory())
    server.start_io()


if __name__ == "__main__":
    main()
