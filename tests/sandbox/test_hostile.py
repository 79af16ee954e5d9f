"""The hostile-input suite, under every path that `sandbox.layers` can force here.

Each path's cases run in one hostile_runner.py process that is pid 1 of a
throwaway pid and mount namespace, with HOME at a folder made for the test:
a sandbox failure can then hurt only that namespace and that folder. The
runner checks, per case: the verdicts, that the worker survived, that nothing
outside scratch changed, that the listener on 127.0.0.1 was not reached, that
no process outlived the request, and that the next request still works.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import need
from ..host_facts import bwrap_installed, host_refusal, namespaces_blocked

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from hostile_cases import CASES  # noqa: E402

PATHS = ["bwrap", "unshare", "landlock"]


def _run_path(path: str, workdir: Path) -> dict[str, dict]:
    # What the host itself rules out, found independently of the sandbox (no
    # Landlock in the kernel, namespaces refused): the only skips that stay in CI.
    # The throwaway pid namespace around the runner needs namespaces on every path.
    blocked = namespaces_blocked()
    if blocked is not None:
        pytest.skip(f"no throwaway namespace for the runner: {blocked}")
    refusal = host_refusal(path)
    if refusal is not None:
        pytest.skip(f"{path}: {refusal}")
    need(shutil.which("unshare"), "util-linux unshare is needed for the outer namespace")
    if path == "bwrap":
        need(bwrap_installed(), "bubblewrap (bwrap) is not installed")
    home = workdir / "home"
    home.mkdir()
    out = workdir / "results.jsonl"
    outer = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    if os.geteuid() != 0:
        outer += ["--user", "--map-root-user"]
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "LANG": "C.UTF-8"}
    proc = subprocess.run(
        [*outer, "--", sys.executable, str(HERE / "hostile_runner.py"), path, str(workdir),
         str(out)],
        env=env, cwd=workdir, capture_output=True, text=True, timeout=300,
    )
    lines = out.read_text().splitlines() if out.exists() else []
    if not lines:
        pytest.fail(f"the runner wrote nothing (exit {proc.returncode}): {proc.stderr[-2000:]}")
    header = json.loads(lines[0])
    if not header["available"]:
        # The host permits this path and its prerequisites are installed: any refusal
        # (a worker that did not start included) is the sandbox's failure.
        pytest.fail(f"{path} refused on a host that permits it: {header['reason']}")
    results = {r["case"]: r for r in map(json.loads, lines[1:])}
    results["__header__"] = header
    results["__stderr__"] = {"text": proc.stderr[-4000:], "rc": proc.returncode}
    return results


@pytest.fixture(scope="module")
def hostile_results(tmp_path_factory: pytest.TempPathFactory):
    cache: dict[str, dict[str, dict] | BaseException] = {}

    def get(path: str) -> dict[str, dict]:
        if path not in cache:
            try:
                cache[path] = _run_path(path, tmp_path_factory.mktemp(f"hostile-{path}"))
            except BaseException as e:  # a skip or failure: the path's other cases share it
                cache[path] = e
                raise
        got = cache[path]
        if isinstance(got, BaseException):
            raise got
        return got

    return get


@pytest.mark.e2e
@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", [c.name for c in CASES])
@pytest.mark.parametrize("path", PATHS)
def test_hostile_case(hostile_results, path: str, name: str) -> None:
    results = hostile_results(path)
    assert path in results["__header__"]["layers"]
    result = results.get(name)
    assert result is not None, f"no result for {name}: {results['__stderr__']}"
    assert result["problems"] == [], result
