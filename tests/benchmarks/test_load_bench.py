"""The load benchmark's recorded run: the rule, replayed on the loads each decision read,
makes the run's choices (engine/load.py `replay`), and its table says what the run did."""

from __future__ import annotations

import json
from pathlib import Path

from cascode.benchmarks import load_bench

RESULTS = Path(load_bench.__file__).parent / "results" / "load_bench.json"


def test_the_recorded_run_replays_to_the_same_choices(capsys) -> None:  # type: ignore[no-untyped-def]
    assert load_bench.replay_file(RESULTS) == 0
    out = capsys.readouterr().out
    data = json.loads(RESULTS.read_text())
    decisions = sum(1 for row in data["rows"] if row["mode"] == "on"
                    for r in row["records"] if r["ok"] and r.get("loads"))
    assert f"{decisions} of {decisions} replayed choices are the run's" in out
    assert decisions >= 8


def test_a_changed_choice_is_found(tmp_path: Path) -> None:
    data = json.loads(RESULTS.read_text())
    on = next(r for r in data["rows"] if r["mode"] == "on" and r["users"] > 1)
    record = next(r for r in on["records"] if r["ok"] and r.get("loads"))
    record["tier"] = "accurate" if record["tier"] != "accurate" else "fastest"
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(data))
    assert load_bench.replay_file(changed) == 1


def test_the_table_counts_every_request() -> None:
    data = json.loads(RESULTS.read_text())
    text = load_bench.table(data["rows"])
    for row in data["rows"]:
        assert row["answered"] + row["failed"] == row["requests"]
        assert f"| {row['users']} | {row['mode']} | {row['answered']} / {row['requests']} |" in text
