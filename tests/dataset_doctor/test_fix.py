"""`doctor fix`: a repaired copy that audits without errors, a complete change log, and a source left untouched."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dataset_doctor.atomic import OUTPUT_MARKER
from dataset_doctor.audit import run_audit
from dataset_doctor.cli import app
from dataset_doctor.dataset.index import build_index
from dataset_doctor.errors import DoctorError
from dataset_doctor.findings import ERROR
from dataset_doctor.fix import FixOptions, fix_dataset
from tests import hostile_outputs as outputs
from tests.dataset_doctor.audit_helpers import NAMES, audit, base_splits, grid_label
from tests.hostile import tree_digest

runner = CliRunner()


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def read_log(out: Path) -> list[dict]:
    with open(out / "fix_log.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def fixed_sample(sample_yaml, tmp_path_factory):
    before = tree_hashes(sample_yaml.parent)
    source_index = build_index(sample_yaml, progress=False)
    out = tmp_path_factory.mktemp("fix") / "fixed"
    result = fix_dataset(source_index, out)
    return source_index, result, before


def test_the_source_is_unchanged(fixed_sample, sample_yaml):
    _, _, before = fixed_sample
    assert tree_hashes(sample_yaml.parent) == before


def test_the_copy_audits_without_errors(fixed_sample):
    source_index, result, _ = fixed_sample
    fixed = run_audit(build_index(result.data_yaml, progress=False))
    assert fixed.summary[ERROR] == 0, fixed.findings[fixed.findings["severity"] == ERROR].to_string()
    assert not {"mixed-label-types", "segment-label", "duplicate-box", "orphan-label"} & set(fixed.findings["check"])
    # Only the error lines and the exact repeat are gone: usable instances differ by the dropped duplicate.
    source = run_audit(source_index)
    duplicates = source.findings[source.findings["check"] == "duplicate-box"]
    assert sum(source.instances("train")) - sum(fixed.instances("train")) == len(duplicates)
    assert fixed.instances("val") == source.instances("val")


def test_every_error_and_change_is_logged(fixed_sample, sample_yaml):
    source_index, result, _ = fixed_sample
    log = read_log(result.data_yaml.parent)
    assert set(log[0]) == {"file", "line", "action", "before", "after", "reason"}
    logged = {(row["file"], row["line"]): row for row in log}
    source = run_audit(source_index)
    for finding in source.findings[source.findings["severity"] == ERROR].itertuples():
        if finding.check == "corrupt-image":
            assert logged[(finding.image, "")]["action"] == "drop-image"
        else:
            row = logged[(finding.label, str(finding.line))]
            assert row["action"] == "drop-line" and row["after"] == "" and row["before"]
            source_line = (sample_yaml.parent / finding.label).read_bytes().split(b"\n")[finding.line - 1]
            assert row["before"] == source_line.decode().strip()
    polygons = source_index.boxes[source_index.boxes["polygon"]]
    converted = [row for row in log if row["action"] == "polygon-to-box"]
    assert len(converted) == len(polygons) and all(len(row["after"].split()) == 5 for row in converted)
    assert [row["action"] for row in log if row["file"].endswith("train_99999.txt")] == ["drop-orphan-label"]
    assert sum(row["action"] == "drop-duplicate-line" for row in log) == 1


def test_unchanged_files_are_copied_byte_for_byte(fixed_sample, sample_yaml):
    _, result, _ = fixed_sample
    changed = {row["file"] for row in read_log(result.data_yaml.parent)}
    out = result.data_yaml.parent
    for label in (sample_yaml.parent / "labels/train").iterdir():
        relative = f"labels/train/{label.name}"
        if relative not in changed and (out / relative).exists():
            assert (out / relative).read_bytes() == label.read_bytes()
    for image in (sample_yaml.parent / "images/val").iterdir():
        assert (out / "images/val" / image.name).read_bytes() == image.read_bytes()


def test_the_new_data_yaml_points_at_the_copy(fixed_sample, sample_yaml):
    _, result, _ = fixed_sample
    written = yaml.safe_load(result.data_yaml.read_text())
    assert "path" not in written
    assert (written["train"], written["val"]) == ("images/train", "images/val")
    assert written["names"] == yaml.safe_load((sample_yaml.parent / "data.yaml").read_text())["names"]


def fix(data_yaml: Path, out: Path, **options):
    return fix_dataset(build_index(data_yaml, progress=False), out, FixOptions(**options))


def test_box_repairs(make_dataset, tmp_path):
    splits = base_splits()
    splits["train"]["t000.jpg"] = (grid_label().replace("\n", "\r\n")
                                   + "0 0.98 0.5 0.1 0.1\r\n"  # overhangs by 0.03: clipped
                                   + "1 0.5 1.15 0.1 0.2\r\n"  # overhangs by 0.25: dropped
                                   + "0 0.1 0.25 0.1 0.2\r\n"  # exact repeat of line 1: dropped
                                   + "0 0.102 0.251 0.1 0.2\r\n"  # near repeat (IoU 0.95): kept
                                   + "1 0.2 0.2 0.3 0.2 0.25 0.3\r\n")  # polygon: converted
    data_yaml = make_dataset(splits, names=NAMES)
    result = fix(data_yaml, tmp_path / "out")
    rows = {int(row["line"]): row for row in read_log(tmp_path / "out")}
    assert {line: row["action"] for line, row in rows.items()} == {
        11: "clip-box", 12: "drop-line", 13: "drop-duplicate-line", 15: "polygon-to-box"}
    assert rows[11]["before"] == "0 0.98 0.5 0.1 0.1" and rows[11]["after"] == "0 0.965000 0.500000 0.070000 0.100000"
    assert rows[15]["after"] == "1 0.250000 0.250000 0.100000 0.100000"
    lines = (tmp_path / "out/labels/train/t000.txt").read_bytes().split(b"\n")
    assert lines[0].endswith(b"\r") and lines[10] == b"0 0.965000 0.500000 0.070000 0.100000\r"
    assert len([line for line in lines if line.strip()]) == 10 + 3
    assert result.changed_label_files == 1 and result.images == 26
    fixed = audit(result.data_yaml)
    assert fixed.summary["error"] == 0 and set(fixed.findings["check"]) == {"duplicate-box"}


def test_a_byte_order_mark_does_not_cost_the_first_box(make_dataset, tmp_path):
    splits = base_splits()
    splits["train"]["t000.jpg"] = b"\xef\xbb\xbf" + grid_label().encode() + b"0 0.5 0.5 0.1\n"  # + one bad line
    data_yaml = make_dataset(splits, names=NAMES)
    source = audit(data_yaml)
    bad = source.findings[source.findings["check"] == "malformed-line"]
    assert bad["line"].tolist() == [11]  # the bad line, not line 1
    result = runner.invoke(app, ["fix", str(data_yaml), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert [(row["line"], row["action"]) for row in read_log(tmp_path / "out")] == [("11", "drop-line")]
    fixed = audit(tmp_path / "out/data.yaml")
    assert fixed.summary["error"] == 0 and fixed.instances("train") == source.instances("train")
    first = (tmp_path / "out/labels/train/t000.txt").read_bytes().split(b"\n")[0]
    assert first.removeprefix(b"\xef\xbb\xbf") == grid_label().encode().split(b"\n")[0]


def test_clip_max_decides_between_clipping_and_dropping(make_dataset, tmp_path):
    splits = base_splits()
    splits["train"]["t000.jpg"] = grid_label() + "0 0.98 0.5 0.1 0.1\n"
    data_yaml = make_dataset(splits, names=NAMES)
    fix(data_yaml, tmp_path / "strict", clip_max=0.02)
    assert [row["action"] for row in read_log(tmp_path / "strict")] == ["drop-line"]


def test_a_clean_dataset_is_copied_unchanged(make_dataset, tmp_path):
    data_yaml = make_dataset(base_splits(), names=NAMES)
    result = fix(data_yaml, tmp_path / "copy")
    assert result.log.empty and read_log(tmp_path / "copy") == []
    source, copy = tree_hashes(data_yaml.parent), tree_hashes(tmp_path / "copy")
    assert {k: v for k, v in copy.items() if k.startswith(("images", "labels"))} == \
        {k: v for k, v in source.items() if k.startswith(("images", "labels"))}


def test_image_lists_are_rewritten_for_the_copy(make_dataset, tmp_path):
    splits = base_splits()
    splits["train"]["broken.jpg"] = "0 0.5 0.5 0.2 0.2\n"
    data_yaml = make_dataset(splits, names=NAMES)
    root = data_yaml.parent
    (root / "images/train/broken.jpg").write_bytes(b"not an image")
    listed = [f"images/train/t{number:03d}.jpg" for number in range(0, 20, 2)] + ["images/train/broken.jpg"]
    (root / "train.txt").write_text("\n".join(listed) + "\n")
    data_yaml.write_text(data_yaml.read_text().replace("train: images/train", "train: train.txt"))
    result = fix(data_yaml, tmp_path / "out")
    written = yaml.safe_load(result.data_yaml.read_text())
    assert written["train"] == "train.txt"
    assert (tmp_path / "out/train.txt").read_text().split() == [f"./{path}" for path in listed[:-1]]
    fixed = audit(result.data_yaml, min_instances=50)
    assert fixed.summary["error"] == 0 and fixed.instances("train") == [50, 50]
    actions = [row["action"] for row in read_log(tmp_path / "out")]
    # The labels of the ten images the list leaves out are orphans to the index, and not copied either.
    assert actions.count("drop-image") == 1 and actions.count("drop-orphan-label") == 10 and len(actions) == 11
    assert not (tmp_path / "out/images/train/t001.jpg").exists()  # not in the list: not in the copy


def test_the_output_must_be_new_or_empty_and_outside_the_dataset(make_dataset, tmp_path):
    data_yaml = make_dataset(base_splits(), names=NAMES)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(DoctorError, match="not empty"):
        fix(data_yaml, busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    with pytest.raises(DoctorError, match="inside the source dataset"):
        fix(data_yaml, data_yaml.parent / "fixed")
    empty = tmp_path / "empty"
    empty.mkdir()
    fix(data_yaml, empty)
    assert (empty / "data.yaml").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left


def test_invalid_names_are_refused(make_dataset, tmp_path):
    data_yaml = make_dataset(base_splits(), names=NAMES, extra_yaml={"nc": 3})
    with pytest.raises(DoctorError, match="nc is 3"):
        fix(data_yaml, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_fix_command(make_dataset, tmp_path):
    splits = base_splits()
    splits["train"]["t000.jpg"] = grid_label() + "0 0.5 0.5\n"
    data_yaml = make_dataset(splits, names=NAMES)
    result = runner.invoke(app, ["fix", str(data_yaml), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "drop-line" in result.output and "fix_log.csv" in result.output
    assert runner.invoke(app, ["audit", str(tmp_path / "out/data.yaml")]).exit_code == 0
    again = runner.invoke(app, ["fix", str(data_yaml), "--out", str(tmp_path / "out")])
    assert again.exit_code == 2 and "not empty" in again.output


def test_cli_defaults_follow_the_library():
    from dataset_doctor.cli import fix as fix_command

    assert FixOptions().clip_max == fix_command._CLIP_MAX
    assert FixOptions().out_of_bounds_tolerance == fix_command._BOUNDS_TOLERANCE


def test_an_image_whose_label_file_cannot_be_read_is_left_out(make_dataset, tmp_path):
    data_yaml = make_dataset(base_splits(), names=NAMES)
    label = data_yaml.parent / "labels/train/t004.txt"
    label.unlink()
    label.mkdir()  # a directory where the label file should be
    result = fix(data_yaml, tmp_path / "out")
    rows = read_log(tmp_path / "out")
    assert [(row["file"], row["action"]) for row in rows] == [("images/train/t004.jpg", "drop-image")]
    assert "cannot read label file" in rows[0]["reason"]
    assert not (tmp_path / "out/images/train/t004.jpg").exists() and result.images == 25


def test_accepted_suggestions_meet_the_fixes_own_changes(make_dataset, tmp_path):
    """A wrong-class accepted on a line fix clips keeps the clipped box; a suggestion on a line fix drops as an
    exact repeat leaves it dropped; an added box goes on a line of its own after a last line without newline."""
    from dataset_doctor.fix_suggestions import read_suggestions

    label = "0 0.98 0.5 0.1 0.2\n0 0.3 0.3 0.1 0.1\n0 0.3 0.3 0.1 0.1"  # overhangs by 0.03; line 3 repeats 2
    data_yaml = make_dataset({"train": {"a.jpg": label}, "val": {"v.jpg": "0 0.5 0.5 0.1 0.1\n"}}, names=NAMES)
    review = tmp_path / "review.csv"
    review.write_text(
        "check,score,split,image,label,line,class,suggested_class,box,label_box,accept\n"
        "wrong-class,0.9,train,images/train/a.jpg,labels/train/a.txt,1,0,1,0.98 0.5 0.1 0.2,0.98 0.5 0.1 0.2,yes\n"
        "spurious-box,0.8,train,images/train/a.jpg,labels/train/a.txt,3,0,,0.3 0.3 0.1 0.1,0.3 0.3 0.1 0.1,yes\n"
        "missing-box,0.7,train,images/train/a.jpg,labels/train/a.txt,,,1,0.7 0.7 0.2 0.2,,yes\n")
    index = build_index(data_yaml, progress=False)
    result = fix_dataset(index, tmp_path / "out", suggestions=read_suggestions(review, index))
    assert (tmp_path / "out/labels/train/a.txt").read_text() == (
        "1 0.965000 0.500000 0.070000 0.200000\n0 0.3 0.3 0.1 0.1\n1 0.700000 0.700000 0.200000 0.200000\n")
    actions = dict(zip(result.log["line"].fillna(0).astype(int), result.log["action"]))
    assert actions == {1: "change-class", 3: "drop-duplicate-line", 0: "add-box"}
    assert "is moot" in result.log.set_index("action").at["drop-duplicate-line", "reason"]
def test_the_output_must_not_be_inside_a_folder_a_val_list_reads(tmp_path):
    """A .txt list can name images anywhere: writing the copy among them would change the source dataset."""
    world, data_yaml, elsewhere = outputs.listed_elsewhere(tmp_path)
    before = tree_digest(world)
    for out in (elsewhere / "images" / "fixed", elsewhere / "labels" / "fixed"):
        with pytest.raises(DoctorError, match="inside the source dataset"):
            fix(data_yaml, out)
    assert tree_digest(world) == before


def test_an_output_that_cannot_be_created_is_a_one_line_error(tmp_path):
    data_yaml, out = outputs.under_a_file(tmp_path)
    with pytest.raises(DoctorError, match="cannot write the output here") as refused:
        fix(data_yaml, out)
    assert str(out) in str(refused.value)
    fixed = fix(data_yaml, tmp_path / "fixed").data_yaml.parent
    assert json.loads((fixed / OUTPUT_MARKER).read_text())["command"] == "fix"
