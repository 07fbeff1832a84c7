"""`doctor split` on the sample dataset, pooled: rare classes reach val, shares beat a random split over
seeds, duplicates and the injected train/val leak never straddle splits, the output is a valid dataset that
matches split.json, the same seed writes the same bytes, and the source is never changed."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from dataset_doctor.dataset.index import DatasetIndex, build_index
from dataset_doctor.split import plan_split, split_dataset
from dataset_doctor.split.plan import SplitPlan

TWO_WAY = {"train": 0.8, "val": 0.2}
LINE_ERRORS = {"malformed-line", "class-out-of-range", "out-of-bounds", "degenerate-box"}


@pytest.fixture(scope="module")
def sample_index(sample_yaml: Path) -> DatasetIndex:
    return build_index(sample_yaml, progress=False, use_cache=False)


@pytest.fixture(scope="module")
def manifest(sample_yaml: Path) -> list[dict]:
    return json.loads((sample_yaml.parent / "manifest.json").read_text())["defects"]


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root: content hash and modification time (a link is followed: its target's bytes)."""
    digest = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            digest[str(path.relative_to(root))] = (hashlib.sha1(path.read_bytes()).hexdigest(),
                                                   path.stat().st_mtime_ns)
    return digest


def val_share_deviation(plan: SplitPlan, val_mask: np.ndarray) -> float:
    """Mean over classes of |share of the class's instances in val - val ratio|."""
    totals = np.asarray(plan.counts.sum(axis=0)).ravel()
    in_val = np.asarray(plan.counts[val_mask].sum(axis=0)).ravel()
    present = totals > 0
    return float(np.mean(np.abs(in_val[present] / totals[present] - TWO_WAY["val"])))


def test_every_class_with_five_instances_appears_in_val(sample_index: DatasetIndex) -> None:
    for seed in range(5):
        plan = plan_split(sample_index, TWO_WAY, seed)
        totals = np.asarray(plan.counts.sum(axis=0)).ravel()
        assert (totals >= 5).sum() == 10  # the check below covers every class of the sample
        assert (plan.instances("val")[totals >= 5] > 0).all(), seed


def test_per_class_deviation_is_smaller_than_a_random_image_split(sample_index: DatasetIndex) -> None:
    stratified, shuffled = [], []
    for seed in range(10):
        plan = plan_split(sample_index, TWO_WAY, seed)
        stratified.append(val_share_deviation(plan, (plan.images["split"] == "val").to_numpy()))
        rng = np.random.default_rng(seed)
        val_mask = np.zeros(len(plan.images), dtype=bool)
        val_mask[rng.permutation(len(plan.images))[: round(TWO_WAY["val"] * len(plan.images))]] = True
        shuffled.append(val_share_deviation(plan, val_mask))
    # Paired over seeds, one-sided Wilcoxon signed-rank: stratified lower in (nearly) every seed.
    assert stats.wilcoxon(stratified, shuffled, alternative="less").pvalue < 0.01
    assert np.mean(stratified) < 0.5 * np.mean(shuffled)


@pytest.mark.parametrize("ratios", [TWO_WAY, {"train": 0.7, "val": 0.2, "test": 0.1}])
def test_duplicate_groups_never_straddle_splits(sample_index: DatasetIndex, manifest: list[dict],
                                                ratios: dict[str, float]) -> None:
    pairs = []
    for defect in manifest:
        if defect["check"] in ("duplicate-image", "split-leak"):
            original = next(word for word in defect["note"].split() if word.startswith("images/"))
            pairs.append((defect["image"], original))
    assert len(pairs) == 2  # the byte-identical copy and the train/val leak
    for seed in range(5):
        plan = plan_split(sample_index, ratios, seed)
        images = plan.images.set_index("image")
        for copy, original in pairs:
            assert images.at[copy, "group"] == images.at[original, "group"]
            assert images.at[copy, "split"] == images.at[original, "split"], (seed, copy)
        assert (plan.images.groupby("group")["split"].nunique() == 1).all()


