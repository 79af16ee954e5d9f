"""Append-only JSONL record stores, resumable, packable into gzip for committing.

A store is `NAME.jsonl.gz` (packed, committed) plus `NAME.jsonl` (appended to
while a run goes on). Each record has a `key`; the first record with a key
wins. A run killed while writing leaves at most one torn last line, which is
ignored on reading (and overwritten by the next append). `pack` folds the
plain file into the gzip one, sorted by key, with a fixed gzip header, so that
the same records always give the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def digest(value: Any) -> str:
    """sha256 of a value's canonical JSON: the cache keys."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class RecordStore:
    def __init__(self, base: Path) -> None:
        """`base` without suffix: records live in base.jsonl.gz and base.jsonl."""
        self.base = base
        self.packed = base.with_name(base.name + ".jsonl.gz")
        self.plain = base.with_name(base.name + ".jsonl")
        self._records: dict[str, dict[str, Any]] | None = None

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        if self._records is None:
            self._records = {}
            for record in self._read():
                self._records.setdefault(record["key"], record)
        return self._records

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def append(self, record: dict[str, Any]) -> None:
        """Write one record before returning (flushed: a killed process loses nothing
        written; fsync per record would cost more than a power cut is worth here)."""
        if "key" not in record:
            raise ValueError("a record needs a key")
        self.plain.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self._drop_torn_tail()
        with open(self.plain, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
        self.records.setdefault(record["key"], record)

    def pack(self) -> None:
        """Fold every record into the gzip file (sorted by key) and drop the plain file."""
        if not self.plain.exists():
            return
        lines = [
            json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            for _, r in sorted(self.records.items())
        ]
        tmp = self.packed.with_name(self.packed.name + ".tmp")
        with open(tmp, "wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9
        ) as gz:
            gz.write(("\n".join(lines) + "\n").encode())
        os.replace(tmp, self.packed)
        self.plain.unlink()

    def _read(self) -> Iterator[dict[str, Any]]:
        if self.packed.exists():
            with gzip.open(self.packed, "rt", encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        yield json.loads(line)
        if self.plain.exists():
            with open(self.plain, encoding="utf-8") as f:
                for line in f:
                    if not line.endswith("\n"):
                        break  # torn by a kill: ignored, then overwritten
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        continue

    def _drop_torn_tail(self) -> None:
        if not self.plain.exists():
            return
        with open(self.plain, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) != b"\n":
                f.seek(0)
                data = f.read()
                f.truncate(data.rfind(b"\n") + 1)
