"""Hand-made inputs of `doctor diagnose`: a dataset and train/val predictions with a known outcome per class
(one fine, one high on train and low on val, one low on both). Used by tests/reports and tests/cli."""

from __future__ import annotations

from pathlib import Path

HOSTILE = '<img src=x onerror="document.title=1">'
NAMES = ["steady", "memorised", HOSTILE]
IMAGES = 24
BOXES = {0: (0.2, 0.3, 0.2, 0.3), 1: (0.5, 0.3, 0.2, 0.3), 2: (0.8, 0.7, 0.2, 0.3)}  # class -> cx cy w h
ELSEWHERE = (0.5, 0.85, 0.1, 0.1)  # a box overlapping none of the labels


def _line(cls: int, box: tuple[float, ...], conf: float | None = None) -> str:
    return " ".join([str(cls), *(f"{v:.4f}" for v in box), *([f"{conf:.3f}"] if conf is not None else [])]) + "\n"


def _predictions(folder: Path, split: str, memorised_found: bool) -> Path:
    """Class 0 found everywhere; class 1 found only when memorised_found; class 2 found on 1 image in 6."""
    folder.mkdir(parents=True)
    for i in range(IMAGES):
        lines = [_line(0, BOXES[0], 0.9)]
        lines.append(_line(1, BOXES[1] if memorised_found else ELSEWHERE, 0.9))
        lines.append(_line(2, BOXES[2] if i % 6 == 0 else ELSEWHERE, 0.5))
        (folder / f"{split}{i}.txt").write_text("".join(lines))
    return folder


def write_predicted(make_dataset, tmp_path: Path) -> tuple[Path, Path, Path]:
    """data.yaml of 24 train and 24 val images with one box of each class, and both prediction folders."""
    labels = "".join(_line(cls, box) for cls, box in BOXES.items())
    data = make_dataset({split: {f"{split}{i}.png": labels for i in range(IMAGES)} for split in ("train", "val")},
                        names=NAMES)
    train = _predictions(tmp_path / "preds" / "train", "train", memorised_found=True)
    val = _predictions(tmp_path / "preds" / "val", "val", memorised_found=False)
    return data, train, val
