"""`doctor evaluate`: metrics on a tiny dataset, JSON shape, pycocotools agreement end to end, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dataset_doctor.cli import app
from dataset_doctor.dataset.index import build_index
from tests.coco_reference import coco_bbox_evaluation
from trainer.evaluation.dataset import split_ground_truth

runner = CliRunner()

VAL = {
    "a.jpg": "0 0.5 0.5 0.25 0.5\n1 0.2 0.3 0.1 0.2\n",
    "b.jpg": "1 0.6 0.6 0.3 0.3\n",
    "c.jpg": None,  # background
    "d.jpg": "5 0.5 0.5 0.2 0.2\n",  # class out of range: not a usable box, so not ground truth
}
PREDICTIONS = {
    "a.txt": "0 0.5 0.5 0.25 0.5 0.9\n1 0.2 0.3 0.1 0.2 0.8\n",  # both right
    # b.txt missing: its dog is not detected
    "c.txt": "0 0.1 0.1 0.1 0.1 0.3\n",  # a false cat, ranked below the true one
    "zzz.txt": "0 0.5 0.5 0.2 0.2 0.9\n",  # named after no image
}


def doctor(*args: object):
    return runner.invoke(app, [str(arg) for arg in args])


def write_predictions(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


@pytest.fixture
def tiny(make_dataset, tmp_path: Path) -> tuple[Path, Path]:
    data_yaml = make_dataset({"train": {"t.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": VAL}, names=["cat", "dog"])
    return data_yaml, write_predictions(tmp_path / "predictions", PREDICTIONS)


def test_evaluates_and_writes_the_documented_json(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    data_yaml, predictions = tiny
    out = tmp_path / "out" / "metrics.json"
    result = doctor("evaluate", data_yaml, "--predictions", predictions, "--split", "val", "--json", out)
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    dog_ap = 51 / 101  # one of two dogs found: precision 1 up to recall 0.5
    assert document["map50"] == pytest.approx((1 + dog_ap) / 2, abs=1e-9)
    assert document["map50_95"] == pytest.approx((1 + dog_ap) / 2, abs=1e-9)
    assert document["per_class"] == [
        {"class": "cat", "instances": 1, "precision": 1.0, "recall": 1.0, "ap50": pytest.approx(1.0),
         "ap50_95": pytest.approx(1.0)},
        {"class": "dog", "instances": 2, "precision": 1.0, "recall": 0.5, "ap50": pytest.approx(dog_ap),
         "ap50_95": pytest.approx(dog_ap)},
    ]
    lines = result.stdout.splitlines()
    dog_row = next(i for i, line in enumerate(lines) if "│ dog" in line)
    cat_row = next(i for i, line in enumerate(lines) if "│ cat" in line)
    all_row = next(i for i, line in enumerate(lines) if "│ all" in line)
    assert dog_row < cat_row < all_row  # worst class first, the overall line last
    assert "0.752" in lines[all_row]  # mAP50 (1 + 51/101) / 2
    assert "zzz.txt" in result.stderr and "warning" in result.stderr


def test_json_to_stdout(tiny: tuple[Path, Path]) -> None:
    data_yaml, predictions = tiny
    result = doctor("evaluate", data_yaml, "--predictions", predictions, "--json", "-")
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"map50", "map50_95", "per_class"}  # the table went to stderr


def test_malformed_prediction_is_a_one_line_error_naming_file_and_line(tiny: tuple[Path, Path]) -> None:
    data_yaml, predictions = tiny
    (predictions / "a.txt").write_text("0 0.5 0.5 0.25 0.5 0.9\n1 0.2 0.3 0.1\n")
    result = doctor("evaluate", data_yaml, "--predictions", predictions)
    assert result.exit_code == 2
    message = [line for line in result.output.splitlines() if line.strip()]
    assert len(message) == 1 and "a.txt:2:" in message[0] and "expected 6" in message[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("arguments", "expected"), [
    (["--split", "test"], "no 'test' split"),
    (["--predictions", "nowhere"], "predictions directory not found"),
])
def test_bad_usage_exits_2(tiny: tuple[Path, Path], tmp_path: Path, arguments: list[str], expected: str) -> None:
    data_yaml, predictions = tiny
    options = ["--predictions", str(predictions), *arguments]
    if "nowhere" in arguments:
        options = ["--predictions", str(tmp_path / "nowhere")]
    result = doctor("evaluate", data_yaml, *options)
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output


def test_split_without_boxes_exits_2(make_dataset, tmp_path: Path) -> None:
    data_yaml = make_dataset({"train": {"t.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": {"v.jpg": None}})
    result = doctor("evaluate", data_yaml, "--predictions", write_predictions(tmp_path / "p", {}))
    assert result.exit_code == 2 and "no usable ground-truth boxes" in result.output


def test_images_sharing_a_name_cannot_be_matched(make_dataset, tmp_path: Path) -> None:
    data_yaml = make_dataset({"train": {"t.jpg": "0 0.5 0.5 0.2 0.2\n"},
                              "val": {"day/a.jpg": None, "night/a.jpg": None}})
    result = doctor("evaluate", data_yaml, "--predictions", write_predictions(tmp_path / "p", {}))
    assert result.exit_code == 2 and "share the name 'a'" in result.output


def test_ground_truth_in_pixels_from_the_index(make_dataset) -> None:
    data_yaml = make_dataset({"train": {"t.jpg": "0 0.5 0.5 0.2 0.2\n"},
                              "val": {"w.jpg": ("1 0.5 0.25 0.5 0.5\n", (200, 100)), "e.jpg": None}})
    truth = split_ground_truth(build_index(data_yaml, progress=False), "val")
    by_stem = dict(zip(truth.images["stem"], truth.boxes))
    np.testing.assert_allclose(by_stem["w"], [[50, 0, 150, 50, 1]])  # 200 x 100 image
    assert by_stem["e"].shape == (0, 5)


def test_agrees_with_pycocotools_end_to_end(make_dataset, tmp_path: Path) -> None:
    """Labels and predictions as files on images of different sizes, through the CLI, against pycocotools."""
    rng = np.random.default_rng(3)
    val, predicted, sizes = {}, {}, {}
    for i in range(14):
        size = (int(rng.integers(60, 200)), int(rng.integers(60, 200)))
        boxes = np.column_stack([rng.integers(0, 3, 4), rng.uniform(0.2, 0.8, (4, 2)), rng.uniform(0.05, 0.3, (4, 2))])
        boxes = boxes[: rng.integers(0, 5)]
        val[f"im{i}.jpg"] = ("".join(f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in boxes), size)
        sizes[f"im{i}"] = size
        found = boxes + np.column_stack([np.zeros(len(boxes)), rng.normal(0, 0.02, (len(boxes), 4))])
        found[:, 0] = np.where(rng.random(len(boxes)) < 0.15, rng.integers(0, 3, len(boxes)), found[:, 0])
        found = np.vstack([found, [[rng.integers(0, 3), 0.5, 0.5, 0.2, 0.2]]])
        predicted[f"im{i}.txt"] = "".join(f"{int(c)} {x:.6f} {y:.6f} {abs(w):.6f} {abs(h):.6f} {s:.3f}\n"
                                          for (c, x, y, w, h), s in zip(found, rng.random(len(found))))
    data_yaml = make_dataset({"train": {"t.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": val}, names=["a", "b", "c"])
    predictions = write_predictions(tmp_path / "p", predicted)
    out = tmp_path / "metrics.json"
    assert doctor("evaluate", data_yaml, "--predictions", predictions, "--json", out).exit_code == 0
    document = json.loads(out.read_text())

    assert 0.1 < document["map50_95"] < 0.9  # neither trivially perfect nor empty
    reference = _pycocotools_on_files(data_yaml.parent / "labels" / "val", predictions, sizes, 3)
    assert document["map50_95"] == pytest.approx(reference[0], abs=1e-3)
    assert document["map50"] == pytest.approx(reference[1], abs=1e-3)


def _pycocotools_on_files(labels: Path, predictions: Path, sizes: dict[str, tuple[int, int]],
                          num_classes: int) -> tuple[float, float]:
    images, annotations, detections = [], [], []
    for image_id, (stem, (width, height)) in enumerate(sorted(sizes.items()), start=1):
        images.append({"id": image_id, "width": width, "height": height})
        for kind, folder in (("truth", labels), ("found", predictions)):
            path = folder / f"{stem}.txt"
            for line in path.read_text().splitlines() if path.exists() else []:
                values = [float(v) for v in line.split()]
                c, x, y, w, h = values[:5]
                box = [(x - w / 2) * width, (y - h / 2) * height, w * width, h * height]
                if kind == "truth":
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(c) + 1,
                                        "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
                else:
                    detections.append({"image_id": image_id, "category_id": int(c) + 1, "bbox": box,
                                       "score": values[5]})
    evaluation = coco_bbox_evaluation(images, annotations, detections, num_classes)
    return evaluation.stats[0], evaluation.stats[1]
