"""Outputs appear whole or not at all, with the permissions the user's umask asks for."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataset_doctor import __version__
from dataset_doctor.atomic import (
    FILE_MODE,
    OUTPUT_MARKER,
    atomic_write,
    atomic_write_text,
    check_output_folder,
    is_our_output,
    remove_stale_staging,
    remove_stale_temporaries,
    staged_directory,
)
from dataset_doctor.errors import DoctorError
from tests.hostile_outputs import CHMOD_DENIES


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


# --- output-folder safety (issue 16 items 1, 6, 10): marker, --force, unwritable folders, stale staging ---

REPO = Path(__file__).resolve().parents[2]


def killed_child(code: str) -> int:
    """Run `code` in a fresh Python that SIGKILLs itself at the end (a crash, not an exit); returns its PID."""
    child = subprocess.run([sys.executable, "-c", code + "\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)"],
                           env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    return int(child.stdout.split()[-1])


def test_every_staged_output_carries_our_marker_and_no_owner_file(tmp_path):
    out = tmp_path / "dataset"
    with staged_directory(out, "split") as staging:
        (staging / "data.yaml").write_text("names: [a]\n")
    marker = json.loads((out / OUTPUT_MARKER).read_text())
    assert marker == {"tool": "dataset-doctor", "version": __version__, "command": "split"}  # deterministic
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "data.yaml"] and is_our_output(out)


def test_force_replaces_only_a_marked_folder_that_holds_no_source_file(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "photo.jpg").write_bytes(b"precious")
    with pytest.raises(DoctorError, match="not empty.*--force"):
        check_output_folder(foreign)
    with pytest.raises(DoctorError, match="only a folder dataset-doctor wrote"):
        check_output_folder(foreign, force=True)
    (foreign / OUTPUT_MARKER).symlink_to(tmp_path / "elsewhere")  # a link is not our marker
    with pytest.raises(DoctorError, match="only a folder dataset-doctor wrote"):
        check_output_folder(foreign, force=True)

    ours = tmp_path / "ours"
    with staged_directory(ours, "fix") as staging:
        (staging / "image.jpg").write_bytes(b"copy")
    assert check_output_folder(ours, force=True) == ours
    # A source image that is a link into the folder: deleting the folder deletes the image's data.
    source = tmp_path / "source" / "images"
    source.mkdir(parents=True)
    (source / "a.jpg").symlink_to(ours / "image.jpg")
    with pytest.raises(DoctorError, match=r"--force would delete .*a\.jpg, which the source dataset reads"):
        check_output_folder(ours, force=True, source_files=lambda: [str(source / "a.jpg")])
    assert (ours / "image.jpg").read_bytes() == b"copy"


def test_a_folder_under_a_file_is_a_one_line_error_even_as_root(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DoctorError, match="cannot write the output here") as refused, \
            staged_directory(tmp_path / "file" / "out"):
        pass
    assert "file/out" in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.skipif(not CHMOD_DENIES, reason="root writes into a 0o555 folder anyway")
def test_a_read_only_parent_is_a_one_line_error(tmp_path):
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        with pytest.raises(DoctorError, match=r"cannot write the output here \(Permission denied\)"), \
                staged_directory(parent / "out"):
            pass
    finally:
        parent.chmod(0o755)


def test_staging_left_by_a_killed_run_is_removed_at_the_next_run(tmp_path, capsys):
    out = tmp_path / "out"
    pid = killed_child(f"from pathlib import Path\nfrom dataset_doctor.atomic import staged_directory\n"
                       f"with staged_directory(Path({str(out)!r}), 'fix') as staging:\n"
                       f"    for i in range(50): (staging / f'{{i}}.jpg').write_bytes(b'x')\n"
                       f"    import os; print(os.getpid(), flush=True)\n"
                       f"    os.kill(os.getpid(), 9)")
    left = [p for p in tmp_path.iterdir() if p.name.startswith(f".out.tmp-{pid}-")]
    assert len(left) == 1 and len(list(left[0].iterdir())) == 52  # 50 images, marker, owner file
    unmarked = tmp_path / ".mine.tmp-1-0123abcd"  # our name pattern, not our owner file: not ours to delete
    unmarked.mkdir()
    with staged_directory(tmp_path / "other", "fix") as staging:  # any output written beside it
        (staging / "data.yaml").write_text("names: [a]\n")
    assert not left[0].exists() and unmarked.is_dir()
    error = capsys.readouterr().err
    assert f"note: removed {left[0]}" in error and f"process {pid}, not running" in error


def test_a_live_runs_staging_is_left_alone(tmp_path):
    code = (f"from pathlib import Path\nimport sys\nfrom dataset_doctor.atomic import staged_directory\n"
            f"with staged_directory(Path({str(tmp_path / 'out')!r})) as staging:\n"
            f"    print('ready', flush=True)\n    sys.stdin.readline()\n")
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert remove_stale_staging(tmp_path) == []
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".out.tmp-{child.pid}-")]
    finally:
        child.communicate("go\n", timeout=60)
    assert (tmp_path / "out" / OUTPUT_MARKER).is_file()


def test_checkpoint_temporaries_of_killed_writes_are_removed(tmp_path):
    weights = tmp_path / "weights"
    pid = killed_child(f"from pathlib import Path\nimport os\nfrom dataset_doctor.atomic import atomic_write\n"
                       f"def write(temporary):\n    temporary.write_bytes(b'half a checkpoint')\n"
                       f"    print(os.getpid(), flush=True)\n    os.kill(os.getpid(), 9)\n"
                       f"atomic_write(Path({str(weights / 'best.pt')!r}), write)")
    [killed] = [p.name for p in weights.iterdir()]
    assert killed.startswith(f".best.pt.{pid}-") and killed.endswith(".tmp")
    mine = weights / f".last.pt.{os.getpid()}-0123abcd.tmp"  # this process: being written right now
    mine.write_bytes(b"x")
    legacy = weights / ".last.pt.89abcdef.tmp"  # an older version's name, two hours old
    legacy.write_bytes(b"x")
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    fresh_legacy = weights / ".results.csv.89abcdef.tmp"  # no PID and recent: could be a live write
    fresh_legacy.write_bytes(b"x")
    user = weights / ".notes.tmp"
    user.write_bytes(b"x")
    notes = remove_stale_temporaries(weights)
    assert sorted(p.name for p in weights.iterdir()) == sorted([mine.name, fresh_legacy.name, user.name])
    assert len(notes) == 2 and any(f"process {pid}, not running" in note for note in notes)


def test_staged_directory_itself_never_replaces_a_folder_it_did_not_write(tmp_path):
    """Whatever a caller checked before: publishing over a non-empty folder without our marker is refused."""
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(DoctorError, match="dataset-doctor did not write it"), staged_directory(out) as staging:
        (staging / "data.yaml").write_text("names: [a]\n")
    assert [p.name for p in out.iterdir()] == ["holiday.jpg"] and [p.name for p in tmp_path.iterdir()] == ["photos"]
    with staged_directory(out / "x") as first:  # ours, nested: replacing it again is fine
        (first / "a").write_text("1")
    with staged_directory(out / "x") as second:
        (second / "b").write_text("2")
    assert sorted(p.name for p in (out / "x").iterdir()) == [OUTPUT_MARKER, "b"]
def test_csv_text_quotes_only_where_it_must_and_ends_lines_with_newline():
    """The one CSV format of every table written (results, per-class, confusion matrix, rebalance manifest)."""
    from dataset_doctor.atomic import csv_text

    text = csv_text(["name", "n"], [["plain", 1], ['a "b"', 2], ["c,d", 3], ["e\nf", 4], ["", None]])
    assert text == 'name,n\nplain,1\n"a ""b""",2\n"c,d",3\n"e\nf",4\n,\n'
