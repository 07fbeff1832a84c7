"""One test per audit check: a clean base dataset plus exactly that defect gives exactly that finding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.dataset_doctor.audit_helpers import (
    NAMES,
    audit,
    base_splits,
    grid_label,
    places,
    problems,
    rewrite_image,
)


def test_the_base_dataset_is_clean(make_dataset):
    result = audit(make_dataset(base_splits(), names=NAMES))
    assert result.findings.empty
    assert result.instances("train") == [100, 100] and result.instances("val") == [30, 30]


def test_a_clean_dataset_with_every_valid_variety_has_no_error_or_warning(make_dataset):
    """CRLF endings, stray spaces and tabs, exponent notation, polygons, blank lines, background images."""
    splits = base_splits()
    crlf = grid_label().replace("\n", "\r\n")
    spaced = "".join(f"  {line}  \t\n" for line in grid_label().splitlines())
    exponent = "".join(" ".join(f"{float(v):.4e}" if "." in v else v for v in line.split()) + "\n"
                       for line in grid_label().splitlines())
    polygons = "".join(
        f"{cls} {cx - 0.05:.4f} {cy - 0.1:.4f} {cx + 0.05:.4f} {cy - 0.1:.4f} {cx + 0.05:.4f} {cy + 0.1:.4f} "
        f"{cx - 0.05:.4f} {cy + 0.1:.4f}\n" for cls, (cx, cy) in zip([0, 1] * 5, [(0.1 + 0.2 * c, 0.25 + 0.5 * r)
                                                                        for r in range(2) for c in range(5)]))
    splits["train"].update({"crlf.jpg": crlf, "spaced.png": spaced, "exponent.jpg": exponent,
                            "polygons.jpg": polygons, "blank_lines.jpg": "\n" + grid_label() + "\n\n",
                            "background.jpg": "", "background_crlf.jpg": "\r\n"})
    splits["val"]["background.jpg"] = ""
    result = audit(make_dataset(splits, names=NAMES))
    assert problems(result) == set(), result.findings.to_string()
    assert set(result.findings["check"]) == {"empty-label", "segment-label"}
    assert result.instances("train") == [125, 125]  # 20 grid files + crlf, spaced, exponent, polygons, blank


@pytest.mark.parametrize("damage, reason", [
    (lambda data: data[: len(data) * 2 // 3], "truncated JPEG"),
    (lambda data: b"", "zero bytes"),
    (lambda data: b"this is not an image\n", "not an image"),
    (lambda data: data[:20] + bytes(300) + data[320:], "cannot be decoded"),  # tables zeroed, end marker intact
    (lambda data: _garbled(data), "damaged jpeg data"),  # entropy data garbled, markers intact: OpenCV decodes it
])
def test_corrupt_image(make_dataset, damage, reason):
    splits = base_splits()
    splits["train"]["broken.jpg"] = ("0 0.5 0.5 0.2 0.2\n", (320, 240))
    data_yaml = make_dataset(splits, names=NAMES)
    path = data_yaml.parent / "images/train/broken.jpg"
    path.write_bytes(damage(path.read_bytes()))
    result = audit(data_yaml)
    assert problems(result) == {"corrupt-image"}
    assert places(result, "corrupt-image") == [("train", "images/train/broken.jpg", None, None)]
    assert reason in result.findings["message"].iloc[0]
    assert result.instances("train") == [100, 100]  # its box is not usable


def _garbled(data: bytes) -> bytes:
    """Random bytes in place of the image data after the start of scan, end-of-image marker kept."""
    start = data.find(b"\xff\xda") + 20
    noise = np.random.default_rng(0).integers(0, 256, len(data) - start - 2, dtype=np.uint8).tobytes()
    return data[:start] + noise + data[-2:]


@pytest.mark.parametrize("damage, reason", [
    (lambda data: data[:-40], "truncated PNG"),
    (lambda data: data[:200] + bytes([data[200] ^ 0xFF]) + data[201:], "CRC error"),  # one flipped bit
])
def test_corrupt_png(make_dataset, damage, reason):
    splits = base_splits()
    splits["train"]["broken.png"] = ("0 0.5 0.5 0.2 0.2\n", (320, 240))
    data_yaml = make_dataset(splits, names=NAMES)
    path = data_yaml.parent / "images/train/broken.png"
    path.write_bytes(damage(path.read_bytes()))
    result = audit(data_yaml)
    assert places(result, "corrupt-image") == [("train", "images/train/broken.png", None, None)]
    assert reason in result.findings["message"].iloc[0]


@pytest.mark.parametrize("bad_line", ["0 0.5 0.5 0.2", "1 0.5 abc 0.1 0.1", "1 nan 0.5 0.1 0.1",
                                      "0 0.5 0.5 0.1 0.1 0.3", "1 inf 0.5 0.1 0.1"])
def test_malformed_line(make_dataset, bad_line):
    splits = base_splits()
    splits["train"]["t003.jpg"] = grid_label() + bad_line + "\n"
    result = audit(make_dataset(splits, names=NAMES))
    assert problems(result) == {"malformed-line"}
    assert places(result, "malformed-line") == [("train", "images/train/t003.jpg", "labels/train/t003.txt", 11)]


@pytest.mark.parametrize("bad_line", ["2 0.5 0.5 0.1 0.1", "-1 0.5 0.5 0.1 0.1", "1.5 0.5 0.5 0.1 0.1"])
def test_class_out_of_range(make_dataset, bad_line):
    splits = base_splits()
    splits["val"]["v001.jpg"] = bad_line + "\n" + grid_label()
    result = audit(make_dataset(splits, names=NAMES))
    assert problems(result) == {"class-out-of-range"}
    assert places(result, "class-out-of-range") == [("val", "images/val/v001.jpg", "labels/val/v001.txt", 1)]
    assert result.instances("val") == [30, 30]


@pytest.mark.parametrize("bad_line", ["0 0.98 0.5 0.1 0.1", "1 0.5 -0.02 0.1 0.1", "0 0.5 0.5 1.1 0.2"])
def test_out_of_bounds(make_dataset, bad_line):
    splits = base_splits()
    splits["train"]["extra.jpg"] = bad_line + "\n"
    result = audit(make_dataset(splits, names=NAMES))
    assert problems(result) == {"out-of-bounds"}
    assert places(result, "out-of-bounds") == [("train", "images/train/extra.jpg", "labels/train/extra.txt", 1)]


def test_out_of_bounds_tolerance(make_dataset):
    """An overhang of 0.005 of the side is within the default tolerance (0.01), not with a tolerance of 0.001."""
    splits = base_splits()
    splits["train"]["edge.jpg"] = "0 0.955 0.5 0.1 0.1\n"
    data_yaml = make_dataset(splits, names=NAMES)
    assert audit(data_yaml).findings.empty
    assert problems(audit(data_yaml, out_of_bounds_tolerance=0.001)) == {"out-of-bounds"}


@pytest.mark.parametrize("bad_line", ["0 0.5 0.5 0 0.1", "1 0.5 0.5 0.1 -0.05"])
def test_degenerate_box(make_dataset, bad_line):
    splits = base_splits()
    splits["train"]["t000.jpg"] = grid_label() + bad_line + "\n"
    result = audit(make_dataset(splits, names=NAMES))
    assert problems(result) == {"degenerate-box"}
    assert places(result, "degenerate-box") == [("train", "images/train/t000.jpg", "labels/train/t000.txt", 11)]


@pytest.mark.parametrize("names, extra", [(NAMES, {"nc": 3}), ({0: "cat", 1: "dog", 3: "bird"}, {})])
def test_names_mismatch(make_dataset, names, extra):
    result = audit(make_dataset(base_splits(), names=names, extra_yaml=extra))
    # A gap in a names mapping also leaves class 2 without any instance.
    assert problems(result) - {"unused-class"} == {"names-mismatch"}
    assert places(result, "names-mismatch") == [(None, None, "data.yaml", None)]


def test_missing_label(make_dataset):
    splits = base_splits()
    splits["train"]["unlabelled.jpg"] = None
    result = audit(make_dataset(splits, names=NAMES))
    assert problems(result) == {"missing-label"}
    assert places(result, "missing-label") == [("train", "images/train/unlabelled.jpg", None, None)]
    assert result.split_summary.set_index("split").at["train", "backgrounds"] == 1


def test_orphan_label(make_dataset):
    data_yaml = make_dataset(base_splits(), names=NAMES)
    (data_yaml.parent / "labels/train/deleted.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    result = audit(data_yaml)
    assert problems(result) == {"orphan-label"}
    assert places(result, "orphan-label") == [(None, None, "labels/train/deleted.txt", None)]


@pytest.mark.parametrize("repeat, found", [
    ("0 0.100000 0.250000 0.100000 0.200000", True),  # exact repeat of line 1
    ("0 0.102 0.251 0.1 0.2", True),  # IoU about 0.95
    ("0 0.11 0.25 0.1 0.2", False),  # IoU about 0.82
    ("1 0.1 0.25 0.1 0.2", False),  # same place, other class
])
def test_duplicate_box(make_dataset, repeat, found):
    splits = base_splits()
    splits["train"]["t005.jpg"] = grid_label() + repeat + "\n"
    result = audit(make_dataset(splits, names=NAMES))
    if found:
        assert problems(result) == {"duplicate-box"}
        assert places(result, "duplicate-box") == [("train", "images/train/t005.jpg", "labels/train/t005.txt", 11)]
        assert "line 1" in result.findings["message"].iloc[0]
    else:
        assert problems(result) == set()


def test_duplicate_box_threshold_is_an_option(make_dataset):
    splits = base_splits()
    splits["train"]["t005.jpg"] = grid_label() + "0 0.11 0.25 0.1 0.2\n"  # IoU 0.818
    data_yaml = make_dataset(splits, names=NAMES)
    assert problems(audit(data_yaml, duplicate_box_iou=0.8)) == {"duplicate-box"}


def test_tiny_box(make_dataset):
    splits = base_splits()
    splits["train"]["t002.jpg"] = grid_label() + "1 0.5 0.5 0.002 0.003\n"  # 0.19 px in a 96x64 image
    result = audit(make_dataset(splits, names=NAMES))
    assert problems(result) == {"tiny-box"}
    assert places(result, "tiny-box") == [("train", "images/train/t002.jpg", "labels/train/t002.txt", 11)]


def test_tiny_box_uses_the_letterboxed_training_size(make_dataset):
    """A 3.2 px box in a 1280 px wide image is 1.6 px at --imgsz 640, 3.2 px at 1280."""
    splits = base_splits()
    splits["train"]["wide.jpg"] = ("0 0.5 0.5 0.0025 0.005\n", (1280, 640))
    data_yaml = make_dataset(splits, names=NAMES)
    assert problems(audit(data_yaml)) == {"tiny-box"}
    assert problems(audit(data_yaml, imgsz=1280)) == set()
    assert problems(audit(data_yaml, imgsz=1280, tiny_box_px=4)) == {"tiny-box"}


def test_extreme_aspect(make_dataset):
    splits = base_splits()
    splits["train"]["thin.jpg"] = "0 0.5 0.5 0.9 0.02\n"  # 86 x 1.3 px: 67:1
    result = audit(make_dataset(splits, names=NAMES))
    assert problems(result) == {"extreme-aspect"}
    assert places(result, "extreme-aspect") == [("train", "images/train/thin.jpg", "labels/train/thin.txt", 1)]
    assert "67" in result.findings["message"].iloc[0]


def test_extreme_aspect_is_measured_in_pixels(make_dataset):
    """w/h = 0.5/0.05 = 10 in normalised units, but 40:1 in a 400x100 image."""
    splits = base_splits()
    splits["train"]["panorama.jpg"] = ("0 0.5 0.5 0.5 0.05\n", (400, 100))
    result = audit(make_dataset(splits, names=NAMES))
    assert problems(result) == {"extreme-aspect"}


def test_mixed_label_types(make_dataset):
    splits = base_splits()
    splits["train"]["t007.jpg"] = "1 0.3 0.3 0.4 0.3 0.35 0.4\n" + grid_label()
    result = audit(make_dataset(splits, names=NAMES))
    assert problems(result) == {"mixed-label-types"}
    assert places(result, "mixed-label-types") == [("train", "images/train/t007.jpg", "labels/train/t007.txt", None)]
    assert places(result, "segment-label") == [("train", "images/train/t007.jpg", "labels/train/t007.txt", 1)]


def test_unused_class(make_dataset):
    result = audit(make_dataset(base_splits(), names=[*NAMES, "bird"]))
    assert problems(result) == {"unused-class"}
    assert places(result, "unused-class") == [("train", None, None, None)]
    assert "'bird'" in result.findings["message"].iloc[0]


def test_missing_in_val(make_dataset):
    splits = base_splits()
    splits["val"] = {name: grid_label([0] * 10) for name in splits["val"]}
    result = audit(make_dataset(splits, names=NAMES))
    assert problems(result) == {"missing-in-val"}
    assert places(result, "missing-in-val") == [("val", None, None, None)]
    assert "'dog'" in result.findings["message"].iloc[0]


def test_class_imbalance(make_dataset):
    """110 cats and 100 dogs: a ratio of 1.1, flagged only with a threshold below it."""
    splits = base_splits()
    splits["train"]["cats.jpg"] = grid_label([0] * 10)
    data_yaml = make_dataset(splits, names=NAMES)
    assert problems(audit(data_yaml)) == set()
    result = audit(data_yaml, imbalance_ratio=1.05)
    assert problems(result) == {"class-imbalance"}
    assert "'cat' has 110" in result.findings["message"].iloc[0] and "'dog' 100" in result.findings["message"].iloc[0]


def test_class_imbalance_at_the_default_ratio(make_dataset):
    splits = base_splits()
    for number in range(20):  # dogs only in 2 of the 20 train files: 10 dogs against 190 cats
        splits["train"][f"t{number:03d}.jpg"] = grid_label(None if number < 2 else [0] * 10)
    result = audit(make_dataset(splits, names=NAMES), min_instances=10)
    assert problems(result) == {"class-imbalance"}


def test_few_instances(make_dataset):
    splits = base_splits()
    for number in range(10):
        splits["train"][f"t{number:03d}.jpg"] = grid_label([0] * 10)
    result = audit(make_dataset(splits, names=NAMES))
    assert result.instances("train") == [150, 50]
    assert problems(result) == {"few-instances"}
    assert places(result, "few-instances") == [("train", None, None, None)]
    assert "'dog' has 50" in result.findings["message"].iloc[0]


def test_duplicate_image(make_dataset):
    splits = base_splits()
    data_yaml = make_dataset(splits, names=NAMES)
    images = data_yaml.parent / "images/train"
    (images / "t999_copy.jpg").write_bytes((images / "t004.jpg").read_bytes())
    result = audit(data_yaml)
    assert problems(result) == {"duplicate-image", "missing-label"}  # the copy came without its label
    assert places(result, "duplicate-image") == [("train", "images/train/t999_copy.jpg", None, None)]
    pair = result.duplicate_pairs.iloc[0]
    assert (pair["image_a"], pair["image_b"], pair["match"]) == ("images/train/t004.jpg",
                                                                 "images/train/t999_copy.jpg", "exact")
    assert pair["path_a"] == str(images / "t004.jpg")


def test_near_duplicate_image(make_dataset):
    """A resized, brightened, re-encoded copy is found; different noise images are not."""
    splits = base_splits()
    splits["train"]["big.jpg"] = (grid_label(), (640, 480))
    splits["train"]["big_edit.jpg"] = (grid_label(), (640, 480))
    data_yaml = make_dataset(splits, names=NAMES)
    images = data_yaml.parent / "images/train"
    pixels = cv2.imread(str(images / "big.jpg"))
    edited = cv2.convertScaleAbs(cv2.resize(pixels, (576, 432), interpolation=cv2.INTER_AREA), alpha=1.05, beta=10)
    cv2.imwrite(str(images / "big_edit.jpg"), edited, [cv2.IMWRITE_JPEG_QUALITY, 70])
    result = audit(data_yaml)
    assert problems(result) == {"duplicate-image"}
    assert places(result, "duplicate-image") == [("train", "images/train/big_edit.jpg", None, None)]
    assert result.duplicate_pairs.iloc[0]["match"] == "near"


@pytest.mark.parametrize("edit", ["copy", "flip-free edit"])
def test_split_leak(make_dataset, edit):
    splits = base_splits()
    data_yaml = make_dataset(splits, names=NAMES)
    root = data_yaml.parent
    leak = root / "images/val/leak.jpg"
    leak.write_bytes((root / "images/train/t010.jpg").read_bytes())
    (root / "labels/val/leak.txt").write_text(grid_label())
    if edit != "copy":
        rewrite_image(leak, lambda pixels: cv2.convertScaleAbs(pixels, alpha=0.95, beta=8))
    result = audit(data_yaml)
    assert problems(result) == {"split-leak"}
    assert places(result, "split-leak") == [("val", "images/val/leak.jpg", None, None)]
    pair = result.duplicate_pairs.iloc[0]
    assert (pair["split_a"], pair["image_a"]) == ("train", "images/train/t010.jpg")


def test_flat_frames_are_duplicates_only_of_their_own_colour(make_dataset):
    splits = base_splits()
    data_yaml = make_dataset(splits, names=NAMES)
    root = data_yaml.parent
    for split, name, level in (("train", "t000", 0), ("train", "t001", 90), ("train", "t002", 255),
                               ("val", "v000", 30), ("val", "v001", 160), ("val", "v002", 220)):
        cv2.imwrite(str(root / f"images/{split}/{name}.jpg"), np.full((64, 96, 3), level, np.uint8))
    assert problems(audit(data_yaml)) == set()  # six colours: no leak, no duplicate
    cv2.imwrite(str(root / "images/train/t900.png"), np.full((64, 96, 3), 90, np.uint8))
    (root / "labels/train/t900.txt").write_text(grid_label())
    result = audit(data_yaml)
    assert problems(result) == {"duplicate-image"}  # the same grey as t001, as a PNG
    assert places(result, "duplicate-image") == [("train", "images/train/t900.png", None, None)]


def test_the_same_file_in_two_splits_is_a_leak(make_dataset):
    data_yaml = make_dataset(base_splits(), names=NAMES)
    root = data_yaml.parent
    (root / "val_list.txt").write_text("images/val/v000.jpg\nimages/val/v001.jpg\nimages/val/v002.jpg\n"
                                       "images/val/v003.jpg\nimages/val/v004.jpg\nimages/val/v005.jpg\n"
                                       "images/train/t000.jpg\n")
    data_yaml.write_text(data_yaml.read_text().replace("val: images/val", "val: val_list.txt"))
    result = audit(data_yaml)
    assert problems(result) == {"split-leak"}
    assert places(result, "split-leak") == [("val", "images/train/t000.jpg", None, None)]
    assert result.duplicate_pairs.iloc[0]["match"] == "same file"


def test_scale_shift(make_dataset):
    splits = base_splits()
    splits["val"] = {name: grid_label(w=0.03, h=0.06) for name in splits["val"]}  # val boxes 0.3x as large
    result = audit(make_dataset(splits, names=NAMES))
    assert problems(result) == {"scale-shift"}
    assert places(result, "scale-shift") == [("val", None, None, None)] * 2
    shift = result.scale_shift.set_index("class")
    assert shift.loc["cat", "flagged"] and shift.loc["cat", "statistic"] == 1.0
    assert shift.loc["cat", "side_ratio"] == pytest.approx(0.3, rel=1e-3)


def test_scale_shift_needs_enough_instances_on_both_sides(make_dataset):
    splits = base_splits(val_images=2)  # 10 val boxes per class, fewer than 15
    splits["val"] = {name: grid_label(w=0.03, h=0.06) for name in splits["val"]}
    data_yaml = make_dataset(splits, names=NAMES)
    assert problems(audit(data_yaml)) == set()
    assert problems(audit(data_yaml, shift_min_instances=10)) == {"scale-shift"}


def test_empty_label_is_information(make_dataset):
    splits = base_splits()
    splits["train"]["background.jpg"] = ""
    result = audit(make_dataset(splits, names=NAMES))
    assert problems(result) == set()
    assert places(result, "empty-label") == [("train", "images/train/background.jpg", "labels/train/background.txt",
                                              None)]


def test_segment_label_is_information(make_dataset):
    splits = base_splits()
    splits["train"]["t001.jpg"] = "".join(
        f"{cls} {cx - 0.05} {cy - 0.1} {cx + 0.05} {cy - 0.1} {cx} {cy + 0.1}\n"
        for cls, (cx, cy) in zip([0, 1] * 5, [(0.1 + 0.2 * c, 0.25 + 0.5 * r) for r in range(2) for c in range(5)]))
    result = audit(make_dataset(splits, names=NAMES))
    assert problems(result) == set()
    assert places(result, "segment-label") == [("train", "images/train/t001.jpg", "labels/train/t001.txt", 1)]
    assert result.instances("train") == [100, 100]


def test_ignore_leaves_checks_out(make_dataset):
    splits = base_splits()
    splits["train"]["t003.jpg"] = grid_label() + "0 0.5 0.5\n" + "0 0.5 0.5 0 0.1\n"
    data_yaml = make_dataset(splits, names=NAMES)
    assert problems(audit(data_yaml)) == {"malformed-line", "degenerate-box"}
    result = audit(data_yaml, ignore={"malformed-line"})
    assert problems(result) == {"degenerate-box"}
    assert audit(data_yaml, ignore={"malformed-line", "degenerate-box"}).exit_code() == 0
    assert result.instances("train") == [100, 100]  # ignoring a check does not make its boxes usable


def test_findings_are_ordered_by_check_then_place(make_dataset):
    splits = base_splits()
    splits["val"]["v000.jpg"] = grid_label() + "0 0.5 0.5\n"
    splits["train"]["t009.jpg"] = grid_label() + "0 0.5 0.5 0 0.1\n" + "0 0.5 0.5\n"
    result = audit(make_dataset(splits, names=NAMES))
    assert [(f.check, f.split, f.line) for f in result.findings.itertuples()] == [
        ("malformed-line", "train", 12), ("malformed-line", "val", 11), ("degenerate-box", "train", 11)]


def test_a_box_on_an_image_listed_twice_is_counted_in_each_split(make_dataset):
    """Such an image is a leak, and its boxes count in both splits (that is what training and val would see)."""
    data_yaml = make_dataset(base_splits(), names=NAMES)
    root = data_yaml.parent
    listed_twice = "val:\n- images/val\n- images/train/t000.jpg"
    data_yaml.write_text(data_yaml.read_text().replace("val: images/val", listed_twice))
    result = audit(data_yaml)
    assert result.instances("val") == [35, 35]
    assert np.array_equal(result.split_summary["images"], [20, 7])
    assert (root / "images/train/t000.jpg").exists()


def test_a_bad_line_of_an_image_listed_in_two_splits_is_reported_in_each(make_dataset):
    splits = base_splits()
    splits["train"]["t001.jpg"] = grid_label() + "0 0.5 0.5\n"
    data_yaml = make_dataset(splits, names=NAMES)
    also_in_val = "val:\n- images/val\n- images/train/t001.jpg"
    data_yaml.write_text(data_yaml.read_text().replace("val: images/val", also_in_val))
    result = audit(data_yaml)
    assert places(result, "malformed-line") == [("train", "images/train/t001.jpg", "labels/train/t001.txt", 11),
                                                ("val", "images/train/t001.jpg", "labels/train/t001.txt", 11)]


@pytest.mark.parametrize("labels", [{}, {"t000.jpg": "0 0.5 0.5 0.2 0.2\n"}, {"t000.jpg": "5 0.5 0.5 0.2 0.2\n"}])
def test_a_dataset_with_at_most_one_usable_box_audits_without_crashing(make_dataset, labels):
    """No box, one box, or only boxes with an error: the duplicate-box sweep has nothing to pair."""
    splits = {"train": {"t000.jpg": "", "t001.jpg": None, **labels}, "val": {"v000.jpg": ""}}
    result = audit(make_dataset(splits, names=NAMES))
    assert "duplicate-box" not in set(result.findings["check"])
    assert sum(result.instances("train")) == (1 if labels.get("t000.jpg", "").startswith("0") else 0)


# --- names, links and huge images (issue 16 items 3, 5, 9) ---------------------------------------------------------

def test_huge_image_by_the_pixel_budget(make_dataset):
    splits = base_splits()
    splits["train"]["big.jpg"] = (grid_label(), (400, 300))  # 120000 pixels; the others 96x64
    data_yaml = make_dataset(splits, names=NAMES)
    assert problems(audit(data_yaml)) == set()
    result = audit(data_yaml, max_pixels=100_000)
    assert problems(result) == {"huge-image"}
    assert places(result, "huge-image") == [("train", "images/train/big.jpg", None, None)]
    message = result.findings.loc[result.findings["check"] == "huge-image", "message"].iloc[0]
    assert message.startswith("400x300 pixels") and "--max-pixels" in message
    assert problems(audit(data_yaml, max_pixels=100_000, ignore={"huge-image"})) == set()


def test_huge_png_of_32000_pixels_a_side_is_a_warning_not_a_corrupt_image(tmp_path):
    from tests.odd_files import dataset_with_huge_png

    result = audit(dataset_with_huge_png(tmp_path / "data"))
    assert problems(result) - {"few-instances"} == {"huge-image"}
    assert places(result, "huge-image") == [("train", "images/train/huge.png", None, None)]
    assert result.instances("train") == [4, 3]  # its box is usable


def test_non_utf8_name_and_symlink_loop_can_be_ignored(tmp_path):
    from tests.odd_files import dataset_with_bad_name, dataset_with_loops

    named, looped = dataset_with_bad_name(tmp_path / "named"), dataset_with_loops(tmp_path / "looped")
    assert "non-utf8-name" in problems(audit(named))
    assert "non-utf8-name" not in problems(audit(named, ignore={"non-utf8-name"}))
    assert "symlink-loop" in problems(audit(looped))
    assert "symlink-loop" not in problems(audit(looped, ignore={"symlink-loop"}))
