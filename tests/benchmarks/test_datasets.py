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
