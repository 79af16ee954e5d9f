"""Local statistics: per tier and member, answers shown, accepted (whole or in part),
dismissed, and their latency. Plain data in, plain data out; no LSP types.

Kept in `stats.json` under the user's state directory (`$CASCODE_STATE_DIR`, else
`platformdirs.user_state_dir("cascode")`), never sent anywhere. `cascode stats`
prints them.

What happened to a shown answer is read from the document's changes: the server
passes each didChange content change to `Stats.text_changed`. Positions are
(line, column), 0-based, in the units of the client's ranges (those of the inline
item's `range`); columns advance by code points, which is the same as UTF-16 for
every character outside the astral planes.

The file holds totals; a server keeps only what it counted since its last write and
adds that to the file's totals when it writes (under a lock), so that several editor
windows can share one file. A server writes on a thread of its own, never on the event
loop: the lock may be held by another window, the disk may be slow.

A file that is not a stats file of this version (corrupt, or written by another
version of cascode) is never overwritten: it is moved aside, to
`stats.json.corrupt-<time>` or `stats.json.version-<n>-<time>`, and a new one started;
the log and the user (through the server) are told, and `cascode stats` lists it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cascode.engine.flock import lock_within

log = logging.getLogger(__name__)

VERSION = 1
FILE_NAME = "stats.json"
KEEP_LATENCIES = 500  # per (tier, member), the most recent
LOCK_TIMEOUT_S = 10.0  # a write gives up (and retries later) after waiting this long
ASIDE_KINDS = ("corrupt", "version")  # `stats.json.<kind>-...`: files moved aside
_KEEP_CLOSED = 256  # closed answers remembered for a late `accepted(id)`
COUNTS = ("shown", "accepted_whole", "accepted_part", "dismissed")

Pos = tuple[int, int]
Key = tuple[str, str]  # (tier, member)


def state_dir() -> Path:
    """$CASCODE_STATE_DIR, else the user's state directory for cascode."""
    env = os.environ.get("CASCODE_STATE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_state_dir("cascode"))


def stats_file(directory: Path | None = None) -> Path:
    return (directory if directory is not None else state_dir()) / FILE_NAME


@dataclass
class Counts:
    """The counts of one (tier, member); in a server, those since its last write."""

    shown: int = 0
    accepted_whole: int = 0
    accepted_part: int = 0
    dismissed: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        for name in COUNTS:
            setattr(self, name, max(0, getattr(self, name) + getattr(other, name)))
        self.latencies_s = (self.latencies_s + other.latencies_s)[-KEEP_LATENCIES:]

    def empty(self) -> bool:
        return not self.latencies_s and not any(getattr(self, n) for n in COUNTS)


Table = dict[Key, Counts]


# -- The file ---------------------------------------------------------------------------


class UnknownVersion(ValueError):
    """A stats file of a version this cascode does not know (a newer one wrote it)."""

    def __init__(self, version: Any) -> None:
        super().__init__(f"version {json.dumps(version)}, not {VERSION}")
        self.version = version


def load(path: Path) -> Table:
    """The totals in `path`; empty when there is no file. Raises UnknownVersion for a
    stats file of another version, ValueError (or KeyError, TypeError) for a file that
    is not a stats file, OSError when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("version") != VERSION:
        if "version" in data:
            raise UnknownVersion(data["version"])
        raise ValueError("no version")
    table: Table = {}
    for row in data["members"]:
        counts = Counts(**{n: int(row[n]) for n in COUNTS},
                        latencies_s=[float(x) for x in row["latencies_s"]][-KEEP_LATENCIES:])
        table[(str(row["tier"]), str(row["member"]))] = counts
    return table


_UNREADABLE = (ValueError, KeyError, TypeError)  # what `load` raises for a bad file


def load_or_empty(path: Path) -> Table:
    """`load`, with an unreadable file logged and taken as empty (for reading only: a
    write moves such a file aside first)."""
    try:
        return load(path)
    except (OSError, *_UNREADABLE) as e:
        log.warning("statistics file %s is unreadable (%s)", path, e)
        return {}


def aside_name(path: Path, error: Exception, now: float | None = None) -> Path:
    """Where an unreadable `path` is moved: `stats.json.corrupt-<time>`, or
    `stats.json.version-<n>-<time>` for a file of another version; never an existing
    file."""
    kind = aside_kind(error)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now))
    candidate = path.with_name(f"{path.name}.{kind}-{stamp}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{kind}-{stamp}-{n}")
    return candidate


def aside_kind(error: Exception) -> str:
    """`corrupt`, or `version-<n>` for a stats file of another version."""
    if isinstance(error, UnknownVersion) and type(error.version) is int:
        return f"version-{error.version}"
    return "corrupt"


def set_aside_files(path: Path) -> list[Path]:
    """The unreadable files moved aside from `path`, oldest first."""
    if not path.parent.is_dir():
        return []
    found = [p for kind in ASIDE_KINDS for p in path.parent.glob(f"{path.name}.{kind}-*")]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def dump(table: Table, path: Path) -> None:
    """Write `table` to `path` atomically (a temporary file, then os.replace)."""
    data = {
        "version": VERSION,
        "members": [
            {"tier": tier, "member": member, **{n: getattr(c, n) for n in COUNTS},
             "latencies_s": [round(x, 4) for x in c.latencies_s]}
            for (tier, member), c in sorted(table.items())
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def add_to_file(path: Path, counts: Table,
                timeout_s: float = LOCK_TIMEOUT_S) -> str | None:
    """Add `counts` to the totals in `path`, under its lock (blocking: call it off the
    event loop). A file that is not a stats file of this version is moved aside first,
    never overwritten; returns the message that says so (already logged), else None.
    Raises OSError (TimeoutError when the lock stays held) when nothing was written."""
    notice = None
    with _locked(path, timeout_s):
        try:
            table = load(path)
        except _UNREADABLE as e:
            aside = aside_name(path, e)
            os.rename(path, aside)  # an OSError here: nothing is written
            notice = (f"cascode: the statistics file {path} could not be read ({e}); it is "
                      f"kept as {aside.name} and a new one is started")
            log.warning("%s", notice)
            table = {}
        for key, c in counts.items():
            table.setdefault(key, Counts()).add(c)
        dump(table, path)
    return notice


@contextlib.contextmanager
def _locked(path: Path, timeout_s: float) -> Iterator[None]:
    """An exclusive lock next to `path` (where fcntl exists), so that two servers do
    not both read the old totals and overwrite each other's. Raises TimeoutError when
    another process holds it for `timeout_s`."""
    try:
        import fcntl
    except ImportError:  # Windows: a lost update between two windows is acceptable
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        lock_within(f, timeout_s, f.name)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- The summary ------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), interpolated between closest ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _row(tier: str, member: str | None, c: Counts) -> dict[str, Any]:
    accepted = c.accepted_whole + c.accepted_part
    return {
        "tier": tier,
        "member": member,
        "shown": c.shown,
        "accepted": accepted,
        "accepted_whole": c.accepted_whole,
        "accepted_part": c.accepted_part,
        "dismissed": c.dismissed,
        "acceptance_rate": accepted / c.shown if c.shown else None,
        "p50_s": percentile(c.latencies_s, 50),
        "p95_s": percentile(c.latencies_s, 95),
        "latencies": len(c.latencies_s),
    }


def summarize(table: Table) -> list[dict[str, Any]]:
    """One row per tier (`member` None: its members together), each followed by one row
    per member of that tier. Acceptance rate = (whole + part) / shown."""
    rows: list[dict[str, Any]] = []
    for tier in sorted({t for t, _ in table}):
        members = sorted((m, c) for (t, m), c in table.items() if t == tier)
        total = Counts()
        for _, c in members:
            total.add(c)
        total.latencies_s = [x for _, c in members for x in c.latencies_s]
        rows.append(_row(tier, None, total))
        rows.extend(_row(tier, m, c) for m, c in members)
    return rows


# -- Counting ---------------------------------------------------------------------------


@dataclass
class _Open:
    """A shown answer whose ghost text is still on screen."""

    answer_id: str
    key: Key
    at: Pos  # where the rest of the ghost text would go
    rest: str  # the ghost text not yet in the document
    part: bool = False  # some of it was accepted (counted as accepted_part)
    alt: tuple[Pos, str] | None = None  # the same change as re-shown from an earlier start


def _same_change(at: Pos, text: str, o: _Open) -> bool:
    """Whether `text` at `at` leaves the document as the open answer's rest would: it
    ends with that rest, and what comes before the rest ends where the rest starts
    (that part is already in the document)."""
    if not text.endswith(o.rest):
        return False
    return _after(at, text[: len(text) - len(o.rest)]) == o.at


def _after(start: Pos, text: str) -> Pos:
    """The position at the end of `text` inserted at `start`."""
    newlines = text.count("\n")
    if not newlines:
        return start[0], start[1] + len(text)
    return start[0] + newlines, len(text) - text.rfind("\n") - 1


def _matches(new_text: str, ghost: str) -> bool:
    """Whether a change inserting `new_text` inserted the ghost text `ghost` (the client
    may trim or add surrounding whitespace)."""
    return new_text == ghost or bool(new_text.strip()) and new_text.strip() == ghost.strip()


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" \t"))


class Stats:
    """Counts what happens to shown answers; writes them at most every `interval_s`
    seconds (on the next event) and on `flush()`.

    Called on the event loop, `flush()` hands the counts to a writer thread of its own
    and returns at once; elsewhere it writes before returning. `on_set_aside(message)`
    is told (on the loop) when the file was moved aside."""

    def __init__(self, path: Path | None = None, *, interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_set_aside: Callable[[str], None] | None = None,
                 lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.path = path if path is not None else stats_file()
        self.interval_s = interval_s
        self.on_set_aside = on_set_aside
        self.lock_timeout_s = lock_timeout_s
        self._clock = clock
        self._last_write = clock()
        self._pending: Table = {}
        self._open: dict[str, _Open] = {}  # by uri: one ghost text per document
        self._closed: OrderedDict[str, tuple[Key, str]] = OrderedDict()  # id -> outcome
        self._aliases: OrderedDict[str, str] = OrderedDict()  # re-shown id -> first id
        # Handed to a write that has not succeeded yet: touched only by `_write`, which
        # runs one at a time (`_write_lock`), and read by `summary` (`_unwritten_lock`).
        self._unwritten: Table = {}
        self._write_lock = threading.Lock()
        self._unwritten_lock = threading.Lock()
        self._writer: ThreadPoolExecutor | None = None

    # The events ---------------------------------------------------------------------

    def shown(self, answer_id: str, uri: str, tier: str, member: str, latency_s: float,
              text: str, at: tuple[int, int]) -> None:
        """An answer was shown: `text` would be inserted at `at` in document `uri`."""
        at = (int(at[0]), int(at[1]))
        answer_id = self._aliases.get(answer_id, answer_id)
        current = self._open.get(uri)
        if current is None and text and self._closed.get(answer_id, ((), ""))[1] == "dismissed":
            # Shown again after a change this module took for a dismissal: reopen it.
            key = self._closed.pop(answer_id)[0]
            self._counts(key).dismissed -= 1
            self._open[uri] = _Open(answer_id, key, at, text)
            return
        if answer_id in self._closed:
            return  # accepted already; showing it again changes nothing
        if current is not None:
            if current.answer_id == answer_id or (
                    current.key == (tier, member) and _same_change(at, text, current)):
                # The same ghost text asked for again (the editor re-requests as the
                # user types along): one answer shown, not two. The client now holds
                # it as `text` at `at`, and may insert it so.
                if answer_id != current.answer_id:
                    self._aliases[answer_id] = current.answer_id
                while len(self._aliases) > _KEEP_CLOSED:
                    self._aliases.popitem(last=False)
                current.alt = (at, text)
                return
            self._close(uri)
        key = (tier, member)
        counts = self._counts(key)
        counts.shown += 1
        counts.latencies_s = (counts.latencies_s + [float(latency_s)])[-KEEP_LATENCIES:]
        if text:
            self._open[uri] = _Open(answer_id, key, at, text)
        else:
            self._remember(answer_id, key, "dismissed")
            counts.dismissed += 1
        self._maybe_flush()

    def request(self, uri: str, at: tuple[int, int]) -> None:
        """A completion request at `at`: an answer open elsewhere in `uri` was dismissed."""
        self.cursor_moved(uri, at)

    def cursor_moved(self, uri: str, at: tuple[int, int]) -> None:
        o = self._open.get(uri)
        if o is not None and o.at != (int(at[0]), int(at[1])):
            self._close(uri)
            self._maybe_flush()

    def text_changed(self, uri: str, start: tuple[int, int], end: tuple[int, int],
                     new_text: str) -> None:
        """One content change of `uri`: the range start..end was replaced by new_text."""
        o = self._open.get(uri)
        if o is None:
            return
        start = (int(start[0]), int(start[1]))
        end = (int(end[0]), int(end[1]))
        # The client may leave out leading whitespace that the document already has.
        offset = start[1] - o.at[1] if start[0] == o.at[0] else -1
        if o.alt is not None and start == o.alt[0] and _matches(new_text, o.alt[1]):
            self._accept_whole(uri)
        elif not new_text or not 0 <= offset <= _indent(o.rest.split("\n", 1)[0]):
            self._close(uri)
        elif offset == 0 and start == end and len(new_text) == 1 and o.rest[0] == new_text:
            # Typed along: the user typed the next character of the ghost text.
            o.at, o.rest = _after(start, new_text), o.rest[1:]
            if not o.rest:
                self._close(uri)
        elif _matches(new_text, o.rest[offset:]):
            self._accept_whole(uri)
        elif o.rest[offset:].startswith(new_text):
            # acceptNextLine / acceptNextWord: a first part; the rest stays on screen.
            if not o.part:
                o.part = True
                self._counts(o.key).accepted_part += 1
            o.at, o.rest = _after(start, new_text), o.rest[offset + len(new_text):]
            if not o.rest.strip():
                self._accept_whole(uri)
        else:
            self._close(uri)
        self._maybe_flush()

    def document_replaced(self, uri: str) -> None:
        """The whole document changed (or was closed): its open answer was dismissed."""
        if uri in self._open:
            self._close(uri)
            self._maybe_flush()

    def accepted(self, answer_id: str) -> None:
        """The client says the answer was accepted whole (`cascode.accepted`)."""
        answer_id = self._aliases.get(answer_id, answer_id)
        for uri, o in self._open.items():
            if o.answer_id == answer_id:
                self._accept_whole(uri)
                self._maybe_flush()
                return
        closed = self._closed.get(answer_id)
        if closed is None:
            log.info("stats: accepted an unknown answer %r", answer_id)
            return
        key, outcome = closed
        if outcome != "whole":  # the changes did not look like an accept: the client knows
            counts = self._counts(key)
            undone = "dismissed" if outcome == "dismissed" else "accepted_part"
            setattr(counts, undone, getattr(counts, undone) - 1)
            counts.accepted_whole += 1
            self._remember(answer_id, key, "whole")
            self._maybe_flush()

    def close_all(self) -> None:
        """Close every open answer (the server stops): those not accepted were dismissed."""
        for uri in list(self._open):
            self._close(uri)

    # Reading and writing ------------------------------------------------------------

    def summary(self) -> list[dict[str, Any]]:
        """The file's totals plus what this server counted since, per tier and member."""
        table = load_or_empty(self.path)
        with self._unwritten_lock:
            since = [*self._unwritten.items(), *self._pending.items()]
        for key, counts in since:
            table.setdefault(key, Counts()).add(counts)
        return summarize(table)

    def flush(self) -> Future[str | None] | None:
        """Add what was counted since the last write to the file: on the writer thread
        when called on an event loop (returns that write's future), else at once. Never
        raises: a file that cannot be written is logged, and the counts wait for the
        next write."""
        self._last_write = self._clock()
        pending = {k: c for k, c in self._pending.items() if not c.empty()}
        self._pending.clear()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._report(self._write(pending))
            return None
        if self._writer is None:
            # One thread, so that writes happen in order; its queue is finished before
            # the interpreter exits (concurrent.futures joins it).
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="cascode-stats")
        future = self._writer.submit(self._write, pending)

        def report(f: Future[str | None]) -> None:
            if f.cancelled():
                return
            if f.exception() is not None:
                log.error("writing the statistics file failed", exc_info=f.exception())
            elif f.result() is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self._report, f.result())

        future.add_done_callback(report)
        return future

    def _write(self, pending: Table) -> str | None:
        """Add `pending`, and whatever an earlier write could not, to the file; returns
        the message when the file was moved aside. Blocking."""
        with self._write_lock:
            with self._unwritten_lock:
                for key, counts in pending.items():
                    self._unwritten.setdefault(key, Counts()).add(counts)
                todo = {k: dataclasses.replace(c, latencies_s=list(c.latencies_s))
                        for k, c in self._unwritten.items()}
            if not todo:
                return None
            try:
                notice = add_to_file(self.path, todo, self.lock_timeout_s)
            except OSError as e:
                log.warning("could not write the statistics file %s: %s", self.path, e)
                return None
            with self._unwritten_lock:
                self._unwritten.clear()
            return notice

    def _report(self, notice: str | None) -> None:
        if notice is not None and self.on_set_aside is not None:
            self.on_set_aside(notice)

    def _counts(self, key: Key) -> Counts:
        return self._pending.setdefault(key, Counts())

    def _accept_whole(self, uri: str) -> None:
        o = self._open.pop(uri)
        counts = self._counts(o.key)
        if o.part:
            counts.accepted_part -= 1
        counts.accepted_whole += 1
        self._remember(o.answer_id, o.key, "whole")

    def _close(self, uri: str) -> None:
        o = self._open.pop(uri)
        if o.part:
            self._remember(o.answer_id, o.key, "part")
        else:
            self._counts(o.key).dismissed += 1
            self._remember(o.answer_id, o.key, "dismissed")

    def _remember(self, answer_id: str, key: Key, outcome: str) -> None:
        self._closed[answer_id] = (key, outcome)
        self._closed.move_to_end(answer_id)
        while len(self._closed) > _KEEP_CLOSED:
            self._closed.popitem(last=False)

    def _maybe_flush(self) -> None:
        if self._clock() - self._last_write >= self.interval_s:
            self.flush()
