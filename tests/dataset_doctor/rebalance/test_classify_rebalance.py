"""doctor rebalance on folder-per-class data: rare classes raised to the target with augmented copies (at most
max_copies per image), val copied unchanged, the source untouched, deterministic."""

from __future__ import annotations

import csv
from pathlib import Path

from typer.testing import CliRunner

from dataset_doctor.cli import app
from dataset_doctor.dataset.classify_index import build_classify_index
from dataset_doctor.rebalance.classify import plan_classify, rebalance_classify
from tests.hostile import tree_digest
from tests.tiny_dataset import write_class_tree


def _dataset(root: Path) -> Path:
    files = {f"train/common/{i}.png": (48, 40) for i in range(6)}
    files.update({"train/rare/0.png": (48, 40), "train/rare/1.png": (40, 48), "val/rare/v.png": (48, 40),
                  "val/common/v.png": (48, 40)})
    return write_class_tree(root, files)


def test_rare_class_raised_val_untouched(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "src")
    before = tree_digest(root)
    result = rebalance_classify(root, tmp_path / "out", target=5, seed=0, max_copies=10)
    assert tree_digest(root) == before
    assert result.before == [6, 2] and result.after == [6, 5] and result.written == 3
    out = build_classify_index(tmp_path / "out")
    assert out.counts("train").tolist() == [6, 5] and out.counts("val").tolist() == [1, 1]
    assert (tmp_path / "out" / "val" / "rare" / "v.png").read_bytes() == (root / "val" / "rare" / "v.png").read_bytes()
    with open(tmp_path / "out" / "rebalance_manifest.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["source"] for row in rows] == ["train/rare/0.png", "train/rare/1.png", "train/rare/0.png"]
    assert all(row["transform"] and row["transform"] != "none" for row in rows)
    again = rebalance_classify(root, tmp_path / "again", target=5, seed=0)
    assert again.after == result.after
    assert (tmp_path / "again" / "train" / "rare" / "0_aug0.jpg").read_bytes() == \
        (tmp_path / "out" / "train" / "rare" / "0_aug0.jpg").read_bytes()


def test_max_copies_caps_and_cli(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "src")
    result = CliRunner().invoke(app, ["rebalance", str(root), "--target", "50", "--max-copies", "1",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "task: classify" in result.output and "8 augmented images written" in result.output
    refused = CliRunner().invoke(app, ["rebalance", str(root), "--target", "5", "--out", str(root / "inside")])
    assert refused.exit_code == 2 and "inside the source" in refused.output


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "src")
    before = tree_digest(tmp_path)
    result = CliRunner().invoke(app, ["rebalance", str(root), "--target", "5", "--max-copies", "1", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert tree_digest(tmp_path) == before
    cells = [line.replace("│", " ").split() for line in result.output.splitlines()]
    rows = {cell[0]: cell[1:] for cell in cells if cell and cell[0] in ("common", "rare")}
    assert rows == {"common": ["6", "6"], "rare": ["2", "4"]}  # two sources, one copy each
    assert "2 augmented images would be written; nothing written" in result.output
    plan = plan_classify(root, target=5, max_copies=10)
    assert (plan.before, plan.after, plan.written) == ([6, 2], [6, 5], 3)
    assert plan.after == rebalance_classify(root, tmp_path / "out", target=5, max_copies=10).after
