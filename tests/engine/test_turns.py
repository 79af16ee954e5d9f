"""Turns of the machine's model servers (`model_server.turn`): requests to one server
run together, a request to another server waits, turns alternate, and a killed client
holds nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cascode.engine.cancel import CancelToken
from cascode.engine.errors import Cancelled
from cascode.engine.model_server import _held, turn


def _enter(root: Path, key: str, events: list[str], hold: threading.Event,
           cancel: CancelToken | None = None) -> threading.Thread:
    def run() -> None:
        try:
            with turn(key, root, cancel, poll_s=0.005):
                events.append(f"in {key}")
                hold.wait(10)
            events.append(f"out {key}")
        except Cancelled:
            events.append(f"cancelled {key}")

    t = threading.Thread(target=run)
    t.start()
    return t


def _until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_one_servers_requests_run_together_another_waits(tmp_path: Path) -> None:
    events: list[str] = []
    hold_a, hold_b = threading.Event(), threading.Event()
    a1 = _enter(tmp_path, "a", events, hold_a)
    a2 = _enter(tmp_path, "a", events, hold_a)
    _until(lambda: events.count("in a") == 2)  # together
    b = _enter(tmp_path, "b", events, hold_b)
    _until(lambda: _held(tmp_path / "want-b.lock"))
    time.sleep(0.05)
    assert "in b" not in events  # waits while a's requests run
    hold_a.set()
    a1.join()
    a2.join()
    _until(lambda: "in b" in events)
    assert events.index("in b") > events.index("out a")
    hold_b.set()
    b.join()


def test_turns_alternate_rather_than_starve(tmp_path: Path) -> None:
    events: list[str] = []
    hold_a1, hold_a2, hold_b = threading.Event(), threading.Event(), threading.Event()
    a1 = _enter(tmp_path, "a", events, hold_a1)
    _until(lambda: "in a" in events)
    b = _enter(tmp_path, "b", events, hold_b)
    _until(lambda: _held(tmp_path / "want-b.lock"))  # b waits
    # A second request to a does not join a's running turn: it waits behind b.
    a2 = _enter(tmp_path, "a", events, hold_a2)
    _until(lambda: _held(tmp_path / "want-a.lock"))
    time.sleep(0.05)
    assert events == ["in a"]
    hold_a1.set()
    a1.join()
    _until(lambda: "in b" in events)
    assert events.count("in a") == 1
    hold_b.set()
    b.join()
    _until(lambda: events.count("in a") == 2)
    hold_a2.set()
    a2.join()


def test_a_waiting_request_is_cancelled(tmp_path: Path) -> None:
    events: list[str] = []
    hold = threading.Event()
    a = _enter(tmp_path, "a", events, hold)
    _until(lambda: "in a" in events)
    cancel = CancelToken()
    b = _enter(tmp_path, "b", events, threading.Event(), cancel)
    time.sleep(0.05)
    cancel.cancel("a newer request")
    b.join(5)
    assert "cancelled b" in events
    hold.set()
    a.join()


def test_a_killed_client_holds_no_turn(tmp_path: Path) -> None:
    script = ("import sys, time\nfrom pathlib import Path\n"
              "from cascode.engine.model_server import _held, turn\n"
              f"with turn('a', Path({str(tmp_path)!r})):\n"
              "    print('in', flush=True)\n    time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "in"
        events: list[str] = []
        hold = threading.Event()
        b = _enter(tmp_path, "b", events, hold)
        time.sleep(0.1)
        assert events == []
        os.kill(holder.pid, signal.SIGKILL)
        _until(lambda: "in b" in events)
        hold.set()
        b.join()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("n", [4])
def test_many_requests_of_two_servers_all_get_a_turn(tmp_path: Path, n: int) -> None:
    events: list[str] = []
    lock = threading.Lock()

    inside = {"a": 0, "b": 0}
    overlaps: list[str] = []

    def run(key: str) -> None:
        other = "b" if key == "a" else "a"
        for _ in range(5):
            with turn(key, tmp_path, poll_s=0.001):
                with lock:
                    events.append(key)
                    inside[key] += 1
                    if inside[other]:
                        overlaps.append(key)
                time.sleep(0.002)
                with lock:
                    inside[key] -= 1

    threads = [threading.Thread(target=run, args=("ab"[i % 2],)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert events.count("a") == events.count("b") == 10
    assert overlaps == []  # never both servers at once


def test_turn_files_unused_for_a_day_are_swept(tmp_path: Path) -> None:
    old = tmp_path / "turn-gone.lock"
    old.write_text("")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    recent = tmp_path / "turn-recent.lock"
    recent.write_text("")
    with turn("a", tmp_path):
        pass
    assert not old.exists() and recent.exists() and (tmp_path / "turn-a.lock").exists()
