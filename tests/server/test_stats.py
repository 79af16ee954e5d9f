"""Local statistics: what became of shown answers (server/stats.py), `cascode stats`, and
the server telling them from a real client's didChange."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import pytest

from cascode.cli import main
from cascode.server import stats
from cascode.server.stats import Stats

URI = "file:///w/a.py"
TEXT = "    return a + b\n    # done"
AT = (5, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path):
    return tmp_path / "stats.json"


def _row(s: Stats, member: str | None = "small", tier: str = "balanced") -> dict:
    return next(r for r in s.summary() if r["tier"] == tier and r["member"] == member)


def _shown(s: Stats, answer_id: str = "a1", at=AT, text=TEXT, member: str = "small",
           latency_s: float = 0.5) -> None:
    s.shown(answer_id, URI, "balanced", member, latency_s, text, at)


def test_whole_accept_as_one_change(path):
    s = Stats(path)
    _shown(s)
    s.text_changed(URI, AT, (5, 7), TEXT)  # replaces `    ...`, as the inline item's range
    s.accepted("a1")  # the client's command afterwards counts nothing more
    row = _row(s)
    assert (row["shown"], row["accepted_whole"], row["accepted_part"], row["dismissed"]) == (
        1, 1, 0, 0)
    assert row["acceptance_rate"] == 1.0


def test_whole_accept_with_whitespace_the_client_left_out(path):
    s = Stats(path)
    _shown(s)
    s.text_changed(URI, (5, 4), (5, 4), TEXT.lstrip() + "\n")
    assert _row(s)["accepted_whole"] == 1


def test_accept_next_line_then_the_rest(path):
    s = Stats(path)
    _shown(s)
    s.text_changed(URI, AT, AT, "    return a + b")
    assert (_row(s)["accepted_part"], _row(s)["accepted_whole"]) == (1, 0)
    s.text_changed(URI, (5, 16), (5, 16), "\n    # done")
    row = _row(s)
    assert (row["shown"], row["accepted_whole"], row["accepted_part"], row["dismissed"]) == (
        1, 1, 0, 0)


def test_accept_next_line_then_another_edit_counts_a_part(path):
    s = Stats(path)
    _shown(s)
    s.text_changed(URI, AT, AT, "    return")
    s.text_changed(URI, (9, 0), (9, 0), "x")
    row = _row(s)
    assert (row["accepted_part"], row["accepted_whole"], row["dismissed"]) == (1, 0, 0)
    assert row["acceptance_rate"] == 1.0


def test_typing_along_then_a_different_edit_dismisses(path):
    s = Stats(path)
    _shown(s)
    s.text_changed(URI, AT, AT, " ")
    for i, ch in enumerate("   ret", start=1):
        s.text_changed(URI, (5, i), (5, i), ch)
    assert _row(s)["dismissed"] == 0  # still on screen
    s.text_changed(URI, (5, 7), (5, 7), "x")  # not the ghost text's next character
    row = _row(s)
    assert (row["shown"], row["accepted_whole"], row["accepted_part"], row["dismissed"]) == (
        1, 0, 0, 1)


def test_typing_along_then_accepting_the_rest(path):
    s = Stats(path)
    _shown(s)
    for i, ch in enumerate("    r"):
        s.text_changed(URI, (5, i), (5, i), ch)
    s.text_changed(URI, (5, 5), (5, 5), TEXT[5:])
    assert _row(s)["accepted_whole"] == 1


def test_reshown_while_typing_along_is_one_answer(path):
    s = Stats(path)
    _shown(s)
    s.text_changed(URI, AT, AT, " ")
    s.request(URI, (5, 1))  # the editor asks again at the cursor
    _shown(s, "a2", at=AT, text=TEXT)  # the same change, from the line start
    s.text_changed(URI, AT, (5, 1), TEXT)  # accepted as the client now holds it
    row = _row(s)
    assert (row["shown"], row["accepted_whole"], row["dismissed"]) == (1, 1, 0)
    assert row["latencies"] == 1


def test_dismissed_by_a_request_elsewhere_and_by_a_new_answer(path):
    s = Stats(path)
    _shown(s)
    s.request(URI, AT)  # at the answer's position: still open
    assert _row(s)["dismissed"] == 0
    s.request(URI, (9, 4))
    assert _row(s)["dismissed"] == 1
    _shown(s, "a2", member="large")
    _shown(s, "a3", at=(9, 0), text="    pass")  # another answer replaces it
    assert _row(s, "large")["dismissed"] == 1
    s.cursor_moved(URI, (0, 0))
    assert _row(s)["dismissed"] == 2


def test_whole_document_change_and_other_documents(path):
    s = Stats(path)
    _shown(s)
    s.text_changed("file:///w/other.py", AT, AT, "zzz")  # another document: no effect
    assert _row(s)["dismissed"] == 0
    s.document_replaced(URI)
    assert _row(s)["dismissed"] == 1


def test_accepted_command_corrects_a_dismissal(path):
    # The changes did not look like an accept (a completion item's extra edits): the
    # client's `cascode.accepted` says it was.
    s = Stats(path)
    _shown(s)
    s.text_changed(URI, (7, 0), (8, 0), "")
    assert _row(s)["dismissed"] == 1
    s.accepted("a1")
    row = _row(s)
    assert (row["accepted_whole"], row["dismissed"]) == (1, 0)
    s.accepted("nobody")  # unknown: ignored


def test_persistence_round_trip_and_merging(path):
    clock = Clock()
    s = Stats(path, interval_s=5.0, clock=clock)
    _shown(s, latency_s=0.25)
    s.text_changed(URI, AT, AT, TEXT)
    assert not path.exists()  # not before the interval
    clock.now = 6.0
    _shown(s, "a2", member="large", latency_s=2.0)  # the next event writes
    assert path.exists()
    s.close_all()  # the server stops: a2 was dismissed
    s.flush()
    data = json.loads(path.read_text())
    assert data["version"] == stats.VERSION
    # A second server (another window) adds to the same file.
    t = Stats(path)
    _shown(t, "b1", latency_s=0.75)
    t.flush()
    table = stats.load(path)
    small, large = table[("balanced", "small")], table[("balanced", "large")]
    assert (small.shown, small.accepted_whole, small.latencies_s) == (2, 1, [0.25, 0.75])
    assert (large.shown, large.dismissed, large.latencies_s) == (1, 1, [2.0])
    tier = _row(t, None)
    assert (tier["shown"], tier["accepted"], tier["dismissed"]) == (3, 1, 1)


def test_a_corrupt_file_is_moved_aside_unchanged_and_a_new_one_started(path, caplog):
    path.write_text("{not json")
    told: list[str] = []
    s = Stats(path, on_set_aside=told.append)
    _shown(s)
    with caplog.at_level(logging.WARNING):
        s.flush()
    (aside,) = stats.set_aside_files(path)
    assert aside.name.startswith("stats.json.corrupt-")
    assert aside.read_text() == "{not json"
    assert stats.load(path)[("balanced", "small")].shown == 1
    assert len(told) == 1 and f"kept as {aside.name}" in told[0] and told[0] in caplog.text
    _shown(s, "a2", text="    return 0")
    s.flush()  # the new file is read and added to; nothing more is moved
    assert stats.set_aside_files(path) == [aside] and len(told) == 1
    assert stats.load(path)[("balanced", "small")].shown == 2


def test_a_newer_version_file_is_moved_aside_unchanged(path):
    newer = json.dumps({"version": stats.VERSION + 1, "rows": [{"tier": "fast"}]})
    path.write_text(newer)
    s = Stats(path)
    _shown(s)
    s.flush()
    (aside,) = stats.set_aside_files(path)
    assert aside.name.startswith(f"stats.json.version-{stats.VERSION + 1}-")
    assert aside.read_text() == newer
    assert json.loads(path.read_text())["version"] == stats.VERSION
    assert stats.load(path)[("balanced", "small")].shown == 1


def test_two_files_moved_aside_in_the_same_second_keep_both(path):
    path.write_text("first")
    error = ValueError("bad")
    taken = stats.aside_name(path, error, now=0.0)
    taken.write_text("earlier")
    assert stats.aside_name(path, error, now=0.0) == taken.with_name(taken.name + "-2")


@contextlib.contextmanager
def _lock_held(path):
    """Hold the stats file's lock as another server would (a lock of its own)."""
    import fcntl

    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


