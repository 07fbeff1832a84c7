"""The audit's numeric building blocks against slow, obvious references: percentiles, IoU pairs, size classes,
the scale-shift guards, and option validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataset_doctor.audit import AuditOptions
from dataset_doctor.audit.box_stats import box_geometry, box_stats_table, grouped_percentiles
from dataset_doctor.audit.checks_boxes import duplicate_box_pairs
from dataset_doctor.audit.checks_shift import scale_shift_table
from dataset_doctor.audit.near_duplicates import NEAR_DUPLICATE_MAX_BITS
from dataset_doctor.dataset.box_rules import OUT_OF_BOUNDS_TOLERANCE
from dataset_doctor.dataset.images import DEFAULT_MAX_PIXELS
from dataset_doctor.errors import DoctorError
from tests.dataset_doctor.audit_helpers import NAMES, audit, base_splits
from trainer.data.config import DataConfig


def test_grouped_percentiles_match_numpy():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 7, size=500)
    values = rng.lognormal(size=500)
    values[rng.random(500) < 0.05] = np.nan
    result = grouped_percentiles(groups, values, 9, (0, 5, 25, 50, 75, 95, 100))
    for group in range(9):
        members = values[(groups == group) & ~np.isnan(values)]
        if len(members):
            assert np.allclose(result[group], np.percentile(members, [0, 5, 25, 50, 75, 95, 100]))
        else:
            assert np.isnan(result[group]).all()


def brute_force_pairs(boxes: pd.DataFrame, min_iou: float) -> set[tuple[int, int]]:
    found = set()
    rows = boxes.to_dict("records")
    for i, a in enumerate(rows):
        for j in range(i + 1, len(rows)):
            b = rows[j]
            if a["image_id"] != b["image_id"] or a["cls"] != b["cls"]:
                continue
            ix = max(0.0, min(a["cx"] + a["w"] / 2, b["cx"] + b["w"] / 2) - max(a["cx"] - a["w"] / 2,
                                                                              b["cx"] - b["w"] / 2))
            iy = max(0.0, min(a["cy"] + a["h"] / 2, b["cy"] + b["h"] / 2) - max(a["cy"] - a["h"] / 2,
                                                                              b["cy"] - b["h"] / 2))
            union = a["w"] * a["h"] + b["w"] * b["h"] - ix * iy
            if union > 0 and ix * iy / union >= min_iou:
                found.add((i, j))
    return found


@pytest.mark.parametrize("min_iou", [0.9, 0.7, 0.5])
def test_duplicate_box_sweep_finds_exactly_the_brute_force_pairs(min_iou):
    rng = np.random.default_rng(1)
    count = 400
    base = pd.DataFrame({"image_id": rng.integers(0, 5, count), "cls": rng.integers(0, 2, count),
                         "cx": rng.uniform(0, 1, count), "cy": rng.uniform(0, 1, count),
                         "w": rng.uniform(0.01, 0.3, count), "h": rng.uniform(0.01, 0.3, count)})
    # Jittered copies of some boxes, so that there are pairs around every threshold.
    copies = base.sample(150, random_state=2).copy()
    for column, spread in (("cx", 0.02), ("cy", 0.02), ("w", 0.03), ("h", 0.03)):
        copies[column] = copies[column] + rng.normal(0, spread, len(copies))
    boxes = pd.concat([base, copies, base.iloc[:10]], ignore_index=True)  # exact repeats too
    pairs = duplicate_box_pairs(boxes, min_iou)
    found = {tuple(sorted(pair)) for pair in zip(pairs["a"], pairs["b"])}
    assert found == brute_force_pairs(boxes, min_iou)
    assert len(found) > 10


def test_coco_size_classes_at_original_size_and_training_size():
    """A 40x40 px box in a 1280x640 image is medium (1600 px^2); letterboxed to 640 it is 20x20, small."""
    images = pd.DataFrame({"width": [1280, 100], "height": [640, 100]})
    boxes = pd.DataFrame({"image_id": [0, 0, 1], "split": pd.Categorical(["train", "train", "val"]),
                          "image": ["a", "a", "b"], "line": [1, 2, 1], "cls": [0, 1, 0],
                          "cx": [0.5, 0.5, 0.5], "cy": [0.5, 0.5, 0.5],
                          "w": [40 / 1280, 200 / 1280, 0.2], "h": [40 / 640, 200 / 640, 0.5]})
    geometry = box_geometry(boxes, images, imgsz=640)
    assert geometry["width"].tolist() == pytest.approx([40, 200, 20])
    assert geometry["width_imgsz"].tolist() == pytest.approx([20, 100, 128])
    assert geometry["aspect"].tolist() == pytest.approx([1, 1, 0.4])
    stats = box_stats_table(geometry, ["train", "val"], NAMES).set_index(["split", "class_id"])
    assert stats.loc[("train", 0), ["small", "medium", "large"]].tolist() == [0, 1, 0]
    assert stats.loc[("train", 0), ["small_imgsz", "medium_imgsz", "large_imgsz"]].tolist() == [1, 0, 0]
    assert stats.loc[("train", 1), ["large", "large_imgsz"]].tolist() == [1, 1]
    assert stats.loc[("train", -1), "instances"] == 2 and stats.loc[("val", 1), "instances"] == 0
    assert np.isnan(stats.loc[("val", 1), "width_p50"])
    assert stats.loc[("val", 0), "area_imgsz_p50"] == pytest.approx(128 * 320)


def shift_geometry(train: np.ndarray, val: np.ndarray, cls: int = 0) -> pd.DataFrame:
    area = np.r_[train, val]
    return pd.DataFrame({"split": ["train"] * len(train) + ["val"] * len(val), "cls": cls, "area_imgsz": area})


def test_scale_shift_effect_size_floor_ignores_trivial_shifts_in_big_samples():
    """100k boxes a side, areas 5% apart: overwhelming p-value, tiny KS statistic: not flagged."""
    rng = np.random.default_rng(3)
    train = np.exp(rng.normal(7, 1, 100_000))
    val = np.exp(rng.normal(7.05, 1, 100_000))
    table = scale_shift_table(shift_geometry(train, val), ["x"], AuditOptions())
    assert table.at[0, "p_value"] < 1e-10 and table.at[0, "statistic"] < 0.05
    assert not table.at[0, "flagged"]
    assert scale_shift_table(shift_geometry(train, val), ["x"], AuditOptions(shift_min_effect=0.01)).at[0, "flagged"]


def test_scale_shift_does_not_flag_same_distribution_samples():
    rng = np.random.default_rng(4)
    flagged = 0
    for _ in range(50):
        table = scale_shift_table(shift_geometry(np.exp(rng.normal(7, 1, 60)), np.exp(rng.normal(7, 1, 20))),
                                  ["x"], AuditOptions())
        flagged += bool(table.at[0, "flagged"])
    assert flagged <= 1


def test_default_options_follow_the_shared_modules():
    options = AuditOptions()
    assert options.out_of_bounds_tolerance == OUT_OF_BOUNDS_TOLERANCE
    assert options.near_duplicate_bits == NEAR_DUPLICATE_MAX_BITS
    assert options.max_pixels == DEFAULT_MAX_PIXELS == DataConfig().max_pixels
    assert (options.imgsz, options.imbalance_ratio, options.min_instances, options.max_aspect,
            options.duplicate_box_iou, options.tiny_box_px) == (640, 10, 100, 20, 0.9, 2)


@pytest.mark.parametrize("changes, message", [
    ({"ignore": {"no-such-check"}}, "unknown check"),
    ({"fail_on": "info"}, "--fail-on"),
    ({"imgsz": 0}, "--imgsz"),
    ({"duplicate_box_iou": 0}, "--duplicate-iou"),
    ({"near_duplicate_bits": 17}, "--near-duplicate-bits"),
    ({"shift_alpha": 1.5}, "--shift-alpha"),
    ({"max_pixels": 0}, "--max-pixels"),
])
def test_invalid_options_are_user_errors(changes, message):
    with pytest.raises(DoctorError, match=message):
        AuditOptions(**changes)


def test_near_duplicate_bits_is_the_perceptual_hash_distance_limit(make_dataset):
    import cv2

    splits = base_splits()
    splits["train"]["big.jpg"] = ("", (640, 480))
    splits["train"]["big_edit.jpg"] = ("", (640, 480))
    data_yaml = make_dataset(splits, names=NAMES)
    images = data_yaml.parent / "images/train"
    pixels = cv2.imread(str(images / "big.jpg"))
    cv2.rectangle(pixels, (20, 20), (30, 30), (255, 255, 255), thickness=-1)  # a small sticker: a few bits move
    cv2.imwrite(str(images / "big_edit.jpg"), pixels)
    assert "duplicate-image" in set(audit(data_yaml).findings["check"])
    distance = audit(data_yaml).duplicate_pairs["distance"].iloc[0]
    assert 0 < distance <= NEAR_DUPLICATE_MAX_BITS
    assert "duplicate-image" not in set(audit(data_yaml, near_duplicate_bits=int(distance) - 1).findings["check"])


def test_near_duplicate_pairs_match_brute_force():
    """The vectorised band search finds exactly the pairs within the limit, whatever the run structure."""
    from dataset_doctor.audit.near_duplicates import near_duplicate_pairs
    from dataset_doctor.dataset.images import hamming_distance, phash_words

    rng = np.random.default_rng(5)
    base = [rng.integers(0, 256, 32, dtype=np.uint8) for _ in range(60)]
    hashes = []
    for number in range(200):
        bits = base[number % 60].copy()
        for bit in rng.choice(256, size=int(rng.integers(0, 24)), replace=False):
            bits[bit // 8] ^= 1 << (bit % 8)
        hashes.append(bits.tobytes().hex())
    hashes += ["", hashes[3], hashes[3], ""]  # unreadable images and exact repeats
    words = phash_words(hashes)
    for max_bits in (0, 8, 16):
        pairs = near_duplicate_pairs(hashes, max_bits)
        expected = {(i, j) for i in range(len(hashes)) for j in range(i + 1, len(hashes))
                    if hashes[i] and hashes[j] and hamming_distance(words[i], words[j]) <= max_bits}
        if max_bits == 16:  # at exactly 16 bits a pair spread one bit per band escapes the bands (rare)
            assert set(zip(pairs["i"], pairs["j"])) <= expected
            assert len(pairs) >= 0.99 * len(expected)
        else:
            assert set(zip(pairs["i"], pairs["j"])) == expected
        assert (pairs["distance"] <= max_bits).all() and (pairs["i"] < pairs["j"]).all()


@pytest.mark.parametrize("sizes", [(40, 30), (400, 300), (3000, 50)])
def test_ks_test_matches_scipy(sizes):
    from scipy.stats import ks_2samp, kstwobign

    from dataset_doctor.audit.checks_shift import _ks_test

    rng = np.random.default_rng(sizes[0])
    a = np.sort(rng.normal(0, 1, sizes[0]).round(2))  # ties included
    b = np.sort(rng.normal(0.3, 1.2, sizes[1]).round(2))
    statistic, p_value = _ks_test(a, b)
    exact = sizes[0] * sizes[1] <= 10_000
    reference = ks_2samp(a, b, method="exact" if exact else "asymp")
    assert statistic == pytest.approx(reference.statistic, abs=1e-12)
    if exact:
        assert p_value == pytest.approx(reference.pvalue, rel=1e-9)
    else:  # Smirnov's limiting distribution, close to scipy's finite-n one at these sizes
        effective = sizes[0] * sizes[1] / sum(sizes)
        assert p_value == pytest.approx(kstwobign.sf(np.sqrt(effective) * statistic), rel=1e-9)
        assert p_value == pytest.approx(reference.pvalue, rel=0.2)


def test_box_stats_percentiles_match_numpy_per_class_and_pooled():
    from dataset_doctor.audit.box_stats import MEASURES, PERCENTILES

    rng = np.random.default_rng(6)
    count = 3000
    geometry = pd.DataFrame({"split": rng.choice(["train", "val"], count), "cls": rng.integers(0, 3, count),
                             **{measure: rng.lognormal(3, 1, count) for measure in MEASURES}})
    stats = box_stats_table(geometry, ["train", "val"], ["a", "b", "c"]).set_index(["split", "class_id"])
    for split in ("train", "val"):
        for class_id in (0, 1, 2, -1):
            chosen = (geometry["split"] == split) & ((geometry["cls"] == class_id) | (class_id == -1))
            for measure in ("width", "aspect", "area_imgsz"):
                expected = np.percentile(geometry.loc[chosen, measure], PERCENTILES)
                row = stats.loc[(split, class_id), [f"{measure}_p{p}" for p in PERCENTILES]]
                assert np.allclose(row.to_numpy(dtype=float), expected)
            assert stats.loc[(split, class_id), "instances"] == chosen.sum()
