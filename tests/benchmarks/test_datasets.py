"""Datasets: HumanEval from its package, HumanEval-format JSONL, MBPP-format JSON/JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cascode.benchmarks.datasets import load_dataset, select
from cascode.engine.errors import DatasetError

HE_RECORD = {
    "task_id": "mine/0",
    "prompt": 'def add(a, b):\n    """Add two numbers."""\n',
    "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
    "entry_point": "add",
}
MBPP_RECORD = {
    "task_id": 11,
    "text": "Write a python function to remove first and last occurrence of a given character.",
    "code": "def remove_Occ(s,ch): \r\n    return s.replace(ch, '')",
    "test_list": ['assert remove_Occ("hello","l") == "heo"'],
    "test_imports": ["import math"],
}


def test_humaneval_package_has_every_problem():
    ds = load_dataset("humaneval")
    assert len(ds.problems) == 164
    p = ds.problems[38]
    assert p.task_id == "HumanEval/38" and p.task.entry_point == "decode_cyclic"
    assert p.hidden_test.rstrip().endswith("check(decode_cyclic)")
    # The hidden program is the solution followed by the check.
    program = p.program(p.task.prompt + "    return encode_cyclic(encode_cyclic(s))\n")
    assert "def encode_cyclic" in program and program.endswith("check(decode_cyclic)\n")


def test_humaneval_jsonl(tmp_path: Path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps(HE_RECORD) + "\n\n" + json.dumps({**HE_RECORD, "task_id": "mine/1"}))
    ds = load_dataset(str(path))
    assert [p.task_id for p in ds.problems] == ["mine/0", "mine/1"]
    assert ds.name == "mine"


def test_mbpp_json_takes_the_function_from_the_tests(tmp_path: Path):
    path = tmp_path / "mbpp.json"
    path.write_text(json.dumps([MBPP_RECORD]))
    (p,) = load_dataset(str(path)).problems
    assert p.task.entry_point == "remove_Occ"
    assert p.task.prompt.startswith("def remove_Occ(s,ch):")
    assert 'remove_Occ("hello","l")' in p.task.prompt  # the first test, as an example
    assert p.task.context == "import math"
    assert p.hidden_test.startswith("assert remove_Occ")


def test_mbpp_without_reference_code_gets_a_signature_from_the_call(tmp_path: Path):
    path = tmp_path / "mbpp.jsonl"
    record = {k: v for k, v in MBPP_RECORD.items() if k != "code"}
    path.write_text(json.dumps({**record, "prompt": record.pop("text")}) + "\n")
    (p,) = load_dataset(str(path)).problems
    assert p.task.prompt.startswith("def remove_Occ(arg1, arg2):")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (json.dumps(HE_RECORD) + "\n{not json\n", "bad.jsonl:2: not valid JSON"),
        (json.dumps({**HE_RECORD, "entry_point": "sub"}), "bad.jsonl:1: prompt does not define"),
        (json.dumps({k: v for k, v in HE_RECORD.items() if k != "test"}), "bad.jsonl:1: "),
        (json.dumps({**MBPP_RECORD, "test_list": []}), "bad.jsonl:1: test_list must be"),
        (json.dumps({"task_id": 1}), "bad.jsonl:1: neither HumanEval"),
        (json.dumps(HE_RECORD) + "\n" + json.dumps(HE_RECORD), "duplicate task_id"),
    ],
)
def test_malformed_records_name_file_and_line(tmp_path: Path, content: str, message: str):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
        load_dataset(str(path))


def test_missing_dataset_is_a_clear_error():
    with pytest.raises(DatasetError, match="no such dataset"):
        load_dataset("/nonexistent/file.jsonl")


def test_select_by_ranges_ids_and_limit():
    ds = load_dataset("humaneval")
    chosen = select(ds, tasks="5-7,HumanEval/0,6")
    assert [p.task_id for p in chosen.problems] == [f"HumanEval/{i}" for i in (0, 5, 6, 7)]
    assert len(select(ds, tasks="0-39", limit=3).problems) == 3
    with pytest.raises(DatasetError, match="outside 0-163"):
        select(ds, tasks="160-170")
    with pytest.raises(DatasetError, match="neither a task id"):
        select(ds, tasks="HumanEval/999")


# Sanitized MBPP's task 126: the function under test shadows a builtin.
MBPP_126 = {
    "task_id": 126,
    "prompt": "Write a python function to find the sum of common divisors of two given numbers.",
    "code": "def sum(a,b): \n    sum = 0\n    for i in range (1,min(a,b)): \n"
            "        if (a % i == 0 and b % i == 0): \n            sum += i \n    return sum",
    "test_imports": [],
    "test_list": ["assert sum(10,15) == 6", "assert sum(100,150) == 93", "assert sum(4,6) == 3"],
}


def test_mbpp_function_shadowing_a_builtin_is_named_by_its_code(tmp_path: Path):
    path = tmp_path / "sanitized.json"
    path.write_text(json.dumps([MBPP_RECORD, MBPP_126]))
    _, p = load_dataset(str(path), strict=True).problems
    assert (p.task_id, p.task.entry_point) == ("mbpp/126", "sum")
    assert p.task.prompt.startswith("def sum(a,b):")
    # The hidden test calls the solution's `sum`, not the builtin.
    ns: dict = {}
    exec(p.program("def sum(a, b):\n    return 6 if a == 10 else (93 if a == 100 else 3)\n"), ns)


def test_mbpp_code_names_the_def_a_test_calls_not_a_helper(tmp_path: Path):
    record = {**MBPP_126, "task_id": 7,
              "code": "def helper(x):\n    return x\n\ndef max(xs):\n    return helper(xs[0])\n",
              "test_list": ["assert max([3, 1]) == 3"]}
    path = tmp_path / "mbpp.json"
    path.write_text(json.dumps([record]))
    (p,) = load_dataset(str(path)).problems
    assert p.task.entry_point == "max" and p.task.prompt.startswith("def max(xs):")


def test_an_unreadable_record_is_skipped_with_a_warning_and_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    broken = {**MBPP_RECORD, "task_id": 12, "test_list": ["assert len('abc') == 3"]}
    path = tmp_path / "mbpp.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (MBPP_RECORD, broken, MBPP_126)) + "\n")
    with caplog.at_level("WARNING", logger="cascode.benchmarks.datasets"):
        ds = load_dataset(str(path))
    assert [p.task_id for p in ds.problems] == ["mbpp/11", "mbpp/126"]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2, warned
    assert "task_id 12" in warned[0] and f"{path}:2: cannot tell the function" in warned[0]
    assert warned[1].startswith(f"{path}: skipped 1 of 3 records")
    # --strict: the same file is refused, naming the record.
    with pytest.raises(DatasetError, match=r"mbpp\.jsonl:2: cannot tell the function"):
        load_dataset(str(path), strict=True)


def test_strict_flag_of_the_clis(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from cascode import cli

    path = tmp_path / "mbpp.jsonl"
    broken = {**MBPP_RECORD, "task_id": 12, "test_list": []}
    path.write_text(json.dumps(MBPP_RECORD) + "\n" + json.dumps(broken) + "\n")
    plan = Path(__file__).parents[1] / "data" / "plan-small.yaml"
    for command in (["calibrate"], ["evaluate", str(plan)]):
        capsys.readouterr()
        assert cli.main([*command, "--dataset", str(path), "--strict", "--offline"]) == 1
        err = capsys.readouterr().err
        assert "mbpp.jsonl:2: test_list must be" in err, err


def test_a_file_with_no_readable_record_is_an_error(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    bad = {**MBPP_RECORD, "test_list": []}
    path.write_text(json.dumps(bad) + "\n" + json.dumps({**bad, "task_id": 12}) + "\n")
    with pytest.raises(DatasetError, match=r"bad\.jsonl: no readable record \(all 2 skipped"):
        load_dataset(str(path))