async def test_a_flush_on_the_event_loop_does_not_wait_for_the_lock(path):
    s = Stats(path)
    _shown(s)
    with _lock_held(path):
        started = time.monotonic()
        future = s.flush()
        assert future is not None and time.monotonic() - started < 0.5
        ticks = 0
        for _ in range(10):  # the loop keeps running while the write waits
            await asyncio.sleep(0.02)
            ticks += 1
        assert ticks == 10 and not future.done() and not path.exists()
    await asyncio.wait_for(asyncio.wrap_future(future), 10)
    assert stats.load(path)[("balanced", "small")].shown == 1


async def test_a_lock_held_too_long_keeps_the_counts_for_the_next_write(path, caplog):
    s = Stats(path, lock_timeout_s=0.2)
    _shown(s)
    with _lock_held(path), caplog.at_level(logging.WARNING):
        future = s.flush()
        assert future is not None
        await asyncio.wrap_future(future)
    assert "stayed locked" in caplog.text and not path.exists()
    assert _row(s)["shown"] == 1  # still counted
    _shown(s, "a2", member="large")
    future = s.flush()
    assert future is not None
    await asyncio.wrap_future(future)
    table = stats.load(path)
    assert (table[("balanced", "small")].shown, table[("balanced", "large")].shown) == (1, 1)