def test_output_is_a_valid_dataset_that_matches_split_json(sample_yaml: Path, manifest: list[dict],
                                                           tmp_path: Path) -> None:
    result = split_dataset(sample_yaml, tmp_path / "out", seed=1)
    summary = json.loads((result.out / "split.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))

    data = yaml.safe_load(result.data_yaml.read_text())
    assert data["names"] == list(yaml.safe_load(sample_yaml.read_text())["names"])
    assert set(data) == {"train", "val", "nc", "names"}
    written = build_index(result.data_yaml, progress=False, use_cache=False)
    usable = written.usable_boxes()
    for split in ("train", "val"):
        assert written.instances(split).tolist() == summary["splits"][split]["instances"]
        assert len(written.images_in(split)) == summary["splits"][split]["images"]
        holding = usable[usable["split"] == split].groupby("cls")["image_id"].nunique()
        assert holding.reindex(range(10), fill_value=0).tolist() == summary["splits"][split]["class_images"]
    assert sum(summary["splits"][split]["images"] for split in ("train", "val")) == len(summary["images"])

    # Labels are copied byte for byte, bad lines included; each image keeps its own label.
    for entry in summary["images"]:
        source_label = sample_yaml.parent / entry["image"].replace("images/", "labels/", 1)
        source_label = source_label.with_suffix(".txt")
        output_label = (result.out / entry["output"].replace("images/", "labels/", 1)).with_suffix(".txt")
        assert output_label.exists() == source_label.exists()
        if source_label.exists():
            assert output_label.read_bytes() == source_label.read_bytes()
    corrupt = sorted(d["image"] for d in manifest if d["check"] == "corrupt-image")
    assert sorted(summary["corrupt_images"]) == corrupt
    outputs = {entry["image"]: entry["output"] for entry in summary["images"]}
    assert all((result.out / outputs[image]).exists() for image in corrupt)
    assert summary["label_errors"]["lines"] == sum(d["check"] in LINE_ERRORS for d in manifest)
    assert summary["duplicate_groups"] == {"groups": 2, "images": 4, "across_source_splits": 1}


def test_same_seed_writes_identical_datasets(sample_yaml: Path, tmp_path: Path) -> None:
    first = split_dataset(sample_yaml, tmp_path / "a", seed=3)
    second = split_dataset(sample_yaml, tmp_path / "b", seed=3)
    strip = {key: value[0] for key, value in tree_digest(first.out).items()}
    assert strip == {key: value[0] for key, value in tree_digest(second.out).items()}
    other = split_dataset(sample_yaml, tmp_path / "c", seed=4)
    assert other.plan.images["split"].tolist() != first.plan.images["split"].tolist()


@pytest.mark.parametrize("link", ["copy", "hardlink", "symlink"])
def test_source_is_never_changed(sample_yaml: Path, tmp_path: Path, link: str) -> None:
    before = tree_digest(sample_yaml.parent)
    split_dataset(sample_yaml, tmp_path / "out", ratios="0.7,0.2,0.1", seed=2, link=link)
    assert tree_digest(sample_yaml.parent) == before


def test_three_way_split_reaches_every_class(sample_yaml: Path, tmp_path: Path) -> None:
    result = split_dataset(sample_yaml, tmp_path / "out", ratios="0.7,0.2,0.1", seed=0)
    data = yaml.safe_load(result.data_yaml.read_text())
    assert (data["train"], data["val"], data["test"]) == ("images/train", "images/val", "images/test")
    for split in ("train", "val", "test"):
        assert all(count > 0 for count in result.summary["splits"][split]["instances"]), split
    assert result.summary["missing"] == []


def test_a_zero_test_ratio_writes_no_test_split(sample_yaml: Path, tmp_path: Path) -> None:
    result = split_dataset(sample_yaml, tmp_path / "out", ratios="0.8,0.2,0", seed=0)
    assert "test" not in yaml.safe_load(result.data_yaml.read_text())
    assert not (result.out / "images" / "test").exists()
    assert set(result.summary["splits"]) == {"train", "val"}
