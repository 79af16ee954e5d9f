"""The VS Code extension type-checks, lints, passes its unit tests and packages into a
.vsix that VS Code can install (main bundle, commands and settings in the manifest)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from ..conftest import need

EXT = Path(__file__).resolve().parents[2] / "editors" / "vscode"


def npm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "npm_config_loglevel": "error", "npm_config_update_notifier": "false"}
    proc = subprocess.run(
        ["npm", *args], cwd=EXT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"npm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def node_modules() -> Path:
    need(shutil.which("npm"), "npm is not installed")
    if not (EXT / "node_modules" / ".package-lock.json").exists():
        npm("ci", "--no-audit", "--no-fund", timeout=600)
    return EXT / "node_modules"


def test_extension_typechecks_and_lints(node_modules: Path) -> None:
    npm("run", "typecheck")
    npm("run", "lint")


def test_extension_unit_tests_pass(node_modules: Path) -> None:
    out = npm("test").stdout
    assert "# fail 0" in out
    assert "# pass 0" not in out


def test_extension_packages_into_an_installable_vsix(node_modules: Path) -> None:
    vsix = EXT / "dist" / "cascode.vsix"
    vsix.unlink(missing_ok=True)
    npm("run", "package")
    with zipfile.ZipFile(vsix) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("extension/package.json"))
        bundle = z.read("extension/dist/extension.js").decode()
    assert "extension.vsixmanifest" in names
    # The bundle carries the language client (no node_modules in the package) and
    # leaves `vscode` to the editor.
    assert not any(n.startswith("extension/node_modules/") for n in names)
    assert not any(n.startswith("extension/src/") for n in names)
    assert 'require("vscode")' in bundle
    assert "textDocument/inlineCompletion" in bundle
    assert manifest["main"] == "./dist/extension.js"
    commands = {c["command"] for c in manifest["contributes"]["commands"]}
    assert commands == {
        "cascode.selectTier",
        "cascode.restartServer",
        "cascode.insertAsserts",
        "cascode.showLastAnswer",
    }
    settings = manifest["contributes"]["configuration"]["properties"]
    for key in (
        "enable",
        "planFile",
        "tier",
        "sandbox.layers",
        "sandbox.allowUnsafe",
        "server.path",
        "server.args",
    ):
        assert f"cascode.{key}" in settings, key


def test_manifest_settings_match_the_server_settings(tmp_path: Path) -> None:
    """The contributed settings are the generator's output: a new server setting that was
    not regenerated into the manifest fails here."""
    from cascode.server.settings import write_vscode_manifest

    copy = tmp_path / "package.json"
    shutil.copy(EXT / "package.json", copy)
    write_vscode_manifest(str(copy))
    assert json.loads(copy.read_text()) == json.loads((EXT / "package.json").read_text()), (
        "run: python -m cascode.server.settings vscode editors/vscode/package.json"
    )
    props = json.loads(copy.read_text())["contributes"]["configuration"]["properties"]
    # The client's own settings survive regeneration.
    assert {"cascode.server.path", "cascode.server.args", "cascode.trace.server"} <= set(props)
