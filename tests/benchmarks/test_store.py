"""The append-only record store: resumable after a kill, packed deterministically."""

from __future__ import annotations

from pathlib import Path

from cascode.benchmarks.store import RecordStore


def test_records_survive_reopening_and_a_torn_last_line(tmp_path: Path):
    store = RecordStore(tmp_path / "s" / "m")
    store.append({"key": "b", "v": 1})
    store.append({"key": "a", "v": 2})
    with open(store.plain, "a") as f:
        f.write('{"key": "c", "v"')  # a kill in the middle of a write
    again = RecordStore(tmp_path / "s" / "m")
    assert sorted(again.records) == ["a", "b"]
    again.append({"key": "c", "v": 3})  # the torn line is dropped, not glued to
    assert RecordStore(tmp_path / "s" / "m").get("c") == {"key": "c", "v": 3}


def test_first_record_of_a_key_wins(tmp_path: Path):
    store = RecordStore(tmp_path / "m")
    store.append({"key": "a", "v": 1})
    store.append({"key": "a", "v": 2})
    assert RecordStore(tmp_path / "m").get("a") == {"key": "a", "v": 1}


def test_pack_is_deterministic_and_keeps_appending(tmp_path: Path):
    blobs = []
    for run in ("x", "y"):
        store = RecordStore(tmp_path / run / "m")
        for key in ("b", "a") if run == "x" else ("a", "b"):
            store.append({"key": key, "v": key})
        store.pack()
        assert not store.plain.exists()
        blobs.append(store.packed.read_bytes())
    assert blobs[0] == blobs[1]  # same records, same bytes, whatever the order
    store = RecordStore(tmp_path / "x" / "m")
    store.append({"key": "c", "v": "c"})
    assert sorted(RecordStore(tmp_path / "x" / "m").records) == ["a", "b", "c"]
