"""`doctor rebalance` from the command line: the printed comparison, dry runs, refusals and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataset_doctor.atomic import OUTPUT_MARKER
from dataset_doctor.audit import AuditOptions, run_audit
from dataset_doctor.cli import app
from dataset_doctor.dataset.index import build_index
from dataset_doctor.rebalance.plan import make_rebalance_plan
from dataset_doctor.rebalance.sources import collect_train_sources
from tests import hostile_outputs as outputs
from tests.hostile import tree_digest


def _invoke(*arguments: str):
    return CliRunner().invoke(app, ["rebalance", *arguments])


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*"))


def test_dry_run_prints_the_comparison_and_writes_nothing(sample_yaml: Path, tmp_path: Path) -> None:
    before = _files_under(sample_yaml.parent)
    out = tmp_path / "never"
    result = _invoke(str(sample_yaml), "--target", "40", "--out", str(out), "--dry-run")
    assert result.exit_code == 0, result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert _files_under(sample_yaml.parent) == before
    sources = collect_train_sources(build_index(sample_yaml, progress=False))
    plan = make_rebalance_plan(sources.count_matrix(), 40)
    ratios = [plan.ratio(outcome.instances) for outcome in plan.outcomes]
    assert ratios[0] < min(ratios[1:])
    ratio_line = next(line for line in result.output.splitlines() if "max/min ratio" in line)
    assert [f"{r:.2f}" for r in ratios] == [cell for cell in ratio_line.replace("│", " ").split()
                                            if cell.replace(".", "").isdigit()][1:]
    added_line = next(line for line in result.output.splitlines() if "added images" in line)
    assert str(int(plan.plan.added_images)) in added_line and str(int(plan.naive.added_images)) in added_line
    assert "dry run" in result.output and "not copied" in result.output and "left out" in result.output


def test_writes_the_dataset_and_reports_what_was_written(make_dataset, tmp_path: Path) -> None:
    data_yaml = make_dataset({
        "train": {"a.jpg": "0 0.5 0.5 0.4 0.4\n0 0.3 0.3 0.2 0.2\n", "b.jpg": "0 0.5 0.5 0.4 0.4\n",
                  "c.jpg": "1 0.5 0.5 0.4 0.4\n"},
        "val": {"v.jpg": "1 0.5 0.5 0.2 0.2\n"},
    })
    out = tmp_path / "out"
    result = _invoke(str(data_yaml), "--target", "3", "--out", str(out), "--link", "copy", "--seed", "5",
                     "--workers", "1", "--no-flip")
    assert result.exit_code == 0, result.output
    assert "written" in result.output and "wrote" in result.output
    record = json.loads((out / "rebalance.json").read_text())
    assert record["seed"] == 5 and record["link"] == "copy" and record["flip"] is False
    with open(out / "manifest.csv") as handle:
        assert "HorizontalFlip" not in handle.read()
    assert record["methods"]["plan"]["instances"] == [3, 3]
    assert (out / "images/train/c_rb1.jpg").is_file() and (out / "images/train/c_rb2.jpg").is_file()


def test_out_is_required_without_dry_run(sample_yaml: Path) -> None:
    result = _invoke(str(sample_yaml), "--target", "40")
    assert result.exit_code == 2
    assert "--out" in result.output and "Traceback" not in result.output


def test_refusals_are_one_line_errors(sample_yaml: Path, tmp_path: Path) -> None:
    inside = _invoke(str(sample_yaml), "--target", "40", "--out", str(sample_yaml.parent / "balanced"))
    assert inside.exit_code == 2 and "inside the source dataset" in inside.output
    assert not (sample_yaml.parent / "balanced").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    refused = _invoke(str(sample_yaml), "--target", "40", "--out", str(busy))
    assert refused.exit_code == 2 and "not empty" in refused.output and "--force" in refused.output
    assert "Traceback" not in inside.output + refused.output


@pytest.mark.parametrize("arguments", [["--target", "0"], ["--target", "10", "--max-copies", "-1"],
                                       ["--target", "10", "--link", "junction"]])
def test_bad_options_exit_2(sample_yaml: Path, tmp_path: Path, arguments: list[str]) -> None:
    result = _invoke(str(sample_yaml), *arguments, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_a_train_split_without_boxes_is_a_user_error(make_dataset, tmp_path: Path) -> None:
    data_yaml = make_dataset({"train": {"a.jpg": "", "b.jpg": None}, "val": {"v.jpg": "0 0.5 0.5 0.2 0.2\n"}})
    result = _invoke(str(data_yaml), "--target", "10", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "no usable train box" in result.output
    assert not (tmp_path / "out").exists()


# --- names, links and huge images (issue 16 items 3, 5, 9) ---------------------------------------------------------

def test_a_name_that_is_not_utf8_is_copied_under_its_own_bytes(tmp_path):
    import os

    from tests.odd_files import BAD_NAME, BAD_SHOWN, dataset_with_bad_name

    data_yaml = dataset_with_bad_name(tmp_path / "data", b"1 0.5 0.5 0.2 0.2\n")  # the only train box of class 1
    for number in range(3):
        (data_yaml.parent / "labels" / "train" / f"im{number}.txt").write_text("0 0.5 0.5 0.3 0.3\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["rebalance", str(data_yaml), "--target", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = set(os.listdir(os.fsencode(out / "images" / "train")))
    assert BAD_NAME + b".jpg" in names and BAD_NAME + b"_rb1.jpg" in names
    assert BAD_NAME + b"_rb1.txt" in set(os.listdir(os.fsencode(out / "labels" / "train")))
    manifest = (out / "manifest.csv").read_bytes().decode("utf-8")
    assert f"images/train/{BAD_SHOWN}_rb1.jpg," in manifest
def test_force_never_deletes_images_a_val_list_reads(tmp_path: Path) -> None:
    """Issue 16 item 1's repro: val.txt lists absolute paths of images in folder E; `--out E --force` used to
    exit 0 with E's images gone."""
    world, data_yaml, elsewhere = outputs.listed_elsewhere(tmp_path)
    before = tree_digest(elsewhere)
    result = _invoke(str(data_yaml), "--out", str(elsewhere), "--force", "--target", "12")
    assert result.exit_code == 2 and "contains the source dataset" in result.output, result.output
    assert tree_digest(elsewhere) == before
    # Marked as ours (say, the user rebalanced into it before): still refused, since the source reads it.
    (elsewhere / OUTPUT_MARKER).write_text(json.dumps({"tool": "dataset-doctor"}))
    before = tree_digest(elsewhere)
    result = _invoke(str(data_yaml), "--out", str(elsewhere), "--force", "--target", "12")
    assert result.exit_code == 2 and tree_digest(elsewhere) == before


