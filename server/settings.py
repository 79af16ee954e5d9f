"""The `cascode` settings section: what the client sent, what is in force, and its docs.

`ClientOptions` keeps what the client sent, every field optional and untyped.
`Settings` is what is in force, every field resolved. `resolve` turns the one
into the other field by field: a field whose value does not structure keeps
its previous value and yields a `Problem` naming the key and the value; the
other fields still apply; unknown keys are ignored.

A field whose metadata has `remote` loads or runs things: a client over TCP (not
the editor that started the server) may set it only to one of those values, unless
the user started the server with `--allow-remote-settings`; `refuse_remote` drops
the other values before `resolve`, so the field keeps its local value.

Every setting is documented once, by the docstring under its field. The VS Code
manifest and the README table are generated from those docstrings:

    python -m cascode.server.settings vscode editors/vscode/package.json
    python -m cascode.server.settings markdown > docs/settings.md
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
import textwrap
from collections.abc import Mapping
from functools import cache
from typing import Any

import attrs
import cattrs

from cascode.engine.context.budget import DEFAULT_CONTEXT_TOKENS

SECTION = "cascode"


@attrs.frozen
class Settings:
    """The settings in force. Keys are `cascode.<key>`; see `setting_key`."""

    enable: bool = True
    """Offer completions. When off, the server answers every completion request with no items."""

    # The plan names the model files to load and the endpoints to send code to.
    plan_file: str = attrs.field(default="", metadata={"remote": ("",)})
    """Path of the plan file (the family and its tiers). Empty: the plan packaged with cascode.
    A plan file that fails to load is reported and the previous plan stays in force."""

    tier: str = ""
    """The plan tier that answers completions (e.g. `fast`, `balanced`, `accurate`). Empty: the
    plan's `default_tier`. A change applies to the next request; an unknown tier is reported
    and the previous one stays in force."""

    # `auto` takes the best path that works here and bwrap is the best path: any other
    # forced path can only weaken the isolation.
    sandbox_layers: str = attrs.field(
        default="auto", metadata={"key": "sandbox.layers", "remote": ("auto", "bwrap")})
    """Isolation used to run generated code: `auto` (the best that works here) or a forced
    path (`bwrap`, `unshare`, `landlock`, `rlimits`). `cascode doctor` lists what works here."""

    sandbox_allow_unsafe: bool = attrs.field(
        default=False, metadata={"key": "sandbox.allowUnsafe", "remote": (False,)}
    )
    """Run generated code with resource limits only when no isolation layer works. Off: answers
    are then returned unverified instead."""

    preload: bool = True
    """Load the tier's models when the server starts, rather than at the first request."""

    file_context: bool = True
    """Give the model the file's imports and earlier top-level definitions along with the
    function, and run them before the generated code in the sandbox. For a file saved in a
    package, the sandbox also gets the modules of the project that it imports (its relative
    imports and those of its own package, read from disk), so that an answer calling a
    sibling module's helper runs as it does in the project."""

    context_tokens: int = attrs.field(default=DEFAULT_CONTEXT_TOKENS, metadata={"minimum": -1})
    """Prompt tokens for the file around the function: its imports and an outline of its
    definitions (shared by every function of the file; a method's class is always kept),
    then the helpers the function names. The sandbox still runs the whole file context. 0:
    none; -1: the whole file context, no budget."""

    test_examples: bool = True
    """Use the `assert` lines of the project's test files that call the function (pytest
    layout: `tests/`, `test_*.py`, `*_test.py`) as examples, with the docstring's own: an answer
    is checked against them in the sandbox. Test files are only read, never imported or run;
    unsaved changes of open test files count."""

    test_scan_files: int = attrs.field(default=200, metadata={"minimum": 0})
    """How many test files of a project `testExamples` reads at most (a file over 1 MB is
    skipped). The list of test files is kept until a file is saved, created or deleted."""

    trigger: str = attrs.field(default="automatic", metadata={"enum": ("automatic", "manual")})
    """When the server answers: `automatic` (as you type, where a completion makes sense: not
    in the middle of a word, not with code right of the cursor, not inside a string, a comment
    or an unclosed docstring) or `manual` (only when you ask: VS Code's
    `editor.action.inlineSuggest.trigger`, the Neovim plugin's trigger mapping), for slow
    machines."""

    debounce_ms: int = attrs.field(default=150, metadata={"minimum": 0})
    """How long an automatic request waits for the next keystroke before the models start, in
    milliseconds: adapted to your typing (half of it after a pause of a second, up to four
    times it while you type fast). A newer request cancels a waiting or running one."""

    prefill: bool = True
    """Warm while you type: after a pause in your edits, evaluate the prompt of the function
    at the cursor on the tier's first members, as the next request would send it, so that the
    request only evaluates what changed since. Runs when no request does, and any request
    stops it. Off: nothing runs until a request."""

    completion_requests: str = attrs.field(
        default="answered", metadata={"enum": ("answered", "explicit")})
    """What a `textDocument/completion` request (the suggestion list) may start. `answered`: it
    offers only an answer already computed for the function (shown as ghost text, or in the
    answer cache) and never starts the models: editors send these requests as you type (VS
    Code's quick suggestions), and ghost text is where answers are asked for. `explicit`: each
    request is the user asking, and runs the tier like an explicit inline request (the Neovim
    plugin's completion-item mapping sets this)."""

    max_seconds: int = attrs.field(default=-1, metadata={"minimum": -1})
    """A latency budget for one answer, in seconds, for tiers that follow the load: before a
    request the server reads the load of the model servers the tier's members run on
    (llama-server's `/slots` and `/metrics`, vLLM's `/metrics`), estimates each tier's time
    from the plan's measured seconds, and runs the most accurate tier, no dearer than the one
    chosen, that fits; when none fits, the cheapest. The answer says which tier ran and why.
    -1: twice the chosen tier's measured seconds; 0: always the chosen tier. Members that run
    in the language server's own process report no load."""

    cache_size: int = attrs.field(default=128, metadata={"minimum": 0})
    """How many answers to keep in memory: asking again for the same stub in the same file
    answers at once. 0 disables the cache."""


