"""The extension in a real VS Code (code-server + Chromium, driven by Playwright):
editors/vscode/e2e/run.mjs types a stub, accepts the ghost text with Tab, checks the
saved function, switches the tier from the status bar's quick pick and checks the next
answer's provenance. Its screenshots are CI artifacts (CASCODE_ARTIFACTS, default
editors/vscode/e2e/.work/artifacts)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
E2E = REPO / "editors" / "vscode" / "e2e"
CI_CACHE = Path.home() / ".cache" / "cascode-ci"
CODE_SERVER = (
    Path(os.environ.get("CASCODE_CODE_SERVER_DIR", CI_CACHE / "code-server-4.139.1"))
    / "node_modules/code-server/out/node/entry.js"
)


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not CODE_SERVER.exists():
        return f"code-server is not installed ({CODE_SERVER}): run .ci/steps/editors.sh"
    if not (E2E / "node_modules" / "playwright-core").exists():
        return "playwright-core is not installed: (cd editors/vscode/e2e && npm ci)"
    if not (REPO / "editors" / "vscode" / "node_modules").exists():
        return "the extension's node modules are not installed: (cd editors/vscode && npm ci)"
    return None


@pytest.mark.e2e
@pytest.mark.slow
def test_extension_in_code_server_like_a_user(tmp_path: Path) -> None:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run this test: {missing}")
        pytest.skip(missing)
    from cascode.engine.errors import ModelError
    from cascode.engine.models import resolve_model_file

    try:
        resolve_model_file("embedded:qwen2.5-coder-0.5b-instruct-q4_k_m")
    except ModelError as e:
        pytest.skip(f"embedded model not installed: {e}")
    artifacts = Path(os.environ.get("CASCODE_ARTIFACTS", E2E / ".work" / "artifacts"))
    proc = subprocess.Popen(
        ["node", str(E2E / "run.mjs"), "--artifacts", str(artifacts)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=1200)
    finally:
        # Whatever the driver left (it stops what it starts; this is the safety net).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    print(out)
    assert proc.returncode == 0, out[-8000:]
    assert (artifacts / "ghost-text-add.png").stat().st_size > 10_000
