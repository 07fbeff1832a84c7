"""`doctor audit --predictions` and `doctor fix --apply-suggestions`: planted label errors found with file and
line, their JSON and review CSV, one-line errors for bad input, and the review CSV applied to a copy only."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataset_doctor.cli import app
from tests.hostile import HostileCase, run_case

runner = CliRunner()
LABEL_ERRORS = ("missing-box", "wrong-class", "mislocated-box", "spurious-box")

VAL = {
    # line 1 right, 2 of the wrong class, 3 misplaced, 4 around nothing; plus an object nobody boxed
    "v0.jpg": "0 0.2 0.2 0.1 0.1\n0 0.6 0.6 0.1 0.1\n1 0.3 0.7 0.1 0.1\n0 0.8 0.2 0.1 0.1\n",
    "v1.jpg": "0 0.5 0.5 0.2 0.2\n",  # right
    "v2.jpg": None,  # no label file, but a dog in it
}
PREDICTIONS = {
    "v0.txt": ("0 0.2 0.2 0.1 0.1 0.9\n1 0.6 0.6 0.1 0.1 0.8\n0 0.6 0.6 0.1 0.1 0.02\n1 0.36 0.7 0.1 0.1 0.85\n"
               "1 0.5 0.4 0.1 0.1 0.7\n0 0.505 0.4 0.1 0.1 0.5\n1 0.9 0.9 0.05 0.05 0.01\n"),
    "v1.txt": "0 0.5 0.5 0.2 0.2 0.9\n",
    "v2.txt": "1 0.5 0.5 0.2 0.2 0.9\n",
}
EXPECTED = [  # (check, label, line, suggested_class, box)
    ("missing-box", "labels/val/v0.txt", None, 1, [0.5, 0.4, 0.1, 0.1]),
    ("missing-box", "labels/val/v2.txt", None, 1, [0.5, 0.5, 0.2, 0.2]),
    ("wrong-class", "labels/val/v0.txt", 2, 1, [0.6, 0.6, 0.1, 0.1]),
    ("mislocated-box", "labels/val/v0.txt", 3, 1, [0.36, 0.7, 0.1, 0.1]),
    ("spurious-box", "labels/val/v0.txt", 4, None, [0.8, 0.2, 0.1, 0.1]),
]


def doctor(*args: object):
    return runner.invoke(app, [str(arg) for arg in args])


def write_files(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return directory


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and all(fragment in lines[0] for fragment in fragments), result.output
    assert "Traceback" not in result.output


@pytest.fixture
def planted(make_dataset, tmp_path: Path) -> tuple[Path, Path]:
    data_yaml = make_dataset({"train": {"t0.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": VAL}, names=["cat", "dog"])
    return data_yaml, write_files(tmp_path / "predictions", PREDICTIONS)


def audit_json(data_yaml: Path, predictions: Path, tmp_path: Path, *options: object) -> tuple[object, dict]:
    result = doctor("audit", data_yaml, "--predictions", predictions, "--confidence", 0.3, "--no-html",
                    "--json", tmp_path / "audit.json", *options)
    return result, json.loads((tmp_path / "audit.json").read_text())


def test_planted_errors_are_found_with_file_line_and_fix(planted, tmp_path: Path) -> None:
    data_yaml, predictions = planted
    result, data = audit_json(data_yaml, predictions, tmp_path)
    assert result.exit_code == 0, result.output
    found = [(f["check"], f["label"], f["line"], f["suggested_class"], f["box"]) for f in data["findings"]
             if f["check"] in LABEL_ERRORS]
    assert sorted(found, key=str) == sorted(EXPECTED, key=str)
    for finding in data["findings"]:
        extra = {"score", "box", "suggested_class"} & set(finding)
        if finding["check"] in LABEL_ERRORS:  # only the label-error findings carry the three fields
            assert extra == {"score", "box", "suggested_class"}
            assert finding["severity"] == "warning" and 0 < finding["score"] <= 1 and finding["image"]
        else:
            assert not extra
    warnings = sum(f["severity"] == "warning" for f in data["findings"])
    assert data["summary"]["warning"] == warnings
    # the terminal shows the best suspects per type with file:line and the fix
    assert "labels/val/v0.txt:2" in result.output and "change the class to 1" in result.output
    assert "splits audited: val" in result.output  # train has no predictions: not audited
    with open(tmp_path / "label_review.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["check"] for row in rows) == sorted(check for check, *_ in EXPECTED)
    assert [float(row["score"]) for row in rows] == sorted((float(row["score"]) for row in rows), reverse=True)
    wrong = next(row for row in rows if row["check"] == "wrong-class")
    assert (wrong["split"], wrong["image"], wrong["line"], wrong["class"], wrong["suggested_class"],
            wrong["label_box"], wrong["accept"]) == ("val", "images/val/v0.jpg", "2", "0", "1",
                                                     "0.600000 0.600000 0.100000 0.100000", "")


def test_ignore_and_fail_on_work_for_the_new_checks(planted, tmp_path: Path) -> None:
    data_yaml, predictions = planted
    result, data = audit_json(data_yaml, predictions, tmp_path, "--ignore", "wrong-class,spurious-box",
                              "--review-csv", tmp_path / "review.csv", "--fail-on", "warning")
    assert result.exit_code == 1
    assert {f["check"] for f in data["findings"]} & set(LABEL_ERRORS) == {"missing-box", "mislocated-box"}
    with open(tmp_path / "review.csv", newline="") as handle:
        assert sorted(row["check"] for row in csv.DictReader(handle)) == ["mislocated-box", "missing-box",
                                                                           "missing-box"]


def test_split_folders_and_a_stem_in_two_splits(make_dataset, tmp_path: Path) -> None:
    data_yaml = make_dataset({"train": {"x.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": {"x.jpg": "0 0.5 0.5 0.2 0.2\n"}},
                             names=["cat"])
    flat = write_files(tmp_path / "flat", {"x.txt": "0 0.5 0.5 0.2 0.2 0.01\n"})
    result = doctor("audit", data_yaml, "--predictions", flat, "--no-html")
    assert_one_line_error(result, "x.txt", "images/train/x.jpg", "images/val/x.jpg", "DIR/<split>/")
    nested = write_files(tmp_path / "nested", {"val/x.txt": "0 0.5 0.5 0.2 0.2 0.01\n0 0.9 0.9 0.1 0.1 0.95\n"})
    result = doctor("audit", data_yaml, "--predictions", nested, "--no-html", "--json", tmp_path / "a.json",
                    "--confidence", 0.3)
    assert result.exit_code == 0, result.output
    findings = json.loads((tmp_path / "a.json").read_text())["findings"]
    assert [(f["check"], f["split"]) for f in findings if f["check"] in LABEL_ERRORS] == [
        ("missing-box", "val"), ("spurious-box", "val")]


def test_bad_prediction_line_is_one_line_naming_file_and_line(planted) -> None:
    data_yaml, predictions = planted
    (predictions / "v1.txt").write_text("0 0.5 0.5 0.2 0.2 0.9\n0 0.5 0.5 0.2\n")
    assert_one_line_error(doctor("audit", data_yaml, "--predictions", predictions, "--no-html"), "v1.txt:2:",
                          "expected 6")
    assert_one_line_error(doctor("audit", data_yaml, "--predictions", predictions.parent / "nowhere", "--no-html"),
                          "predictions directory not found")
    assert_one_line_error(doctor("audit", data_yaml, "--review-csv", "r.csv", "--no-html"), "--predictions")
    empty = predictions.parent / "empty"
    empty.mkdir()
    assert_one_line_error(doctor("audit", data_yaml, "--predictions", empty, "--no-html"),
                          "no prediction file is named after an image")
    assert_one_line_error(doctor("audit", data_yaml, "--predictions", predictions, "--confidence", 2, "--no-html"),
                          "--confidence must be in (0, 1)")
    assert_one_line_error(doctor("audit", data_yaml, "--predictions", predictions, "--class-confidence", "cow=0.2",
                                 "--no-html"), "cow=0.2")


def test_high_lowest_confidence_is_warned_about(planted, tmp_path: Path) -> None:
    data_yaml, predictions = planted
    write_files(predictions, {"v0.txt": "0 0.2 0.2 0.1 0.1 0.9\n"})
    (predictions / "v2.txt").unlink()
    result, _ = audit_json(data_yaml, predictions, tmp_path)
    assert "predictions should be made at a low confidence (0.001-0.05)" in " ".join(result.output.split())
    assert "0.001-0.05" in " ".join(doctor("audit", "--help").output.split())


def reviewed(path: Path, accept: dict[tuple[str, str], str]) -> Path:
    """The review CSV with accept filled for (check, label line) keys."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["accept"] = accept.get((row["check"], row["image"] + ":" + row["line"]), "")
    target = path.with_name("reviewed.csv")
    with open(target, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


ACCEPTED = {("wrong-class", "images/val/v0.jpg:2"): "yes", ("mislocated-box", "images/val/v0.jpg:3"): "X",
            ("spurious-box", "images/val/v0.jpg:4"): "1", ("missing-box", "images/val/v2.jpg:"): "y",
            ("missing-box", "images/val/v0.jpg:"): "no"}


def test_review_csv_round_trip_through_fix(planted, tmp_path: Path) -> None:
    data_yaml, predictions = planted
    audit_json(data_yaml, predictions, tmp_path)
    csv_file = reviewed(tmp_path / "label_review.csv", ACCEPTED)
    before = tree_hashes(data_yaml.parent)
    out = tmp_path / "fixed"
    result = doctor("fix", data_yaml, "--out", out, "--apply-suggestions", csv_file)
    assert result.exit_code == 0, result.output
    assert tree_hashes(data_yaml.parent) == before  # the source is untouched
    assert (out / "labels/val/v0.txt").read_text() == ("0 0.2 0.2 0.1 0.1\n1 0.6 0.6 0.1 0.1\n"
                                                       "1 0.360000 0.700000 0.100000 0.100000\n")
    assert (out / "labels/val/v2.txt").read_text() == "1 0.500000 0.500000 0.200000 0.200000\n"
    assert (out / "labels/val/v1.txt").read_text() == VAL["v1.jpg"]
    with open(out / "fix_log.csv", newline="") as handle:
        log = [(row["file"], row["line"], row["action"], row["before"], row["after"]) for row in csv.DictReader(handle)]
    assert sorted(log) == sorted([
        ("labels/val/v0.txt", "2", "change-class", "0 0.6 0.6 0.1 0.1", "1 0.6 0.6 0.1 0.1"),
        ("labels/val/v0.txt", "3", "move-box", "1 0.3 0.7 0.1 0.1", "1 0.360000 0.700000 0.100000 0.100000"),
        ("labels/val/v0.txt", "4", "drop-spurious-box", "0 0.8 0.2 0.1 0.1", ""),
        ("labels/val/v2.txt", "", "add-box", "", "1 0.500000 0.500000 0.200000 0.200000"),
    ])
    # the repaired copy, audited with the same predictions, no longer shows the accepted suspects
    again = doctor("audit", out / "data.yaml", "--predictions", predictions, "--confidence", 0.3, "--no-html",
                   "--json", tmp_path / "again.json")
    left = [(f["check"], f["label"]) for f in json.loads((tmp_path / "again.json").read_text())["findings"]
            if f["check"] in LABEL_ERRORS]
    assert left == [("missing-box", "labels/val/v0.txt")], again.output  # the one not accepted


def test_a_row_whose_line_changed_since_the_audit_is_refused(planted, tmp_path: Path) -> None:
    data_yaml, predictions = planted
    audit_json(data_yaml, predictions, tmp_path)
    csv_file = reviewed(tmp_path / "label_review.csv", ACCEPTED)
    label = data_yaml.parent / "labels/val/v0.txt"
    label.write_text(label.read_text().replace("0 0.6 0.6", "0 0.65 0.6"))  # someone edited line 2 meanwhile
    result = doctor("fix", data_yaml, "--out", tmp_path / "fixed", "--apply-suggestions", csv_file)
    checks = [row["check"] for row in csv.DictReader(csv_file.read_text().splitlines())]
    row = 2 + checks.index("wrong-class")  # the header is line 1
    assert_one_line_error(result, f"reviewed.csv:{row}:", "labels/val/v0.txt:2", "no longer matches")
    assert not (tmp_path / "fixed").exists()


def test_a_bad_accept_value_is_refused(planted, tmp_path: Path) -> None:
    data_yaml, predictions = planted
    audit_json(data_yaml, predictions, tmp_path)
    csv_file = reviewed(tmp_path / "label_review.csv", {("spurious-box", "images/val/v0.jpg:4"): "maybe"})
    assert_one_line_error(doctor("fix", data_yaml, "--out", tmp_path / "fixed", "--apply-suggestions", csv_file),
                          "reviewed.csv:", "accept is 'maybe'")


def _planted_case(tmp_path: Path, predictions: dict[str, bytes | str]) -> tuple[Path, list[str]]:
    """The planted dataset with some prediction files replaced; the source is the dataset and the predictions."""
    from tests.tiny_dataset import write_dataset

    root = tmp_path / "case"
    write_dataset(root / "data", {"train": {"t0.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": VAL}, names=["cat", "dog"])
    folder = write_files(root / "predictions", PREDICTIONS)
    for name, content in predictions.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return root, ["audit", root / "data/data.yaml", "--predictions", folder, "--no-html"]


def _review_case(tmp_path: Path, row: str) -> tuple[Path, list[str]]:
    """A review CSV with one accepted row, applied to the planted dataset."""
    root, _ = _planted_case(tmp_path, {})
    review = root / "review.csv"
    review.write_text("check,score,split,image,label,line,class,suggested_class,box,label_box,accept\n" + row)
    return root, ["fix", root / "data/data.yaml", "--out", tmp_path / "fixed", "--apply-suggestions", review]


HOSTILE = [
    HostileCase("prediction-not-utf8", lambda tmp: _planted_case(tmp, {"v1.txt": b"0 0.5 0.5 0.2 0.2 0.9\n\xff\xfe\n"}),
                2, ("v1.txt:2:", "not UTF-8")),
    HostileCase("prediction-nan-confidence", lambda tmp: _planted_case(tmp, {"v1.txt": "0 0.5 0.5 0.2 0.2 nan\n"}),
                2, ("v1.txt:1:", "confidence is not a finite number")),
    HostileCase("prediction-in-pixels", lambda tmp: _planted_case(tmp, {"v1.txt": "0 320 240 64 64 0.9\n"}),
                2, ("v1.txt:1:", "normalized")),
    HostileCase("prediction-class-out-of-range", lambda tmp: _planted_case(tmp, {"v1.txt": "7 0.5 0.5 0.2 0.2 0.9\n"}),
                2, ("v1.txt:1:", "class '7' is not an integer in 0..1")),
    HostileCase("review-bad-box", lambda tmp: _review_case(
        tmp, "mislocated-box,0.5,val,images/val/v0.jpg,labels/val/v0.txt,3,1,1,0.3 0.7 0.1,0.3 0.7 0.1 0.1,yes\n"),
        2, ("review.csv:2:", "box must be four numbers")),
    HostileCase("review-unknown-image", lambda tmp: _review_case(
        tmp, "spurious-box,0.5,val,images/val/zz.jpg,labels/val/zz.txt,1,0,,0.3 0.7 0.1 0.1,0.3 0.7 0.1 0.1,yes\n"),
        2, ("review.csv:2:", "'images/val/zz.jpg' is not in this dataset")),
    HostileCase("review-two-changes-on-one-line", lambda tmp: _review_case(
        tmp, "spurious-box,0.5,val,images/val/v0.jpg,labels/val/v0.txt,4,0,,0.8 0.2 0.1 0.1,0.8 0.2 0.1 0.1,yes\n"
             "wrong-class,0.5,val,images/val/v0.jpg,labels/val/v0.txt,4,0,1,0.8 0.2 0.1 0.1,0.8 0.2 0.1 0.1,yes\n"),
        2, ("review.csv:3:", "also accepted in row 2")),
    HostileCase("review-with-nothing-accepted", lambda tmp: _review_case(tmp, ""), 0, ("0 accepted suggestions",)),
]


@pytest.mark.parametrize("case", HOSTILE, ids=lambda case: case.name)
def test_hostile_predictions_and_review_csv(case: HostileCase, tmp_path: Path) -> None:
    run_case(case, tmp_path)


def test_a_csv_that_is_not_a_review_csv_is_refused(planted, tmp_path: Path) -> None:
    data_yaml, _ = planted
    (tmp_path / "log.csv").write_text("file,line,action\n")
    assert_one_line_error(doctor("fix", data_yaml, "--out", tmp_path / "fixed", "--apply-suggestions",
                                 tmp_path / "log.csv"), "log.csv:1:", "no column check")
