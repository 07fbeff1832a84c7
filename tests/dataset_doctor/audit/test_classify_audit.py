"""The classification audit's own checks (tiny-image, color-mode-mix, size-shift, class checks on images) and the
AuditResult it fills for the summary, JSON and report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from dataset_doctor.audit.classify import run_classify_audit
from dataset_doctor.audit.options import AuditOptions
from dataset_doctor.audit.terminal import render_audit
from dataset_doctor.dataset.classify_index import build_classify_index
from tests.tiny_dataset import noise_image, write_class_tree


def _audit(root: Path, **options):
    return run_classify_audit(build_classify_index(root), AuditOptions(**options))


def _found(result) -> set[tuple[str, str | None]]:
    return {(row.check, row.image) for row in result.findings.itertuples()}


def test_tiny_image_threshold(tmp_path: Path) -> None:
    root = write_class_tree(tmp_path / "d", {"train/a/small.png": (20, 40), "train/a/ok.png": (32, 32),
                                             "val/a/v.png": (32, 32)})
    assert ("tiny-image", "train/a/small.png") in _found(_audit(root))
    assert not any(check == "tiny-image" for check, _ in _found(_audit(root)) if _ != "train/a/small.png")
    assert "tiny-image" not in {c for c, _ in _found(_audit(root, tiny_image_px=20))}


def test_color_mode_mix_reports_the_minority(tmp_path: Path) -> None:
    files = {f"train/a/rgb{i}.png": (32, 32) for i in range(3)}
    files["train/a/gray.png"] = noise_image("g", (32, 32))[..., 0]
    files["val/a/v.png"] = (32, 32)
    result = _audit(write_class_tree(tmp_path / "d", files))
    mix = result.findings[result.findings["check"] == "color-mode-mix"]
    assert mix["image"].tolist() == ["train/a/gray.png"]
    assert "grayscale image among 3 RGB" in mix["message"].iloc[0]


def test_size_shift_between_train_and_val(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    files = {}
    for i in range(16):
        files[f"train/a/t{i}.png"] = (int(rng.integers(30, 36)), 32)
        files[f"val/a/v{i}.png"] = (int(rng.integers(60, 66)), 64)
        files[f"train/b/t{i}.png"] = (32, 32)
        files[f"val/b/v{i}.png"] = (32, 32)
    result = _audit(write_class_tree(tmp_path / "d", files), min_instances=1)
    shift = result.findings[result.findings["check"] == "size-shift"]
    assert len(shift) == 1 and "class 'a'" in shift["message"].iloc[0]
    row = result.scale_shift.set_index("class").loc["a"]
    assert row["flagged"] and 1.8 < row["side_ratio"] < 2.1
    assert not result.scale_shift.set_index("class").loc["b", "flagged"]


def test_class_checks_count_images(tmp_path: Path) -> None:
    files = {f"train/common/c{i}.png": (32, 32) for i in range(12)}
    files["train/rare/r.png"] = (32, 32)
    files["val/common/v.png"] = (32, 32)
    files["val/onlyval/o.png"] = (32, 32)
    result = _audit(write_class_tree(tmp_path / "d", files), min_instances=5)
    messages = result.findings.groupby("check")["message"].apply(list).to_dict()
    assert messages["unused-class"] == ["class 'onlyval' (id 1) has a folder but no readable train image: the model "
                                        "cannot learn it"]
    assert len(messages["missing-in-val"]) == 1 and "'rare' has 1 train images" in messages["missing-in-val"][0]
    assert "12 train images" in messages["class-imbalance"][0] and "12.0x" in messages["class-imbalance"][0]
    assert len(messages["few-instances"]) == 1
    assert result.instances("train") == [12, 0, 1]
    assert result.class_weights.weights[2] > result.class_weights.weights[0]


def test_duplicate_in_another_class_says_a_label_is_wrong(tmp_path: Path) -> None:
    same = noise_image("same", (32, 32))
    root = write_class_tree(tmp_path / "d", {"train/a/x.png": same, "train/b/y.png": same,
                                             "val/a/v.png": (32, 32), "val/b/w.png": (32, 32)})
    duplicate = _audit(root).findings.query("check == 'duplicate-image'")
    assert duplicate["image"].tolist() == ["train/b/y.png"]
    assert "filed as 'b' here and 'a' there: one label is wrong" in duplicate["message"].iloc[0]


def test_result_shape_summary_and_json(classify_sample_root: Path) -> None:
    result = run_classify_audit(build_classify_index(classify_sample_root))
    data = result.to_json_dict()
    assert list(data) == ["task", "dataset", "classes", "splits", "findings", "summary"]
    assert data["task"] == "classify" and data["summary"]["error"] == 1
    assert result.exit_code() == 1
    console = Console(record=True, width=200)
    for part in render_audit(result):
        console.print(part)
    text = console.export_text()
    assert "train: 184 images in class folders (1 unreadable)" in text and "293 images read" in text
    assert "remove or replace the files listed as errors" in text and "doctor fix" not in text


def test_ignore_leaves_checks_out(classify_sample_root: Path) -> None:
    result = run_classify_audit(build_classify_index(classify_sample_root),
                                AuditOptions(ignore={"corrupt-image", "tiny-image", "color-mode-mix"}))
    assert not {"corrupt-image", "tiny-image", "color-mode-mix"} & set(result.findings["check"])
    assert result.exit_code() == 0


def test_a_real_cmyk_jpeg_is_read_detected_and_counted(tmp_path: Path) -> None:
    """A four-component JPEG (Adobe CMYK, as Pillow and print workflows write it) among RGB JPEGs: readable,
    decoded to 3 channels for training, and reported in the colour-mode mix with grayscale and RGBA."""
    import io
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from dataset_doctor.cli import app
    from trainer.data.classify_dataset import ClassifyAugment, ClassifyDataset

    cmyk = io.BytesIO()
    Image.fromarray(noise_image("cmyk", (48, 40))).convert("CMYK").save(cmyk, "JPEG", quality=90)
    assert cmyk.getvalue()[:2] == b"\xff\xd8" and Image.open(io.BytesIO(cmyk.getvalue())).mode == "CMYK"
    files = {f"train/a/rgb{i}.jpg": (48, 40) for i in range(4)}
    files.update({"train/a/print.jpg": cmyk.getvalue(), "train/a/gray.jpg": noise_image("g", (48, 40))[..., 0],
                  "train/a/alpha.png": np.dstack([noise_image("r", (48, 40)), np.full((40, 48), 255, np.uint8)]),
                  "val/a/v.jpg": (48, 40)})
    root = write_class_tree(tmp_path / "d", files)

    index = build_classify_index(root)
    colors = dict(zip(index.images["image"], index.images["color"]))
    assert colors["train/a/print.jpg"] == "cmyk" and colors["train/a/gray.jpg"] == "gray"
    assert colors["train/a/alpha.png"] == "rgba" and colors["train/a/rgb0.jpg"] == "rgb"
    assert index.images.set_index("image").loc["train/a/print.jpg", "readable"]
    image, _ = ClassifyDataset([str(root / "train/a/print.jpg")], [0], ClassifyAugment(32))[0]
    assert tuple(image.shape) == (3, 32, 32)

    result = CliRunner().invoke(app, ["audit", str(root), "--no-html", "--min-instances", "1",
                                      "--json", str(tmp_path / "a.json")])
    assert result.exit_code == 0, result.output  # warnings only
    mix = {f["image"]: f["message"] for f in json.loads((tmp_path / "a.json").read_text())["findings"]
           if f["check"] == "color-mode-mix"}
    assert mix == {"train/a/print.jpg": "CMYK image among 4 RGB ones of train",
                   "train/a/gray.jpg": "grayscale image among 4 RGB ones of train",
                   "train/a/alpha.png": "RGBA image among 4 RGB ones of train"}
    assert "3 images in a colour mode (grayscale, RGBA, CMYK...)" in " ".join(result.output.split())