def test_force_replaces_an_earlier_rebalance_output(tmp_path: Path) -> None:
    data_yaml = outputs.tiny_dataset(tmp_path / "data")
    source = tree_digest(data_yaml.parent)
    out = tmp_path / "balanced"
    first = _invoke(str(data_yaml), "--out", str(out), "--target", "4", "--workers", "1")
    assert first.exit_code == 0, first.output
    assert json.loads((out / OUTPUT_MARKER).read_text())["command"] == "rebalance"
    added = sorted(p.name for p in (out / "images/train").iterdir())
    again = _invoke(str(data_yaml), "--out", str(out), "--target", "6", "--workers", "1", "--force")
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in (out / "images/train").iterdir()) != added and (out / OUTPUT_MARKER).is_file()
    assert tree_digest(data_yaml.parent) == source


def test_never_drops_background_images(make_dataset, tmp_path: Path) -> None:
    """Backgrounds (empty label file, or none) all reach the output, still backgrounds; none is ever copied."""
    data_yaml = make_dataset({
        "train": {"a.jpg": "0 0.5 0.5 0.4 0.4\n0 0.3 0.3 0.2 0.2\n", "b.jpg": "0 0.5 0.5 0.4 0.4\n",
                  "c.jpg": "1 0.5 0.5 0.4 0.4\n", "empty1.jpg": "", "empty2.jpg": "", "nolabel.jpg": None},
        "val": {"v.jpg": "1 0.5 0.5 0.2 0.2\n"},
    })
    out = tmp_path / "out"
    result = _invoke(str(data_yaml), "--target", "3", "--out", str(out), "--workers", "1")
    assert result.exit_code == 0, result.output
    written = build_index(out / "data.yaml", progress=False)
    source = build_index(data_yaml, progress=False)
    names = {Path(p).name for p in written.images_in("train")["path"]}
    assert {"empty1.jpg", "empty2.jpg", "nolabel.jpg"} <= names
    assert not any(name.startswith(("empty", "nolabel")) and "_rb" in name for name in names)
    assert (out / "labels/train/empty1.txt").read_text() == ""
    before = run_audit(source, AuditOptions()).split_summary.set_index("split").at["train", "backgrounds"]
    after = run_audit(written, AuditOptions()).split_summary.set_index("split").at["train", "backgrounds"]
    assert before == after == 3
