"""Outputs appear whole or not at all, with the permissions the user's umask asks for."""

from __future__ import annotations

import os
import stat

import pytest

from dataset_doctor.atomic import FILE_MODE, atomic_write, atomic_write_text, staged_directory


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def current_umask() -> int:
    value = os.umask(0)
    os.umask(value)
    return value


def test_files_get_the_umask_mode_not_tempfiles_private_one(tmp_path):
    path = atomic_write_text(tmp_path / "deep/report.html", "<p>hi</p>")
    assert path.read_text() == "<p>hi</p>"
    assert mode(path) == FILE_MODE == 0o666 & ~current_umask()
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "a.json", "old")

    def broken(temporary):
        temporary.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_staged_directory_appears_whole_with_normal_permissions(tmp_path):
    out = tmp_path / "dataset"
    with staged_directory(out) as staging:
        (staging / "data.yaml").write_text("names: [a]\n")
        assert not out.exists()
    assert (out / "data.yaml").exists() and mode(out) == 0o777 & ~current_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"]


def test_staged_directory_failure_keeps_the_previous_destination(tmp_path):
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(RuntimeError), staged_directory(out) as staging:
        (staging / "partial").write_text("x")
        raise RuntimeError("interrupted")
    assert (out / "keep.txt").read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["dataset"]


def test_csv_text_quotes_only_where_it_must_and_ends_lines_with_newline():
    """The one CSV format of every table written (results, per-class, confusion matrix, rebalance manifest)."""
    from dataset_doctor.atomic import csv_text

    text = csv_text(["name", "n"], [["plain", 1], ['a "b"', 2], ["c,d", 3], ["e\nf", 4], ["", None]])
    assert text == 'name,n\nplain,1\n"a ""b""",2\n"c,d",3\n"e\nf",4\n,\n'
