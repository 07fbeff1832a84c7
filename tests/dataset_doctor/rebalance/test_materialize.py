"""Writing the rebalanced dataset: a clean output, an untouched source, determinism, atomicity and refusals."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from dataset_doctor.dataset.index import build_index
from dataset_doctor.errors import DoctorError
from dataset_doctor.rebalance import materialize
from dataset_doctor.rebalance.materialize import WriteResult, check_output_dir, write_rebalanced_dataset
from dataset_doctor.rebalance.plan import RebalancePlan, make_rebalance_plan
from dataset_doctor.rebalance.report import rebalance_json, rebalance_record
from dataset_doctor.rebalance.sources import TrainSources, collect_train_sources

SAMPLE_TARGET = 40


def _tree_hashes(root: Path) -> dict[str, str]:
    """Every file under root (symlinks as their target text) -> content hash, plus each file's mtime."""
    hashes = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            hashes[str(path)] = "link:" + os.readlink(path)
        elif path.is_file():
            stat = path.stat()
            hashes[str(path)] = f"{hashlib.sha256(path.read_bytes()).hexdigest()}:{stat.st_mtime_ns}"
    return hashes


@dataclass
class SampleRun:
    sources: TrainSources
    plan: RebalancePlan
    result: WriteResult
    source_hashes: dict[str, str]
    out: Path


def _write(sources: TrainSources, plan: RebalancePlan, out: Path, **options) -> WriteResult:
    seed, link = options.setdefault("seed", 0), options.setdefault("link", "symlink")
    options.setdefault("progress", False)
    return write_rebalanced_dataset(
        sources, plan.plan.copies, out,
        extra_files={"rebalance.json": lambda written: rebalance_json(
            rebalance_record(sources, plan, seed=seed, link=link, result=written))},
        **options)


