"""The bundled sample dataset: the properties demo, tests and benchmarks rely on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from dataset_doctor.dataset.index import build_index
from dataset_doctor.errors import DoctorError
from dataset_doctor.sample.generate import write_sample_dataset
from dataset_doctor.sample.spec import CLASS_NAMES, SampleSpec


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def full_sample(tmp_path_factory) -> Path:
    """The default-size sample (800 / 200), as `doctor sample` writes it."""
    return write_sample_dataset(tmp_path_factory.mktemp("full") / "digits", seed=0)


@pytest.fixture(scope="module")
def full_index(full_sample):
    return build_index(full_sample, progress=False, use_cache=False)


def test_default_sample_size_classes_and_image_sizes(full_index):
    images = full_index.images
    assert full_index.names == CLASS_NAMES
    train, val = full_index.images_in("train"), full_index.images_in("val")
    assert 800 <= len(train) <= 810 and 200 <= len(val) <= 205  # plus the injected copies
    readable = images[images["readable"]]
    assert readable["width"].between(288, 640).all() and readable["height"].between(288, 640).all()
    assert readable["width"].min() < 360 and readable["width"].max() > 600


def test_train_classes_are_long_tailed(full_index):
    train = full_index.instances("train")
    assert train.min() > 0 and train.max() / train.min() >= 20
    assert (full_index.instances("val") > 0).all()  # every class measurable on val


def test_objects_range_from_small_to_large(full_index):
    boxes = full_index.usable_boxes()
    sizes = full_index.images.set_index("image_id").loc[boxes["image_id"], ["width", "height"]].to_numpy()
    heights_px = boxes["h"].to_numpy() * sizes[:, 1]
    areas_px = boxes["w"].to_numpy() * sizes[:, 0] * heights_px
    assert np.percentile(heights_px, 5) < 16 and heights_px.max() > 120
    assert (areas_px < 32**2).mean() > 0.2 and (areas_px > 96**2).mean() > 0.02  # COCO small and large both present


def test_backgrounds_and_valid_label_variety(full_index):
    checks = full_index.problems["check"].value_counts()
    assert checks["empty-label"] >= 10  # background images
    assert checks["segment-label"] >= 10  # polygon files
    root = full_index.root
    label_bytes = b"".join((root / label).read_bytes() for label in full_index.images["label"]
                           if (root / label).exists())
    assert b"\r\n" in label_bytes and b"e-0" in label_bytes  # CRLF files and exponent notation


def test_manifest_lists_every_deliberate_defect_at_a_real_place(full_sample):
    root = full_sample.parent
    manifest = json.loads((root / "manifest.json").read_text())
    defects = manifest["defects"]
    line_defects = [d for d in defects if d["line"] is not None]
    assert len(line_defects) >= 12  # "a dozen deliberately broken label lines"
    assert {d["check"] for d in defects} >= {
        "malformed-line", "class-out-of-range", "out-of-bounds", "degenerate-box", "duplicate-box", "tiny-box",
        "extreme-aspect", "corrupt-image", "missing-label", "orphan-label", "duplicate-image", "split-leak",
        "mixed-label-types", "scale-shift"}
    for defect in line_defects:
        lines = (root / defect["label"]).read_text().splitlines()
        assert 1 <= defect["line"] <= len(lines)
    for defect in defects:
        if defect["image"]:
            assert (root / defect["image"]).exists()
        if defect["check"] == "missing-label":
            assert defect["label"] is None
        if defect["check"] == "orphan-label":
            assert (root / defect["label"]).exists()


def test_same_seed_same_bytes_other_seed_other_dataset(tmp_path):
    spec = SampleSpec(train_images=50, val_images=20)
    first = write_sample_dataset(tmp_path / "a", seed=3, spec=spec).parent
    second = write_sample_dataset(tmp_path / "b", seed=3, spec=spec).parent
    third = write_sample_dataset(tmp_path / "c", seed=4, spec=spec).parent
    assert tree_digest(first) == tree_digest(second)
    assert tree_digest(first) != tree_digest(third)


def test_refuses_a_non_empty_directory_and_leaves_nothing_behind(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DoctorError, match="not empty"):
        write_sample_dataset(out, spec=SampleSpec(train_images=50, val_images=20))
    assert [p.name for p in tmp_path.iterdir()] == ["taken"] and (out / "keep.txt").read_text() == "mine"


def test_too_small_for_the_defects_is_a_clear_error(tmp_path):
    with pytest.raises(DoctorError, match="at least 50 train"):
        write_sample_dataset(tmp_path / "x", spec=SampleSpec(train_images=10, val_images=10))
    clean = write_sample_dataset(tmp_path / "y", spec=SampleSpec(train_images=10, val_images=10, inject_defects=False))
    assert json.loads((clean.parent / "manifest.json").read_text())["defects"] == []


def test_an_output_that_cannot_be_created_is_a_one_line_error(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(DoctorError, match="cannot write the output here"):
        write_sample_dataset(tmp_path / "a-file" / "sample", spec=SampleSpec(train_images=50, val_images=20))
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]