def test_unwritable_state_dir_keeps_the_counts(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    s = Stats(blocker / "stats.json")  # its folder is a file
    _shown(s)
    s.flush()  # logged, not raised
    assert _row(s)["shown"] == 1


def test_percentiles_and_latency_window(path):
    assert stats.percentile([], 50) is None
    assert stats.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert stats.percentile([float(x) for x in range(1, 101)], 95) == pytest.approx(95.05)
    s = Stats(path)
    for i in range(stats.KEEP_LATENCIES + 100):
        _shown(s, f"id{i}", text=f"    return {i}", latency_s=float(i))
    s.close_all()
    row = _row(s)
    assert row["shown"] == stats.KEEP_LATENCIES + 100
    assert row["latencies"] == stats.KEEP_LATENCIES
    assert row["p50_s"] == pytest.approx(349.5)  # of the last 500: 100..599


def test_cli_no_file_json_and_reset(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CASCODE_STATE_DIR", str(tmp_path))
    assert main(["stats"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"no answers recorded yet (file: {tmp_path / 'stats.json'})")

    s = Stats()
    assert s.path == tmp_path / "stats.json"
    _shown(s, latency_s=1.0)
    s.text_changed(URI, AT, AT, TEXT)
    _shown(s, "a2", member="large", latency_s=3.0)
    s.close_all()
    s.flush()

    assert main(["stats"]) == 0
    out = capsys.readouterr().out
    assert "balanced" in out and "  small" in out and "50.0%" in out

    assert main(["stats", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["file"] == str(tmp_path / "stats.json")
    tier, large, small = report["rows"]
    assert (tier["member"], tier["shown"], tier["acceptance_rate"]) == (None, 2, 0.5)
    assert (large["member"], large["dismissed"], large["p50_s"]) == ("large", 1, 3.0)
    assert (small["member"], small["accepted_whole"], small["p95_s"]) == ("small", 1, 1.0)

    assert main(["stats", "--reset"]) == 0
    assert "deleted" in capsys.readouterr().out
    assert not (tmp_path / "stats.json").exists()
    assert main(["stats", "--reset"]) == 0
    assert "nothing to reset" in capsys.readouterr().out


@pytest.mark.e2e
@pytest.mark.timeout(120)
async def test_server_counts_an_inserted_answer_and_a_dismissed_one(tmp_path, monkeypatch,
                                                                   capsys):
    from lsp_session import ADD_LINE, ADD_STUB, session
    from lsprotocol import types

    state = tmp_path / "state"
    monkeypatch.setenv("CASCODE_STATE_DIR", str(state))
    async with session(tmp_path, client_name="visual-studio-code") as s:
        first = s.open(ADD_STUB)
        (item,) = (await s.inline(first, ADD_LINE)).items
        # Accepting the ghost text: the client inserts it over the item's range.
        s.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=first, version=2),
            content_changes=[types.TextDocumentContentChangePartial(
                range=item.range, text=item.insert_text)]))
        await s.command("cascode.accepted", *item.command.arguments)

        second = s.open(ADD_STUB, uri="file:///work/second.py")
        assert (await s.inline(second, ADD_LINE)).items
        # Typing elsewhere while the ghost text shows: dismissed.
        s.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=second, version=2),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=types.Position(line=0, character=0),
                                  end=types.Position(line=0, character=0)),
                text="#")]))
        await s.command("cascode.listTiers")  # the notification was handled
    # The shutdown wrote the file.
    assert main(["stats", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    tier = next(r for r in rows if r["member"] is None)
    assert (tier["tier"], tier["shown"], tier["accepted_whole"], tier["dismissed"]) == (
        "balanced", 2, 1, 1)
    assert tier["p50_s"] is not None


def test_cli_lists_the_files_moved_aside(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CASCODE_STATE_DIR", str(tmp_path))
    path = tmp_path / "stats.json"
    path.write_text(json.dumps({"version": stats.VERSION + 1}))
    assert main(["stats"]) == 0
    captured = capsys.readouterr()
    assert f"{path} is unreadable" in captured.err
    assert f"the server will move it aside (to stats.json.version-{stats.VERSION + 1}-<time>)" \
        in captured.err
    assert path.read_text() == json.dumps({"version": stats.VERSION + 1})  # only read

    s = Stats(path)
    _shown(s)
    s.flush()
    (aside,) = stats.set_aside_files(path)
    assert main(["stats"]) == 0
    out = capsys.readouterr().out
    assert "  small" in out
    assert f"moved aside, not counted (unreadable or of another version): {aside}" in out
    assert main(["stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["set_aside"] == [str(aside)]
    assert main(["stats", "--reset"]) == 0
    assert f"moved aside, not counted (unreadable or of another version): {aside}" in (
        capsys.readouterr().out)
    assert aside.exists() and not path.exists()


@pytest.mark.e2e
@pytest.mark.timeout(120)
async def test_the_server_answers_while_the_stats_lock_is_held_and_keeps_a_corrupt_file(
        tmp_path, monkeypatch, capsys):
    from lsp_session import ADD_LINE, ADD_STUB, session

    state = tmp_path / "state"
    state.mkdir()
    path = state / "stats.json"
    path.write_text("{not json")
    monkeypatch.setenv("CASCODE_STATE_DIR", str(state))
    # Every counted event writes: the first answer shown starts a write at once.
    async with session(tmp_path, extra_env={"CASCODE_TEST_STATS_INTERVAL": "0"}) as s:
        first = s.open(ADD_STUB)
        with _lock_held(path):  # another window's server is writing
            assert (await asyncio.wait_for(s.inline(first, ADD_LINE), 10)).items
            # The write waits for the lock (up to 10 s) off the event loop: the
            # server goes on answering meanwhile.
            started = time.monotonic()
            await asyncio.wait_for(s.command("cascode.listTiers"), 3)
            second = s.open(ADD_STUB, uri="file:///work/second.py")
            assert (await asyncio.wait_for(s.inline(second, ADD_LINE), 3)).items
            assert time.monotonic() - started < 3
            assert path.read_text() == "{not json"
        message = await s.wait_for_message("could not be read")
    (aside,) = stats.set_aside_files(path)
    assert aside.read_text() == "{not json"
    assert f"kept as {aside.name}" in message
    assert main(["stats", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["set_aside"] == [str(aside)]
    tier = next(r for r in report["rows"] if r["member"] is None)
    assert (tier["shown"], tier["dismissed"]) == (2, 2)
