"""doctor split on folder-per-class data: every class follows the ratios, duplicates stay together, the source
is untouched and the output is again folder-per-class."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataset_doctor.cli import app
from dataset_doctor.dataset.classify_index import build_classify_index
from dataset_doctor.errors import DoctorError
from dataset_doctor.split.classify import split_classify_dataset
from tests.hostile import tree_digest
from tests.tiny_dataset import noise_image, write_class_tree


def _dataset(root: Path) -> Path:
    files = {f"train/a/{i}.png": (32, 32) for i in range(10)}
    files.update({f"train/b/{i}.png": (32, 32) for i in range(5)})
    same = noise_image("dup", (32, 32))
    files.update({"train/a/dup1.png": same, "val/a/dup2.png": same, "val/a/0.png": (32, 32)})
    return write_class_tree(root, files)


def test_stratified_with_duplicates_together(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "src")
    before = tree_digest(root)
    result = split_classify_dataset(root, tmp_path / "out", ratios="0.8,0.2", seed=0)
    assert tree_digest(root) == before
    assert result.splits == ["train", "val"] and result.groups_kept_together == 1
    assert result.counts["train"][0] + result.counts["val"][0] == 13 and result.counts["val"][1] == 1
    assert result.counts["val"][0] in (2, 3)
    out = build_classify_index(tmp_path / "out")
    assert out.names == ("a", "b") and len(out.images) == 18
    dups = out.images[out.images["image"].str.contains("dup")]
    assert dups["split"].nunique() == 1 and len(dups) == 2
    assert (tmp_path / "out" / "train" / "a" / "val_0.png").exists() or \
        (tmp_path / "out" / "val" / "a" / "val_0.png").exists()  # name clash of train/a/0 and val/a/0


def test_refuses_an_output_inside_the_source(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "src")
    with pytest.raises(DoctorError, match="inside the source"):
        split_classify_dataset(root, root / "out")


def test_cli(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "src")
    result = CliRunner().invoke(app, ["split", str(root), "--out", str(tmp_path / "out"), "--ratios", "0.6,0.2,0.2"])
    assert result.exit_code == 0, result.output
    assert "task: classify" in result.output and "1 group(s) of duplicate images" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == \
        ["test", "train", "val"]