@attrs.frozen
class ClientOptions:
    """What the client sent for the section, by key, before any checking (all optional)."""

    values: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_raw(cls, raw: Any) -> ClientOptions:
        """Accept nested objects (`{"sandbox": {"layers": ..}}`) and dotted keys alike."""
        flat: dict[str, Any] = {}
        if isinstance(raw, Mapping):
            _flatten(raw, "", flat)
        return cls(flat)


def _flatten(raw: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and name not in _KEYS:
            _flatten(value, name + ".", out)
        else:
            out[name] = value


@attrs.frozen
class Problem:
    """A setting that could not be applied: its key, the value sent and why."""

    key: str
    value: Any
    reason: str
    kept: Any

    def message(self) -> str:
        return (
            f"cascode: setting {SECTION}.{self.key} = {json.dumps(self.value)} ignored: "
            f"{self.reason}; keeping {json.dumps(self.kept)}"
        )


def setting_key(field: attrs.Attribute) -> str:  # type: ignore[type-arg]
    """`plan_file` -> `planFile`, unless the field names its key (`sandbox.layers`)."""
    if "key" in field.metadata:
        return str(field.metadata["key"])
    head, *rest = field.name.split("_")
    return head + "".join(part.title() for part in rest)


attrs.resolve_types(Settings)
_FIELDS = {setting_key(f): f for f in attrs.fields(Settings)}
_KEYS = frozenset(_FIELDS)

_converter = cattrs.Converter()


def _strict(kind: type) -> Any:
    def structure(value: Any, _: Any) -> Any:
        # bool is an int in Python, and a JSON client may send "true": neither is accepted.
        if type(value) is not kind:
            raise ValueError(f"expected a {_TYPE_NAMES[kind]}, got {_json_type(value)}")
        return value

    return structure


_TYPE_NAMES = {bool: "boolean", str: "string", int: "integer"}
for _kind in _TYPE_NAMES:
    _converter.register_structure_hook(_kind, _strict(_kind))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", str: "string", int: "integer", float: "number", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def resolve(options: ClientOptions, previous: Settings) -> tuple[Settings, list[Problem]]:
    """The settings in force after the client sent `options`; bad fields keep `previous`."""
    changes: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, field in _FIELDS.items():
        if key not in options.values:
            continue
        value = options.values[key]
        kept = getattr(previous, field.name)
        try:
            structured = _converter.structure(value, field.type)  # type: ignore[arg-type]
        except Exception as e:  # noqa: BLE001 - every failure is the user's value
            problems.append(Problem(key, value, str(e), kept))
            continue
        minimum = field.metadata.get("minimum")
        if minimum is not None and structured < minimum:
            problems.append(Problem(key, value, f"must be at least {minimum}", kept))
            continue
        choices = field.metadata.get("enum")
        if choices is not None and structured not in choices:
            problems.append(Problem(key, value, f"must be one of {', '.join(choices)}", kept))
            continue
        changes[field.name] = structured
    defaults = Settings()
    # A key the client no longer sends goes back to its default.
    for key, field in _FIELDS.items():
        if key not in options.values:
            changes[field.name] = getattr(defaults, field.name)
    return attrs.evolve(previous, **changes), problems


def refuse_remote(options: ClientOptions) -> tuple[ClientOptions, list[str]]:
    """`options` of a client over TCP without the settings it may not set (their keys,
    in field order): a field with `remote` metadata keeps its local value unless the
    client sent one of those values."""
    kept = dict(options.values)
    refused = []
    for key, field in _FIELDS.items():
        allowed = field.metadata.get("remote")
        if allowed is None or key not in kept:
            continue
        value = kept[key]
        if not any(type(value) is type(v) and value == v for v in allowed):
            del kept[key]
            refused.append(key)
    return ClientOptions(kept), refused


def refused_message(keys: list[str]) -> str:
    names = ", ".join(f"{SECTION}.{key}" for key in keys)
    return (f"cascode: {names} from this client ignored: over TCP these settings keep their "
            "local values unless the server runs with `cascode serve --allow-remote-settings`")


def with_value(settings: Settings, key: str, value: Any) -> Settings:
    """`settings` with one field replaced, by key (used to restore a field that failed)."""
    return attrs.evolve(settings, **{_FIELDS[key].name: value})


def value_of(settings: Settings, key: str) -> Any:
    return getattr(settings, _FIELDS[key].name)


# ---------------------------------------------------------------------------
# Documentation, generated from the docstrings under the fields


@cache
def field_docs() -> dict[str, str]:
    """Each field's docstring, read from this module's source (attrs keeps none)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(Settings)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def _json_schema_type(field: attrs.Attribute) -> str:  # type: ignore[type-arg]
    return _TYPE_NAMES[field.type]  # type: ignore[index]


def vscode_configuration() -> dict[str, Any]:
    """`contributes.configuration` for the VS Code manifest."""
    docs = field_docs()
    properties: dict[str, Any] = {}
    for order, (key, field) in enumerate(_FIELDS.items()):
        prop: dict[str, Any] = {
            "type": _json_schema_type(field),
            "default": field.default,
            "markdownDescription": docs[field.name],
            "order": order,
        }
        if "minimum" in field.metadata:
            prop["minimum"] = field.metadata["minimum"]
        if "enum" in field.metadata:
            prop["enum"] = list(field.metadata["enum"])
        properties[f"{SECTION}.{key}"] = prop
    return {"title": "cascode", "properties": properties}


def markdown_table() -> str:
    docs = field_docs()
    lines = [
        "| Setting | Type | Default | Description |",
        "|---|---|---|---|",
    ]
    for key, field in _FIELDS.items():
        default = json.dumps(field.default)
        lines.append(
            f"| `{SECTION}.{key}` | {_json_schema_type(field)} | `{default}` | {docs[field.name]}"
            f"{_remote_note(field)} |"
        )
    return "\n".join(lines) + "\n"


def _remote_note(field: attrs.Attribute) -> str:  # type: ignore[type-arg]
    allowed = field.metadata.get("remote")
    if allowed is None:
        return ""
    values = " or ".join(f"`{json.dumps(v)}`" for v in allowed)
    return (f" A client over TCP may set only {values}, unless the server runs with "
            "`cascode serve --allow-remote-settings`.")


_CLIENT_PREFIXES = (f"{SECTION}.server.", f"{SECTION}.trace.")


def write_vscode_manifest(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    contributes = manifest.setdefault("contributes", {})
    configuration = vscode_configuration()
    # The client's own settings (how it starts the server, message tracing) are not
    # the server's to document: they are kept as the extension wrote them.
    previous = contributes.get("configuration", {}).get("properties", {})
    for key, prop in previous.items():
        if key.startswith(_CLIENT_PREFIXES):
            configuration["properties"][key] = prop
    contributes["configuration"] = configuration
    with open(path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main(argv: list[str]) -> int:
    usage = (
        "usage: python -m cascode.server.settings vscode PATH/package.json\n"
        "       python -m cascode.server.settings markdown"
    )
    if argv[:1] == ["vscode"] and len(argv) == 2:
        write_vscode_manifest(argv[1])
        return 0
    if argv == ["markdown"]:
        sys.stdout.write(markdown_table())
        return 0
    sys.stderr.write(usage + "\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
