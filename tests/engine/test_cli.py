"""`cascode` end to end on the real embedded models, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SMALL_PLAN = Path(__file__).parents[1] / "data" / "plan-small.yaml"

STUB = (
    "def count_vowels(text: str) -> int:\n"
    '    """Return how many vowels (a, e, i, o, u, either case) the text contains.\n'
    "    >>> count_vowels('Hello World')\n    3\n"
    '    """\n'
)


def cascode(*args: str, stdin: str = "", env: dict | None = None, timeout: int = 600):
    return subprocess.run(
        [sys.executable, "-m", "cascode", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(proc, *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("cascode: error:")
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.slow
def test_complete_a_humaneval_style_stub_from_stdin(qwen05b_path):
    proc = cascode("complete", "--plan-file", str(SMALL_PLAN), stdin=STUB)
    assert proc.returncode == 0, proc.stderr
    ns: dict = {}
    exec(proc.stdout, ns)
    assert ns["count_vowels"]("Hello World") == 3
    assert "cascode: qwen-0.5b answered (tier small" in proc.stderr


@pytest.mark.slow
# Over the suite's 300 s: three 0.5B solutions and tests, then (usually) the 1.5B,
# each model loaded by a fresh `cascode`: 278 s measured on a loaded 2-core machine.
@pytest.mark.timeout(600)
def test_complete_file_line_json_shows_every_stage(tmp_path, qwen05b_path):
    src = tmp_path / "mod.py"
    src.write_text("import math\n\n\n" + STUB + "\n\ndef other():\n    return 1\n")
    proc = cascode(
        "complete", f"{src}:5", "--plan-file", str(SMALL_PLAN), "--tier", "two", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    trace = json.loads(proc.stdout)
    stages = trace["stages"]
    assert stages[0]["member"] == "qwen-0.5b" and stages[0]["k"] == 3
    # It stops at the first accepting stage, or the 1.5B answers greedily.
    if stages[0]["accepted"]:
        assert len(stages) == 1
    else:
        assert [s["member"] for s in stages] == ["qwen-0.5b", "qwen-1.5b"]
        assert stages[1]["k"] == 0 and stages[1]["accepted"]
    first = stages[0]
    assert len(first["solutions"]) == 3 and len(first["tests"]) == 3
    assert len(first["pass_matrix"]) == 3
    assert all(len(row) == first["n_tests"] for row in first["pass_matrix"])
    assert first["threshold"] == 1.0 * 3 * first["n_tests"]
    assert trace["member"] == stages[-1]["member"]
    assert "def count_vowels" in trace["code"]
    assert trace["proof"] and isinstance(trace["examples"], list)


def test_plans_lists_the_packaged_default():
    from cascode.engine.plans import load_plan

    plan = load_plan()  # the packaged plans/default.yaml, whatever its tiers are
    proc = cascode("plans")
    assert proc.returncode == 0, proc.stderr
    assert f"{plan.default_tier}*" in proc.stdout
    for name in plan.tiers:
        assert name in proc.stdout
        for stage in plan.tier(name).stages:
            shown = f"{stage.member.name} k={stage.k}" + (f" l={stage.l}" if stage.k > 0 else "")
            assert shown in proc.stdout, (name, shown, proc.stdout)


def test_plans_says_when_its_seconds_were_measured_elsewhere(tmp_path):
    plan = tmp_path / "elsewhere.yaml"
    plan.write_text(
        "family:\n- {name: m, backend: llama_cpp, model: m.gguf}\n"
        "calibration: {prices: {m: 'measured 2026-11-30 on Some Other CPU, 64 CPUs'}}\n"
        "tiers:\n  t:\n    theta: 0.5\n    stages: {m: {k: 0}}\n"
        "    measured: {test: {problems: 4, pass_at_1: 0.5, seconds_per_1k: 6345.2}}\n")
    proc = cascode("plans", str(plan))
    assert proc.returncode == 0, proc.stderr
    assert "6345" in proc.stdout  # the tier's seconds per 1k problems
    assert "s/1k: seconds measured on Some Other CPU, 64 CPUs, not on this machine (" \
        in proc.stdout


def test_illegal_plan_is_one_line_naming_file_tier_field(tmp_path):
    plan = tmp_path / "bad.yaml"
    plan.write_text(
        SMALL_PLAN.read_text().replace("{qwen-0.5b: {k: 1, l: 2}}", "{qwen-0.5b: {k: 1, l: 0}}")
    )
    proc = cascode("complete", "--plan-file", str(plan), stdin=STUB)
    assert_one_line_error(proc, "bad.yaml", "tier 'small'", "stages.qwen-0.5b.l")


def test_unknown_member_is_one_line(tmp_path):
    plan = tmp_path / "bad.yaml"
    plan.write_text(
        SMALL_PLAN.read_text().replace("{qwen-0.5b: {k: 1, l: 2}}", "{qwen-7b: {k: 1, l: 2}}")
    )
    proc = cascode("plans", str(plan))
    assert_one_line_error(proc, "bad.yaml", "qwen-7b", "unknown member")


def test_missing_model_file_is_one_line(tmp_path):
    plan = tmp_path / "p.yaml"
    plan.write_text(
        "family: [{name: m, backend: llama_cpp, model: /nonexistent/model.gguf}]\n"
        "tiers: {t: {theta: 0.5, stages: {m: {k: 1, l: 2}}}}\n"
    )
    proc = cascode("complete", "--plan-file", str(plan), stdin=STUB)
    assert_one_line_error(proc, "model file not found", "/nonexistent/model.gguf")


def test_corrupted_embedded_model_is_refused(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf").write_bytes(b"GGUF" + b"\0" * 4096)
    proc = cascode(
        "complete", "--plan-file", str(SMALL_PLAN), stdin=STUB,
        env={"CASCODE_MODELS_DIR": str(models)},
    )
    assert_one_line_error(proc, "not verified", "cascode models install")
    listing = cascode("models", "list", "--plan-file", str(SMALL_PLAN),
                      env={"CASCODE_MODELS_DIR": str(models)})
    assert listing.returncode == 1
    assert "unverified" in listing.stdout and "missing" in listing.stdout


def test_no_function_at_line_is_one_line(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text("import os\n\nX = 1\n\n\ndef f():\n    pass\n")
    proc = cascode("complete", f"{src}:3", "--plan-file", str(SMALL_PLAN))
    assert_one_line_error(proc, f"{src}:3", "no function")
    proc = cascode("complete", f"{src}:99", "--plan-file", str(SMALL_PLAN))
    assert_one_line_error(proc, "no such line")


def test_a_file_is_read_as_python_reads_a_module(tmp_path):
    """A coding line (PEP 263), a byte-order mark and CRLF line ends are read as Python
    reads them; a byte that does not decode is a one-line error naming the file."""
    from cascode.commands.complete import _read_source

    text = ('def greet(name):\n    """Say h\u00e9llo.\n\n'
            '    >>> greet("a")\n    \'h\u00e9llo a\'\n    """\n')
    latin = tmp_path / "latin.py"
    latin.write_bytes(("# -*- coding: latin-1 -*-\n" + text).encode("latin-1"))
    assert _read_source(str(latin)) == "# -*- coding: latin-1 -*-\n" + text
    bom = tmp_path / "bom.py"
    bom.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert _read_source(str(bom)) == text
    bad = tmp_path / "bad.py"
    bad.write_bytes(text.encode("latin-1"))  # no coding line: UTF-8, which it is not
    proc = cascode("complete", f"{bad}:2", "--plan-file", str(SMALL_PLAN))
    assert_one_line_error(proc, str(bad), "is not utf-8", "coding")
    unknown = tmp_path / "unknown.py"
    unknown.write_text("# coding: no-such-codec\ndef f():\n    pass\n")
    proc = cascode("complete", f"{unknown}:2", "--plan-file", str(SMALL_PLAN))
    assert_one_line_error(proc, str(unknown), "unknown encoding")
    proc = cascode("complete", f"{latin}:99", "--plan-file", str(SMALL_PLAN))
    assert_one_line_error(proc, "no such line (the file has 8)")


def test_written_lines_below_the_line_are_one_line(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text("def f(x):\n    y = x + 1\n    z = y * 2\n    return z\n")
    proc = cascode("complete", f"{src}:2", "--plan-file", str(SMALL_PLAN))
    assert_one_line_error(proc, f"{src}:2", "written lines below", "(4)")


def test_a_blank_line_below_a_function_names_its_last_written_line(tmp_path):
    # Where an editor's cursor stands (indented) to go on writing the function; the
    # CLI has no column, so it says which line to give.
    src = tmp_path / "mod.py"
    src.write_text("def f(x):\n    y = x + 1\n\n\nX = 1\n\n")
    for line in (3, 4):
        proc = cascode("complete", f"{src}:{line}", "--plan-file", str(SMALL_PLAN))
        assert_one_line_error(proc, f"{src}:{line}", "no function", "below f", "(2)")
    proc = cascode("complete", f"{src}:6", "--plan-file", str(SMALL_PLAN))
    assert_one_line_error(proc, f"{src}:6", "no function at this line")
    assert "a blank line below" not in proc.stderr  # below an assignment: nothing to go on
    end = tmp_path / "end.py"
    end.write_text("def g():\n    total = 0\n")  # the line after the file's last one
    proc = cascode("complete", f"{end}:3", "--plan-file", str(SMALL_PLAN))
    assert_one_line_error(proc, f"{end}:3", "below g", "(2)")
    method = tmp_path / "method.py"  # a method, with a comment of the user's below it
    method.write_text("class A:\n    def m(self, x):\n        y = x\n        # then\n\n")
    proc = cascode("complete", f"{method}:5", "--plan-file", str(SMALL_PLAN))
    assert_one_line_error(proc, f"{method}:5", "below m", "(3)")


@pytest.mark.slow
def test_complete_the_rest_of_a_function(tmp_path, qwen05b_path):
    src = tmp_path / "mod.py"
    written = (
        "def count_vowels(text: str) -> int:\n"
        '    """Return how many vowels (a, e, i, o, u, either case) the text contains.\n'
        "    >>> count_vowels('Hello World')\n    3\n"
        '    """\n'
        "    total = 0\n"
        "    for ch in text.lower():\n"
    )
    src.write_text(written + "\n\ndef other():\n    return 1\n")
    proc = cascode("complete", f"{src}:7", "--plan-file", str(SMALL_PLAN))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(written)  # the written lines, then the rest
    ns: dict = {}
    exec(proc.stdout, ns)
    assert ns["count_vowels"]("Hello World") == 3


@pytest.mark.slow
def test_a_method_is_printed_at_its_indentation_in_the_class(tmp_path, qwen05b_path):
    """What stdout holds can replace the method's stub in the file as it stands."""
    stub = "".join("    " + line if line.strip() else line for line in STUB.splitlines(True))
    stub = stub.replace("(text: str)", "(self, text: str)")
    head = "class Text:\n    \"\"\"Counts.\"\"\"\n\n"
    src = tmp_path / "mod.py"
    src.write_text(head + stub + "\n    def other(self):\n        return 1\n")
    proc = cascode("complete", f"{src}:4", "--plan-file", str(SMALL_PLAN))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("    def count_vowels(self, text: str) -> int:\n")
    ns: dict = {}
    exec(head + proc.stdout, ns)
    assert ns["Text"]().count_vowels("Hello World") == 3


def test_unknown_tier_is_one_line():
    proc = cascode("complete", "--plan-file", str(SMALL_PLAN), "--tier", "nope", stdin=STUB)
    assert_one_line_error(proc, "no tier named 'nope'")


@pytest.mark.parametrize("setting", [("--sandbox-layers", "chroot"), ()])
def test_an_unknown_sandbox_path_is_one_line_before_anything_loads(setting):
    # The sandbox itself starts only where an answer runs code: its setting, from the
    # option or the environment, is still checked first.
    env = {} if setting else {"CASCODE_SANDBOX_LAYERS": "chroot"}
    proc = cascode("complete", "--plan-file", str(SMALL_PLAN), *setting, stdin=STUB, env=env)
    assert_one_line_error(proc, "sandbox.layers: unknown value 'chroot'", "bwrap")


def _answered(*, verified: bool, note: str = "", examples=(), matrix=()):  # type: ignore[no-untyped-def]
    from cascode.engine.types import Result, StageTrace

    suite = ("assert f() == 1", "assert f() == 2")
    stage = StageTrace(
        member="qwen-0.5b", k=1, l=2, solutions=("def f(): return 1\n",), tests=(),
        suite=suite, pass_matrix=((True, False),), scores=(1,), best=0, best_score=1,
        threshold=1.0, theta=0.5, accepted=True, last=True, prompt_tokens=10,
        generated_tokens=20, prompt_seconds=0.1, decode_seconds=0.2, sandbox_seconds=0.1,
        example_matrix=matrix, n_examples=len(examples))
    return Result("def f(): return 1\n", "qwen-0.5b", "small", (stage,), verified=verified,
                  note=note, examples=tuple(examples))


def test_summary_and_json_say_what_proved_the_answer():
    from cascode.commands.complete import _summary, _trace
    from cascode.engine.types import Example

    ex = (Example("assert f() == 1\n", "assert f() == 1"),
          Example("assert f() > 0\n", "assert f() > 0", "tests/test_f.py"))
    result = _answered(verified=True, examples=ex, matrix=((True, True),))
    assert _summary(result).startswith(
        "cascode: qwen-0.5b answered (tier small; passed your 1 example and 1 from "
        "tests/test_f.py and 1 of 2 generated asserts, score 1 >= 1) in 0.4 s")
    trace = json.loads(json.dumps(_trace(result, "<stdin>")))
    assert trace["proof"] == (
        "passed your 1 example and 1 from tests/test_f.py and 1 of 2 generated asserts")
    assert trace["examples"] == [
        {"text": "assert f() == 1", "origin": "docstring", "passed": True},
        {"text": "assert f() > 0", "origin": "tests/test_f.py", "passed": True},
    ]
    bare = _answered(verified=False, note="no examples, and qwen-0.5b answered greedily")
    assert "(tier small; unverified: no examples, and qwen-0.5b answered greedily) in" in (
        _summary(bare))
    assert _trace(bare, "x.py")["examples"] == []


def test_complete_never_imports_the_server_stack():
    code = (
        "import sys; from cascode.cli import build_parser; build_parser(['complete']); "
        "import cascode.commands.complete; "
        "print(any(m.split('.')[0] in ('pygls', 'lsprotocol', 'matplotlib', 'llama_cpp') "
        "for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_layout_installs_under_one_namespace(tmp_path):
    # Outside the checkout: only the cascode.* names exist, nothing generic.
    code = (
        "import importlib.util as u, cascode.engine, cascode.server, cascode.benchmarks\n"
        "from importlib import resources\n"
        "print([u.find_spec(n) is None for n in ('engine', 'server', 'benchmarks', 'plans')])\n"
        "print(resources.files('cascode.plans').joinpath('default.yaml').is_file())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.split("\n")[:2] == ["[True, True, True, True]", "True"]
