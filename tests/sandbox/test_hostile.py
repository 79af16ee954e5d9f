"""The hostile-input suite, under every path that `sandbox.layers` can force here.

Each path's cases run in one hostile_runner.py process, with HOME at a folder
made for the test. The runner is a child subreaper: whatever a hostile program
forks stays its descendant, and is reported, killed and reaped. It needs no
namespaces, so the suite runs where user and pid namespaces are blocked
(containers, Ubuntu 24.04), which is where the Landlock path is the one used.
Where the host permits them, the runner is also pid 1 of a throwaway pid and
mount namespace (`unshare`), a net for the one leak a subreaper cannot contain,
a `kill(-1, 9)`; CASCODE_TEST_HOSTILE_BARE=1 leaves the net out. The runner
checks, per case: the verdicts, that the worker survived, that nothing outside
scratch changed, that the listener on 127.0.0.1 was not reached, that no
process outlived the request, and that the next request still works.

A path the host rules out (`host_facts.host_refusal`: no Landlock in the
kernel, namespaces refused for bwrap and unshare) is skipped with the host's
reason, even under CI=true; a missing bubblewrap fails under CI=true.
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


def _net() -> list[str]:
    """The throwaway pid namespace around the runner, where the host permits one."""
    if os.environ.get("CASCODE_TEST_HOSTILE_BARE") == "1":
        return []
    if namespaces_blocked() is not None or not shutil.which("unshare"):
        return []
    outer = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    if os.geteuid() != 0:
        outer += ["--user", "--map-root-user"]
    return [*outer, "--"]


def _run_path(path: str, workdir: Path) -> dict[str, dict]:
    # What the host itself rules out, found independently of the sandbox (no
    # Landlock in the kernel, namespaces refused): the only skips that stay in CI.
    refusal = host_refusal(path)
    if refusal is not None:
        pytest.skip(f"{path}: {refusal}")
    if path == "bwrap":
        need(bwrap_installed(), "bubblewrap (bwrap) is not installed")
    home = workdir / "home"
    home.mkdir()
    out = workdir / "results.jsonl"
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "LANG": "C.UTF-8"}
    net = _net()
    proc = subprocess.Popen(
        [*net, sys.executable, str(HERE / "hostile_runner.py"), path, str(workdir), str(out)],
        env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the runner kills what it started, then exits
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        pytest.fail(f"{path}: the runner did not finish in 300 s: {stderr[-2000:]}")
    lines = out.read_text().splitlines() if out.exists() else []
    if not lines:
        pytest.fail(f"the runner wrote nothing (exit {proc.returncode}): {stderr[-2000:]}")
    header = json.loads(lines[0])
    if not header["available"]:
        # The host permits this path and its prerequisites are installed: any refusal
        # (a worker that did not start included) is the sandbox's failure.
        pytest.fail(f"{path} refused on a host that permits it: {header['reason']}")
    results = {r["case"]: r for r in map(json.loads, lines[1:])}
    results["__header__"] = header
    results["__stderr__"] = {"text": stderr[-4000:], "rc": proc.returncode,
                             "net": " ".join(net) or "none"}
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


# What the runner rests on where no pid namespace holds the cases: a process that
# leaves its parent (a daemon's double fork) is still its descendant, found,
# killed and reaped.
_DAEMON = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import hostile_runner as runner
runner.become_subreaper()
if os.fork() == 0:
    if os.fork() == 0:
        os.setsid()
        time.sleep(600)
    os._exit(0)
os.wait()
time.sleep(0.2)
orphans = sorted(runner.descendants_of(os.getpid()))
found = runner.kill_strays(None)
print(json.dumps({"orphans": orphans, "found": found,
                  "left": sorted(runner.descendants_of(os.getpid()))}))
"""


def test_the_runner_adopts_kills_and_reaps_a_daemon() -> None:
    proc = subprocess.run([sys.executable, "-c", _DAEMON, str(HERE)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert len(got["orphans"]) == 1 and got["found"] == got["orphans"], got
    assert got["left"] == []
    assert not Path(f"/proc/{got['found'][0]}").exists()  # killed and reaped, not a zombie
