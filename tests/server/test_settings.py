"""Settings: structuring field by field, bad fields kept and named, generated docs."""

from __future__ import annotations

import json
import subprocess
import sys

from cascode.server.settings import (
    ClientOptions,
    Settings,
    markdown_table,
    refuse_remote,
    resolve,
    vscode_configuration,
)


def test_nested_and_dotted_keys_are_both_accepted():
    nested, problems = resolve(
        ClientOptions.from_raw({"tier": "fast", "sandbox": {"layers": "bwrap",
                                                            "allowUnsafe": True}}), Settings())
    dotted, _ = resolve(
        ClientOptions.from_raw({"tier": "fast", "sandbox.layers": "bwrap",
                                "sandbox.allowUnsafe": True}), Settings())
    assert problems == []
    assert nested == dotted == Settings(tier="fast", sandbox_layers="bwrap",
                                        sandbox_allow_unsafe=True)


def test_a_bad_field_keeps_its_previous_value_and_the_others_apply():
    previous = Settings(tier="balanced", cache_size=10)
    new, problems = resolve(
        ClientOptions.from_raw({"tier": "fast", "enable": "yes", "cacheSize": -3,
                                "planFile": 7, "unknownKey": 1}), previous)
    assert new.tier == "fast"
    assert (new.enable, new.cache_size, new.plan_file) == (True, 10, "")
    messages = {p.key: p.message() for p in problems}
    assert set(messages) == {"enable", "cacheSize", "planFile"}
    assert messages["enable"] == (
        'cascode: setting cascode.enable = "yes" ignored: expected a boolean, got string; '
        "keeping true")
    assert "cascode.cacheSize = -3" in messages["cacheSize"] and "at least 0" in messages[
        "cacheSize"]


def test_a_key_no_longer_sent_returns_to_its_default():
    new, problems = resolve(ClientOptions.from_raw({}), Settings(tier="fast", enable=False))
    assert (new, problems) == (Settings(), [])


def test_booleans_are_not_integers_and_integers_not_booleans():
    new, problems = resolve(ClientOptions.from_raw({"cacheSize": True, "preload": 0}),
                            Settings())
    assert new == Settings()
    assert {p.key for p in problems} == {"cacheSize", "preload"}


def test_every_field_is_documented_in_the_manifest_and_the_table():
    config = vscode_configuration()
    props = config["properties"]
    assert list(props) == [
        "cascode.enable", "cascode.planFile", "cascode.tier", "cascode.sandbox.layers",
        "cascode.sandbox.allowUnsafe", "cascode.preload", "cascode.fileContext",
        "cascode.contextTokens", "cascode.testExamples", "cascode.testScanFiles",
        "cascode.trigger", "cascode.debounceMs", "cascode.prefill",
        "cascode.completionRequests", "cascode.maxSeconds", "cascode.cacheSize"]
    assert props["cascode.tier"] == {
        "type": "string", "default": "", "order": 2,
        "markdownDescription": props["cascode.tier"]["markdownDescription"]}
    assert all(len(p["markdownDescription"]) > 30 for p in props.values())
    assert props["cascode.cacheSize"]["minimum"] == 0
    assert props["cascode.contextTokens"]["minimum"] == -1
    table = markdown_table()
    for key, prop in props.items():
        assert f"| `{key}` | {prop['type']} | `{json.dumps(prop['default'])}` |" in table


def test_the_generator_rewrites_only_the_configuration_of_a_manifest(tmp_path):
    manifest = tmp_path / "package.json"
    manifest.write_text(json.dumps({"name": "cascode", "contributes": {
        "commands": [{"command": "cascode.restart"}], "configuration": {"properties": {
            "cascode.tier": {"type": "string", "default": "stale"},
            "cascode.server.path": {"type": "string", "default": "cascode"}}}}}))
    subprocess.run([sys.executable, "-m", "cascode.server.settings", "vscode", str(manifest)],
                   check=True)
    data = json.loads(manifest.read_text())
    assert data["name"] == "cascode"
    assert data["contributes"]["commands"] == [{"command": "cascode.restart"}]
    props = data["contributes"]["configuration"]["properties"]
    expected = vscode_configuration()["properties"]
    assert {k: v for k, v in props.items() if k in expected} == expected
    assert props["cascode.server.path"] == {"type": "string", "default": "cascode"}
    out = subprocess.run([sys.executable, "-m", "cascode.server.settings", "markdown"],
                         check=True, capture_output=True, text=True).stdout
    assert out == markdown_table()


def test_the_settings_page_holds_the_generated_table():
    from pathlib import Path

    page = (Path(__file__).parents[2] / "docs" / "settings.md").read_text()
    assert markdown_table() in page, "regenerate: python -m cascode.server.settings markdown"


def test_the_vscode_manifest_holds_the_generated_settings():
    from pathlib import Path

    manifest = Path(__file__).parents[2] / "editors" / "vscode" / "package.json"
    assert manifest.is_file(), f"{manifest}: the extension's manifest is part of the repository"
    props = json.loads(manifest.read_text())["contributes"]["configuration"]["properties"]
    expected = vscode_configuration()["properties"]
    assert {k: v for k, v in props.items() if k in expected} == expected, (
        "regenerate: python -m cascode.server.settings vscode editors/vscode/package.json")


def test_trigger_takes_one_of_its_values():
    new, problems = resolve(ClientOptions.from_raw({"trigger": "manual"}), Settings())
    assert new.trigger == "manual" and not problems
    new, problems = resolve(ClientOptions.from_raw({"trigger": "sometimes"}), new)
    assert new.trigger == "manual"
    assert [p.message() for p in problems] == [
        'cascode: setting cascode.trigger = "sometimes" ignored: must be one of automatic, '
        'manual; keeping "manual"']
    assert vscode_configuration()["properties"]["cascode.trigger"]["enum"] == ["automatic",
                                                                              "manual"]


def test_a_remote_client_may_not_set_what_loads_or_runs_things():
    sent = ClientOptions.from_raw({
        "tier": "fast", "planFile": "/tmp/evil.yaml", "sandbox": {"layers": "rlimits",
                                                                  "allowUnsafe": True}})
    allowed, refused = refuse_remote(sent)
    assert refused == ["planFile", "sandbox.layers", "sandbox.allowUnsafe"]
    assert resolve(allowed, Settings())[0] == Settings(tier="fast")
    # The values that load nothing and cannot weaken the sandbox are taken.
    sent = ClientOptions.from_raw({"planFile": "", "sandbox.layers": "bwrap",
                                   "sandbox.allowUnsafe": False})
    assert refuse_remote(sent) == (sent, [])
    assert refuse_remote(ClientOptions.from_raw({"sandbox.allowUnsafe": 0}))[1] == [
        "sandbox.allowUnsafe"]
    assert "only `\"\"`, unless the server runs with `cascode serve --allow-remote-settings`" \
        in markdown_table()
