"""The sandbox half of `cascode doctor`, held to facts found without it.

What each path's row must say (ok or refused, and why) and the exit code are
decided by host_facts (bubblewrap on PATH, the kernel's Landlock ABI from the
syscall, whether the host permits user namespaces), never by what the doctor
reports of itself. The model-backend half of `cascode doctor` has its own tests.
"""

from __future__ import annotations

import argparse
import json

import pytest

from cascode.engine.errors import CascodeError
from cascode.engine.sandbox import doctor

from ..conftest import in_ci, need
from ..host_facts import (
    bwrap_installed,
    expected_auto_path,
    landlock_abi,
    namespaces_blocked,
)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    doctor.add_arguments(parser)
    return parser.parse_args(list(argv))


def _expected_row(path: str) -> tuple[bool, str]:
    """(must the path work here, a phrase its refusal must contain)."""
    if path == "bwrap" and not bwrap_installed():
        return False, "bubblewrap (bwrap) is not installed"
    if path in ("bwrap", "unshare") and namespaces_blocked() is not None:
        return False, ""  # the host's refusal, in the kernel's words
    if path == "landlock" and landlock_abi() < 1:
        return False, "the kernel has no Landlock"
    return True, ""


@pytest.mark.parametrize("path", ["bwrap", "unshare", "landlock"])
def test_one_path_is_ok_exactly_where_the_host_permits_it(
    capsys: pytest.CaptureFixture[str], path: str
) -> None:
    if path == "bwrap" and in_ci():
        need(bwrap_installed(), "bubblewrap (bwrap) is not installed")
    rc = doctor.run(_args("--layers", path, "--json"))
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"facts", "paths", "auto"}
    assert report["facts"]["landlock_abi"] == landlock_abi()
    assert report["facts"]["bubblewrap"].startswith("not installed") == (not bwrap_installed())
    (row,) = report["paths"]
    assert row["path"] == path
    works, why = _expected_row(path)
    assert rc == (0 if works else 1), row
    assert row["ok"] is works, row
    if works:
        assert row["layers"] == [path, "rlimits", "seccomp"]
        assert row["startup_s"] > 0
        assert report["auto"] == path
    else:
        assert row["layers"] == [] and report["auto"] is None
        assert why in row["why"] and row["why"]


def test_all_paths_and_what_auto_uses(capsys: pytest.CaptureFixture[str]) -> None:
    if in_ci():
        need(bwrap_installed(), "bubblewrap (bwrap) is not installed")
    report = doctor.collect(_args())
    rows = {r["path"]: r for r in report["paths"]}  # type: ignore[union-attr]
    assert list(rows) == ["bwrap", "unshare", "landlock", "rlimits"]
    for path in ("bwrap", "unshare", "landlock"):
        assert rows[path]["ok"] is _expected_row(path)[0], rows[path]
    # rlimits works on any Linux, and is never what auto uses.
    assert rows["rlimits"]["ok"] and rows["rlimits"]["layers"] == ["rlimits", "seccomp"]
    assert "isolates nothing" in rows["rlimits"]["why"]
    expected = expected_auto_path()
    assert report["auto"] == expected
    assert report["ok"] is (expected is not None)
    assert doctor.run(_args()) == (0 if expected is not None else 1)
    table = capsys.readouterr().out
    if expected is None:
        assert "auto uses: none" in table
    else:
        assert f"auto uses: {expected} ({', '.join(rows[expected]['layers'])})" in table


def test_table_of_the_rlimits_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert doctor.run(_args("--layers", "rlimits")) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("rlimits "))
    assert line.split()[1] == "ok"
    assert "rlimits, seccomp" in line and "isolates nothing" in line
    assert "auto uses: (only checked one path)" in out


def test_an_unknown_path_is_one_clear_error() -> None:
    with pytest.raises(CascodeError, match=r"--layers: unknown path 'chroot' \(expected one of: "
                                           r"all, bwrap, unshare, landlock, rlimits\)"):
        doctor.collect(_args("--layers", "chroot"))


def test_the_command_line_puts_the_sandbox_half_beside_the_backend(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cascode.cli import main

    main(["doctor", "--layers", "landlock", "--json"])  # its exit code includes the backend's
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"facts", "paths", "auto", "backend", "model_server"}
    (row,) = report["paths"]
    assert row["path"] == "landlock" and row["ok"] is _expected_row("landlock")[0]
    assert main(["doctor", "--layers", "chroot"]) == 1
    assert "cascode: error: --layers: unknown path 'chroot'" in capsys.readouterr().err