@pytest.fixture(scope="module")
def sample_run(sample_yaml: Path, tmp_path_factory: pytest.TempPathFactory) -> SampleRun:
    """The sample dataset rebalanced once with two workers (the expensive part, shared by the tests here)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        hashes = _tree_hashes(sample_yaml.parent)
        sources = collect_train_sources(build_index(sample_yaml, progress=False))
        plan = make_rebalance_plan(sources.count_matrix(), SAMPLE_TARGET)
        out = tmp_path_factory.mktemp("rebalanced") / "out"
        result = _write(sources, plan, out, workers=2)
    return SampleRun(sources, plan, result, hashes, out)


def test_output_has_no_error_level_problem(sample_run: SampleRun) -> None:
    index = build_index(sample_run.out / "data.yaml", progress=False)
    train_errors = index.problems[(index.problems["severity"] == "error") & (index.problems["split"] == "train")]
    assert train_errors.empty, train_errors.to_string()
    assert index.images_in("train")["readable"].all()
    train_boxes = index.boxes["split"] == "train"
    assert (index.box_errors()[train_boxes] == "").all()
    assert not (index.problems["check"] == "orphan-label").any()


def test_counts_are_what_was_written(sample_run: SampleRun) -> None:
    run = sample_run
    index = build_index(run.out / "data.yaml", progress=False)
    np.testing.assert_array_equal(index.instances("train"), run.result.instances)
    assert len(index.images_in("train")) == len(run.sources.images) + run.plan.plan.added_images
    assert run.result.added_images == run.plan.plan.added_images
    planned_added = run.plan.plan.instances - run.plan.before
    written_added = run.result.instances - run.plan.before
    assert written_added.sum() == planned_added.sum() - run.result.lost_boxes
    assert np.all(written_added <= planned_added)
    assert run.result.lost_boxes <= 0.05 * planned_added.sum()


def test_source_dataset_is_unchanged(sample_run: SampleRun, sample_yaml: Path) -> None:
    assert _tree_hashes(sample_yaml.parent) == sample_run.source_hashes


def test_val_is_referenced_unchanged(sample_run: SampleRun, sample_yaml: Path) -> None:
    source = build_index(sample_yaml, progress=False)
    output = build_index(sample_run.out / "data.yaml", progress=False)
    assert output.images_in("val")["path"].tolist() == source.images_in("val")["path"].tolist()
    np.testing.assert_array_equal(output.instances("val"), source.instances("val"))
    document = yaml.safe_load((sample_run.out / "data.yaml").read_text())
    assert document["train"] == "images/train" and Path(document["path"]) == sample_run.out
    assert Path(document["val"]) == sample_yaml.parent / "images" / "val"
    assert document["names"] == list(source.names) and document["nc"] == len(source.names)


def _manifest_defects(sample_yaml: Path, checks: set[str]) -> list[dict]:
    defects = json.loads((sample_yaml.parent / "manifest.json").read_text())["defects"]
    return [d for d in defects if d["check"] in checks and d["split"] == "train"]


def test_originals_are_linked_and_bad_lines_are_not_copied(sample_run: SampleRun, sample_yaml: Path) -> None:
    out, sources, root = sample_run.out, sample_run.sources, sample_yaml.parent
    original = out / "images/train/train_00001.jpg"
    assert original.is_symlink() and Path(os.readlink(original)) == root / "images/train/train_00001.jpg"
    line_errors = _manifest_defects(sample_yaml, {"malformed-line", "class-out-of-range", "out-of-bounds",
                                                  "degenerate-box"})
    assert len(line_errors) >= 7
    for defect in line_errors:
        # the label is rewritten without the bad line; its other lines are kept as they were
        source_lines = (root / defect["label"]).read_text().splitlines()
        written = out / defect["label"]
        assert not written.is_symlink()
        assert written.read_text().splitlines() == [line.strip() for number, line in enumerate(source_lines, 1)
                                                     if number != defect["line"] and line.strip()]
    listed = set(zip(sources.dropped_lines["image"], sources.dropped_lines["line"]))
    assert listed == {(d["image"], d["line"]) for d in line_errors}
    # corrupt train images are left out and listed; warnings (a missing label) do not exclude anything
    corrupt = {d["image"] for d in _manifest_defects(sample_yaml, {"corrupt-image"})}
    assert set(sources.excluded_images["image"]) == corrupt
    assert not any((out / image).exists() for image in corrupt)
    for defect in _manifest_defects(sample_yaml, {"missing-label"}):
        assert (out / defect["image"]).exists()
        assert not (out / defect["image"].replace("images/", "labels/", 1)).with_suffix(".txt").exists()


def test_manifest_and_rebalance_json(sample_run: SampleRun) -> None:
    out, plan = sample_run.out, sample_run.plan
    with open(out / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["file", "source", "transform", "seed", "instances", "source_line", "line"]
    assert len(rows) == len(sample_run.result.files)
    new_rows = [row for row in rows if row["seed"]]
    assert len(new_rows) == plan.plan.added_images
    for row in new_rows[:20]:
        assert (out / row["file"]).is_file() and Path(row["source"]).is_file()
        assert row["transform"] and not row["transform"].startswith("original")
        labels = (out / row["file"].replace("images/", "labels/", 1)).with_suffix(".txt").read_text()
        assert len(labels.splitlines()) == int(row["instances"])

    record = json.loads((out / "rebalance.json").read_text())
    assert record["target"] == SAMPLE_TARGET and record["classes"][0] == "zero"
    assert record["before"] == plan.before.tolist()
    assert set(record["methods"]) == {"plan", "naive", "repeat-factor"}
    assert record["methods"]["plan"]["written"] == sample_run.result.instances.tolist()
    assert record["methods"]["plan"]["instances"] == plan.plan.instances.tolist()
    assert record["methods"]["naive"]["added_images"] == plan.naive.added_images
    assert record["methods"]["repeat-factor"]["threshold"] > 0
    assert record["methods"]["plan"]["max_min_ratio"] < record["methods"]["naive"]["max_min_ratio"]
    assert len(record["dropped_lines"]) == len(sample_run.sources.dropped_lines)
    assert {entry["check"] for entry in record["excluded_images"]} == {"corrupt-image"}


def test_same_seed_same_bytes_whatever_the_workers(sample_run: SampleRun, tmp_path: Path) -> None:
    again = _write(sample_run.sources, sample_run.plan, tmp_path / "again", workers=1)
    first_manifest = (sample_run.out / "manifest.csv").read_bytes()
    assert (again.out_dir / "manifest.csv").read_bytes() == first_manifest
    new_files = [f.file for f in sample_run.result.files if f.seed is not None]
    for name in new_files:
        assert (again.out_dir / name).read_bytes() == (sample_run.out / name).read_bytes()
        label = Path(name.replace("images/", "labels/", 1)).with_suffix(".txt")
        assert (again.out_dir / label).read_bytes() == (sample_run.out / label).read_bytes()
    np.testing.assert_array_equal(again.instances, sample_run.result.instances)


def test_another_seed_makes_other_pictures(sample_run: SampleRun, tmp_path: Path) -> None:
    sources, plan = sample_run.sources, sample_run.plan
    few = np.minimum(plan.plan.copies, 1) * (np.arange(len(plan.plan.copies)) < 40)
    other = write_rebalanced_dataset(sources, few, tmp_path / "other", seed=1, progress=False, workers=1)
    name = next(f.file for f in other.files if f.seed is not None)
    assert (tmp_path / "other" / name).read_bytes() != (sample_run.out / name).read_bytes()


# -- refusals and atomicity, on tiny datasets -------------------------------------------------------------------

def _tiny(make_dataset) -> tuple[Path, TrainSources, np.ndarray]:
    data_yaml = make_dataset({
        "train": {"a.jpg": "0 0.5 0.5 0.4 0.4\n", "b.jpg": "1 0.5 0.5 0.3 0.3\n0 0.2 0.2 0.1 0.1\n",
                  "c.png": "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 -0.1\n", "d.jpg": None},
        "val": {"v.jpg": "1 0.5 0.5 0.2 0.2\n"},
    }, size=(64, 48))
    sources = collect_train_sources(build_index(data_yaml, progress=False))
    copies = np.array([0, 2, 0, 0])
    return data_yaml, sources, copies


def test_refuses_non_empty_output_and_forces_only_over_an_earlier_output(make_dataset, tmp_path: Path) -> None:
    data_yaml, sources, copies = _tiny(make_dataset)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DoctorError, match="not empty"):
        write_rebalanced_dataset(sources, copies, out, progress=False)
    with pytest.raises(DoctorError, match="only a folder dataset-doctor wrote"):  # not ours: --force refused
        write_rebalanced_dataset(sources, copies, out, force=True, progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    earlier = tmp_path / "earlier"
    write_rebalanced_dataset(sources, copies, earlier, progress=False)
    (earlier / "stale.txt").write_text("from the earlier run")
    write_rebalanced_dataset(sources, copies, earlier, force=True, progress=False)
    assert not (earlier / "stale.txt").exists() and (earlier / "data.yaml").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".earlier.")]  # no staging or old dir left


def test_empty_existing_output_is_fine(make_dataset, tmp_path: Path) -> None:
    data_yaml, sources, copies = _tiny(make_dataset)
    (tmp_path / "empty").mkdir()
    result = write_rebalanced_dataset(sources, copies, tmp_path / "empty", progress=False)
    assert result.added_images == 2


@pytest.mark.parametrize("where", ["root", "inside", "labels", "parent"])
def test_refuses_output_inside_or_around_the_source(make_dataset, where: str) -> None:
    data_yaml, sources, copies = _tiny(make_dataset)
    root = data_yaml.parent
    out = {"root": root, "inside": root / "rebalanced", "labels": root / "labels" / "train" / "x",
           "parent": root.parent}[where]
    before = _tree_hashes(root)
    with pytest.raises(DoctorError, match="source dataset"):
        write_rebalanced_dataset(sources, copies, out, force=True, progress=False)
    assert _tree_hashes(root) == before


def test_refuses_a_file_as_output(make_dataset, tmp_path: Path) -> None:
    data_yaml, sources, copies = _tiny(make_dataset)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DoctorError, match="not a directory"):
        check_output_dir(tmp_path / "file", sources.config, force=True)


def test_interrupted_run_leaves_nothing(make_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_yaml, sources, copies = _tiny(make_dataset)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(materialize, "_write_copies", crash)
    with pytest.raises(KeyboardInterrupt):
        write_rebalanced_dataset(sources, copies, tmp_path / "out", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [data_yaml.parent.name]  # no out, no staging left behind


@pytest.mark.parametrize("link", ["symlink", "hardlink", "copy"])
def test_link_modes(make_dataset, tmp_path: Path, link: str) -> None:
    data_yaml, sources, copies = _tiny(make_dataset)
    out = tmp_path / f"out-{link}"
    write_rebalanced_dataset(sources, copies, out, link=link, progress=False)
    source_image = data_yaml.parent / "images/train/a.jpg"
    written = out / "images/train/a.jpg"
    assert written.read_bytes() == source_image.read_bytes()
    assert written.is_symlink() == (link == "symlink")
    assert os.path.samefile(written, source_image) == (link in ("symlink", "hardlink"))
    # c.png's label has a degenerate line: always rewritten, never linked
    label = out / "labels/train/c.txt"
    assert not label.is_symlink() and label.read_text() == "0 0.5 0.5 0.2 0.2\n"
    # d.jpg has no label file: it stays a background image without one
    assert (out / "images/train/d.jpg").exists() and not (out / "labels/train/d.txt").exists()
    assert {p.name for p in (out / "images/train").iterdir()} == {"a.jpg", "b.jpg", "c.png", "d.jpg", "b_rb1.jpg",
                                                                  "b_rb2.jpg"}


def test_copy_names_never_collide_with_originals(make_dataset, tmp_path: Path) -> None:
    data_yaml = make_dataset({"train": {"x.jpg": "0 0.5 0.5 0.2 0.2\n", "x_rb1.jpg": "1 0.5 0.5 0.2 0.2\n"},
                              "val": {"v.jpg": ""}}, size=(48, 48))
    sources = collect_train_sources(build_index(data_yaml, progress=False))
    result = write_rebalanced_dataset(sources, np.array([1, 0]), tmp_path / "out", progress=False)
    assert sorted(f.file for f in result.files) == ["images/train/x.jpg", "images/train/x_rb1.jpg",
                                                    "images/train/x_rb1_1.jpg"]


def test_images_sharing_a_label_file(make_dataset, tmp_path: Path) -> None:
    data_yaml = make_dataset({"train": {"x.jpg": "0 0.5 0.5 0.2 0.2\n", "x.png": "0 0.5 0.5 0.2 0.2\n"},
                              "val": {"v.jpg": ""}}, size=(48, 48))
    sources = collect_train_sources(build_index(data_yaml, progress=False))
    result = write_rebalanced_dataset(sources, np.array([1, 1]), tmp_path / "out", progress=False)
    assert sorted(f.file for f in result.files) == ["images/train/x.jpg", "images/train/x.png",
                                                    "images/train/x_rb1.jpg", "images/train/x_rb1_1.jpg"]
    assert (tmp_path / "out/labels/train/x.txt").read_text() == "0 0.5 0.5 0.2 0.2\n"


def test_val_image_list_is_rewritten_with_absolute_paths(make_dataset, tmp_path: Path) -> None:
    data_yaml = make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n"},
                              "val": {"v1.jpg": "1 0.5 0.5 0.2 0.2\n", "v2.jpg": "0 0.5 0.5 0.2 0.2\n"}})
    root = data_yaml.parent
    (root / "val.txt").write_text("images/val/v1.jpg\n./images/val/v2.jpg\n")
    document = yaml.safe_load(data_yaml.read_text())
    document["val"] = "val.txt"
    data_yaml.write_text(yaml.safe_dump(document))
    sources = collect_train_sources(build_index(data_yaml, progress=False))
    write_rebalanced_dataset(sources, np.array([1]), tmp_path / "out", progress=False)
    output = build_index(tmp_path / "out" / "data.yaml", progress=False)
    source = build_index(data_yaml, progress=False)
    assert output.images_in("val")["path"].tolist() == source.images_in("val")["path"].tolist()


def test_nothing_usable_is_a_user_error(make_dataset) -> None:
    data_yaml = make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": {"v.jpg": ""}})
    (data_yaml.parent / "images/train/a.jpg").write_bytes(b"not an image")
    with pytest.raises(DoctorError, match="no usable train image"):
        collect_train_sources(build_index(data_yaml, progress=False))
