"""`cascode doctor` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

from cascode.cli import main


def test_doctor_reports_a_path_and_its_layers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--layers", "landlock", "--json"]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert report["facts"]["landlock_abi"] >= 0
    (row,) = report["paths"]
    assert row["path"] == "landlock"
    if report["facts"]["landlock_abi"] == 0:
        assert not row["ok"] and "Landlock" in row["why"]
    else:
        assert row["ok"], row
        assert row["layers"][:2] == ["landlock", "rlimits"]
        assert report["auto"] == "landlock"


def test_doctor_table_and_bad_path(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["doctor", "--layers", "rlimits"])
    out = capsys.readouterr().out
    assert rc in (0, 1)
    assert "rlimits" in out and "isolates nothing" in out
    assert main(["doctor", "--layers", "chroot"]) == 1
    assert "cascode: error: --layers: unknown path 'chroot'" in capsys.readouterr().err
