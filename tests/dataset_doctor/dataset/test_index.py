"""The dataset index: its tables, the scan findings, usable boxes, and a cache that is never stale."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import yaml

from dataset_doctor.dataset.index import build_index
from dataset_doctor.dataset.index_cache import cache_file_for


def checks_of(index) -> list[tuple]:
    return sorted((f.check, f.split, f.image, f.label, None if pd.isna(f.line) else int(f.line))
                  for f in index.problems.itertuples())


def test_tables_describe_every_image_and_box(make_dataset):
    data_yaml = make_dataset({
        "train": {"a.jpg": ("0 0.5 0.5 0.2 0.2\n1 0.25 0.25 0.1 0.1\n", (200, 100)), "b.png": "1 0.5 0.5 0.3 0.3\n"},
        "val": {"c.jpg": "0 0.4 0.4 0.2 0.2\n"},
    })
    index = build_index(data_yaml, progress=False)
    images = index.images.set_index("image")
    assert list(images.index) == ["images/train/a.jpg", "images/train/b.png", "images/val/c.jpg"]
    assert images.loc["images/train/a.jpg", ["width", "height"]].tolist() == [200, 100]
    assert images.loc["images/train/b.png", ["width", "height", "format"]].tolist() == [96, 64, "png"]
    assert images["readable"].all() and images["label_exists"].all()
    assert images.loc["images/val/c.jpg", "label"] == "labels/val/c.txt"
    assert list(index.boxes["image"]) == ["images/train/a.jpg", "images/train/a.jpg", "images/train/b.png",
                                          "images/val/c.jpg"]
    assert list(index.boxes["line"]) == [1, 2, 1, 1]
    assert list(index.boxes["split"].astype(str)) == ["train", "train", "train", "val"]
    assert index.boxes.loc[1, ["cls", "cx", "cy", "w", "h"]].tolist() == [1, 0.25, 0.25, 0.1, 0.1]
    assert index.instances("train").tolist() == [1, 2] and index.instances("val").tolist() == [1, 0]
    assert index.problems.empty


def test_scan_findings_name_file_and_line(make_dataset, tmp_path):
    data_yaml = make_dataset({
        "train": {
            "bad.jpg": "0 0.5 0.5 0.2 0.2\n0 0.5 0.5\n7 0.5 0.5 0.2 0.2\n",
            "nolabel.jpg": None,
            "empty.jpg": "",
            "poly.jpg": "1 0.1 0.1 0.3 0.1 0.2 0.3\n",
            "mixed.jpg": "1 0.1 0.1 0.3 0.1 0.2 0.3\n0 0.5 0.5 0.1 0.1\n",
        },
        "val": {"v.jpg": "0 0.5 0.5 0.2 0.2\n"},
    })
    root = data_yaml.parent
    (root / "images/train/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (root / "labels/train/broken.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels/train/orphan.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    index = build_index(data_yaml, progress=False)
    assert checks_of(index) == sorted([
        ("malformed-line", "train", "images/train/bad.jpg", "labels/train/bad.txt", 2),
        ("missing-label", "train", "images/train/nolabel.jpg", None, None),
        ("empty-label", "train", "images/train/empty.jpg", "labels/train/empty.txt", None),
        ("segment-label", "train", "images/train/poly.jpg", "labels/train/poly.txt", 1),
        ("segment-label", "train", "images/train/mixed.jpg", "labels/train/mixed.txt", 1),
        ("mixed-label-types", "train", "images/train/mixed.jpg", "labels/train/mixed.txt", None),
        ("corrupt-image", "train", "images/train/broken.jpg", None, None),
        ("orphan-label", None, None, "labels/train/orphan.txt", None),
    ])
    # Class 7 is parsed (range checks need nc) and then excluded from the usable boxes.
    assert 7 in index.boxes["cls"].tolist()
    errors = index.box_errors()
    assert errors[index.boxes["cls"] == 7].tolist() == ["class-out-of-range"]
    usable = index.usable_boxes("train")
    assert 7 not in usable["cls"].tolist()
    assert "images/train/broken.jpg" not in set(usable["image"])  # boxes on a corrupt image are unusable
    assert index.instances("train").tolist() == [2, 2]  # bad.jpg line 1, mixed.jpg line 2; two polygons


def test_usable_boxes_follow_the_error_rules(make_dataset):
    data_yaml = make_dataset({"train": {"a.jpg": (
        "0 0.5 0.5 0.2 0.2\n"       # fine
        "0 0.995 0.5 0.02 0.2\n"    # overhangs by 0.005 < tolerance 0.01: fine
        "0 1.05 0.5 0.2 0.2\n"      # out-of-bounds
        "1 0.5 0.5 0 0.2\n"         # degenerate
        "-1 0.5 0.5 0.2 0.2\n"      # class-out-of-range
        "2 0.5 0.5 0.2 0.2\n"       # class-out-of-range (nc = 2)
    )}, "val": {"b.jpg": "0 0.5 0.5 0.1 0.1\n"}})
    index = build_index(data_yaml, progress=False)
    train = index.boxes["split"] == "train"
    assert index.box_errors()[train].tolist() == ["", "", "out-of-bounds", "degenerate-box",
                                                  "class-out-of-range", "class-out-of-range"]
    assert index.usable_boxes("train")["line"].tolist() == [1, 2]
    assert index.box_errors(tolerance=0.0)[train].tolist()[1] == "out-of-bounds"


def test_same_image_in_two_splits_gets_a_row_and_boxes_in_each(make_dataset):
    data_yaml = make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": {"b.jpg": "1 0.5 0.5 0.2 0.2\n"}})
    root = data_yaml.parent
    (root / "val.txt").write_text("images/val/b.jpg\nimages/train/a.jpg\nimages/val/gone.jpg\n")
    config = yaml.safe_load(data_yaml.read_text())
    config["val"] = "val.txt"
    data_yaml.write_text(yaml.safe_dump(config))
    index = build_index(data_yaml, progress=False)
    assert index.images["image"].tolist() == ["images/train/a.jpg", "images/val/b.jpg", "images/train/a.jpg",
                                              "images/val/gone.jpg"]
    assert index.instances("val").tolist() == [1, 1]
    missing = index.problems[index.problems["check"] == "corrupt-image"]
    assert missing["image"].tolist() == ["images/val/gone.jpg"]
    assert "listed in val.txt" in missing["message"].iloc[0]


def test_warm_build_reads_nothing_and_gives_the_same_index(make_dataset):
    data_yaml = make_dataset({"train": {f"{i}.jpg": f"{i % 2} 0.5 0.5 0.2 0.2\n" for i in range(5)},
                              "val": {"v.jpg": "0 0.5 0.5 0.1 0.1\n"}})
    cold = build_index(data_yaml, progress=False)
    warm = build_index(data_yaml, progress=False)
    assert cold.files_read == 6 and warm.files_read == 0
    pd.testing.assert_frame_equal(cold.images, warm.images)
    pd.testing.assert_frame_equal(cold.boxes, warm.boxes)
    pd.testing.assert_frame_equal(cold.problems, warm.problems)
    assert not str(cache_file_for(data_yaml)).startswith(str(data_yaml.parent))  # never inside the dataset


def bump_mtime(path) -> None:
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def test_editing_a_label_invalidates_exactly_that_file(make_dataset):
    data_yaml = make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n", "b.jpg": "0 0.5 0.5 0.2 0.2\n"},
                              "val": {"v.jpg": "0 0.5 0.5 0.1 0.1\n"}})
    build_index(data_yaml, progress=False)
    label = data_yaml.parent / "labels/train/b.txt"
    label.write_text("1 0.5 0.5 0.2 0.2\n")  # same size: only the mtime tells
    bump_mtime(label)
    index = build_index(data_yaml, progress=False)
    assert index.files_read == 1
    assert index.instances("train").tolist() == [1, 1]


def test_a_label_edit_under_a_restored_mtime_is_seen(make_dataset):
    """cp -p, tar and rsync -t restore mtimes: same size, same mtime, other bytes must still be re-read."""
    data_yaml = make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n", "b.jpg": "0 0.5 0.5 0.2 0.2\n"},
                              "val": {"v.jpg": "0 0.5 0.5 0.1 0.1\n"}})
    assert build_index(data_yaml, progress=False).box_errors().tolist() == ["", "", ""]
    label = data_yaml.parent / "labels/train/b.txt"
    before = os.stat(label)
    label.write_text("7 0.5 0.5 0.2 0.2\n")  # class 7 of a 2-class dataset, same size
    os.utime(label, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(label)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    index = build_index(data_yaml, progress=False)
    assert index.files_read == 1
    assert index.box_errors().tolist() == ["", "class-out-of-range", ""]
    assert build_index(data_yaml, progress=False).files_read == 0  # and then cached again


def test_an_image_replaced_under_a_restored_mtime_is_seen(make_dataset):
    data_yaml = make_dataset({"train": {"a.bmp": ("0 0.5 0.5 0.2 0.2\n", (96, 64))},
                              "val": {"v.jpg": "0 0.5 0.5 0.1 0.1\n"}})
    image = data_yaml.parent / "images/train/a.bmp"
    assert build_index(data_yaml, progress=False).images.loc[0, "width"] == 96
    other = make_dataset({"train": {"z.bmp": ("", (64, 96))}, "val": {"y.jpg": ""}}, root_name="other")
    replacement = other.parent / "images/train/z.bmp"
    before = os.stat(image)
    data = replacement.read_bytes()
    assert len(data) == before.st_size  # an uncompressed BMP turned: same size, so only inode or ctime can tell
    staged = image.with_name("staged.tmp")
    staged.write_bytes(data)
    os.utime(staged, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(staged, image)  # what cp -p and tar do: a new file, the old mtime
    index = build_index(data_yaml, progress=False)
    assert index.files_read == 1 and index.images.loc[0, "width"] == 64


def test_deleting_or_adding_a_label_or_image_is_seen(make_dataset):
    data_yaml = make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n", "b.jpg": "0 0.5 0.5 0.2 0.2\n"},
                              "val": {"v.jpg": "0 0.5 0.5 0.1 0.1\n"}})
    root = data_yaml.parent
    build_index(data_yaml, progress=False)
    (root / "labels/train/a.txt").unlink()
    index = build_index(data_yaml, progress=False)
    assert index.files_read == 1 and index.instances("train").tolist() == [1, 0]
    assert "missing-label" in index.problems["check"].tolist()
    (root / "images/train/c.png").write_bytes((root / "images/train/b.jpg").read_bytes())
    index = build_index(data_yaml, progress=False)
    assert index.files_read == 1 and len(index.images_in("train")) == 3


def test_replacing_an_image_is_seen(make_dataset, tmp_path):
    data_yaml = make_dataset({"train": {"a.jpg": ("0 0.5 0.5 0.2 0.2\n", (96, 64))},
                              "val": {"v.jpg": "0 0.5 0.5 0.1 0.1\n"}})
    image = data_yaml.parent / "images/train/a.jpg"
    assert build_index(data_yaml, progress=False).images.loc[0, "width"] == 96
    other = make_dataset({"train": {"z.jpg": ("", (120, 64))}, "val": {"y.jpg": ""}}, root_name="other")
    image.write_bytes((other.parent / "images/train/z.jpg").read_bytes())
    index = build_index(data_yaml, progress=False)
    assert index.files_read == 1 and index.images.loc[0, "width"] == 120


def test_editing_data_yaml_is_seen_without_rereading_files(make_dataset):
    data_yaml = make_dataset({"train": {"a.jpg": "1 0.5 0.5 0.2 0.2\n"}, "val": {"v.jpg": "1 0.5 0.5 0.1 0.1\n"}},
                             names=["a", "b"])
    assert build_index(data_yaml, progress=False).instances("train").tolist() == [0, 1]
    config = yaml.safe_load(data_yaml.read_text())
    config["names"] = ["only"]
    data_yaml.write_text(yaml.safe_dump(config))
    index = build_index(data_yaml, progress=False)
    assert index.files_read == 0  # file scans do not depend on the yaml
    assert index.names == ("only",) and index.instances("train").tolist() == [0]
    assert index.box_errors().tolist() == ["class-out-of-range", "class-out-of-range"]


def test_damaged_cache_is_ignored_and_rewritten(make_dataset):
    data_yaml = make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": {"v.jpg": "0 0.5 0.5 0.1 0.1\n"}})
    build_index(data_yaml, progress=False)
    cache = cache_file_for(data_yaml)
    cache.write_bytes(b"garbage")
    index = build_index(data_yaml, progress=False)
    assert index.files_read == 2 and index.instances("train").tolist() == [1, 0]
    assert build_index(data_yaml, progress=False).files_read == 0


def test_no_cache_option_reads_everything_and_writes_nothing(make_dataset):
    data_yaml = make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": {"v.jpg": "0 0.5 0.5 0.1 0.1\n"}})
    index = build_index(data_yaml, progress=False, use_cache=False)
    assert index.files_read == 2 and not cache_file_for(data_yaml).exists()


def test_parallel_scan_equals_serial_scan(make_dataset):
    files = {f"{i:03d}.jpg": f"{i % 3} 0.5 0.5 0.{i % 9 + 1} 0.2\n" + ("x\n" if i % 17 == 0 else "")
             for i in range(140)}
    data_yaml = make_dataset({"train": files, "val": {"v.jpg": "0 0.5 0.5 0.1 0.1\n"}}, names=["a", "b", "c"],
                             size=(32, 32))
    serial = build_index(data_yaml, progress=False, use_cache=False, workers=1)
    parallel = build_index(data_yaml, progress=False, use_cache=False, workers=2)
    pd.testing.assert_frame_equal(serial.images, parallel.images)
    pd.testing.assert_frame_equal(serial.boxes, parallel.boxes)
    pd.testing.assert_frame_equal(serial.problems, parallel.problems)
    assert (serial.problems["check"] == "malformed-line").sum() == 9


@pytest.mark.parametrize("content", [np.random.default_rng(0).bytes(3000), b"\x00" * 100,
                                     b"0 0.5 0.5 0.2 0.2\n" * 5000])
def test_any_label_content_builds_an_index(make_dataset, content):
    data_yaml = make_dataset({"train": {"a.jpg": content}, "val": {"v.jpg": "0 0.5 0.5 0.1 0.1\n"}})
    index = build_index(data_yaml, progress=False)
    assert len(index.images) == 2
    assert np.isfinite(index.boxes[["cx", "cy", "w", "h"]].to_numpy()).all()


# --- names, links and huge images (issue 16 items 3, 5, 9) ---------------------------------------------------------

def test_a_name_that_is_not_utf8_is_indexed_reported_and_cached(tmp_path):
    from tests.odd_files import BAD_SHOWN, dataset_with_bad_name

    data_yaml = dataset_with_bad_name(tmp_path / "data", b"1 0.5 0.5 0.2 0.2\n")
    cold = build_index(data_yaml, progress=False)
    name = "images/train/bad\udcff\udcfe.jpg"
    row = cold.images[cold.images["image"] == name].iloc[0]
    assert row["readable"] and (row["width"], row["height"]) == (96, 64) and row["label_exists"]
    assert cold.instances("train").tolist() == [3, 4]  # its box counts
    odd = cold.problems[cold.problems["check"] == "non-utf8-name"]
    assert odd["image"].tolist() == [name] and odd["severity"].tolist() == ["warning"]
    assert f"images/train/{BAD_SHOWN}.jpg" in odd["message"].iloc[0]
    warm = build_index(data_yaml, progress=False)
    assert warm.files_read == 0
    pd.testing.assert_frame_equal(cold.images, warm.images)
    pd.testing.assert_frame_equal(cold.problems, warm.problems)


def test_link_loops_count_each_image_once_and_are_findings(tmp_path):
    from tests.odd_files import dataset_with_loops

    index = build_index(dataset_with_loops(tmp_path / "data"), progress=False)
    assert index.images_in("train")["image"].tolist() == [f"images/train/im{n}.jpg" for n in range(3)]
    loops = index.problems[index.problems["check"] == "symlink-loop"]
    assert loops["split"].tolist() == ["train", "train"]
    assert [message.split(" ")[:3] for message in loops["message"]] == [
        ["images/train/loop", "links", "to"], ["images/train/up", "links", "to"]]
    assert all("images/train, a directory already scanned" in message for message in loops["message"])
