"""Starts `cascode serve`'s server with a scripted backend (tests, benchmark): over stdio,
or as `cascode serve`'s arguments say (`--tcp`, `--token-file`, ...).

CASCODE_TEST_SCRIPT names the JSON script (see fake_backend.py). The sandbox is
the real one when it is installed and CASCODE_TEST_SANDBOX is not "fake". With
CASCODE_TEST_TASKS, each task the engine answers is appended to that file. With
CASCODE_TEST_STATS_INTERVAL, the statistics are written that often (seconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fake_backend import scripted_factory  # noqa: E402
from fake_sandbox import child_process_sandbox  # noqa: E402

from cascode.server import cli  # noqa: E402
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
    if os.environ.get("CASCODE_TEST_TASKS"):
        _record_tasks(server.controller.state.host, Path(os.environ["CASCODE_TEST_TASKS"]))
    if os.environ.get("CASCODE_TEST_STATS_INTERVAL"):
        server.controller.state.stats.interval_s = float(os.environ["CASCODE_TEST_STATS_INTERVAL"])
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    cli.serve(server, cli.listen_options(parser.parse_args()))


def _record_tasks(host, path: Path) -> None:
    """Append each task the engine is asked to answer to `path` (JSON lines), so that a
    test sees what the server built: entry point and test-file examples."""
    answer = host.answer

    def recording(task, tier, **kwargs):
        record = {"entry_point": task.entry_point, "started": time.time(),
                  "test_examples": [dataclasses.asdict(e) for e in task.test_examples]}
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return answer(task, tier, **kwargs)

    host.answer = recording


if __name__ == "__main__":
    main()
