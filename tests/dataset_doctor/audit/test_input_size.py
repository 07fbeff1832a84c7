"""The input size a dataset needs: per-class shares of boxes under 8 / 16 px, and the suggested --imgsz."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dataset_doctor.audit.input_size import input_size_table, suggest_imgsz
from dataset_doctor.audit.priorities import next_steps
from dataset_doctor.cli import app
from tests.dataset_doctor.audit_helpers import audit


def _tiny_box_dataset(make_dataset):
    """128 x 128 images: 'dot' boxes 6.4 px (half of them) or 12.8 px on a side, 'car' boxes 51 px."""
    train = {}
    for number in range(8):
        side = 0.05 if number % 2 else 0.1
        train[f"t{number}.jpg"] = (f"0 0.25 0.25 {side} {side}\n0 0.75 0.25 0.05 0.05\n1 0.5 0.7 0.4 0.4\n")
    return make_dataset({"train": train, "val": {"v.jpg": "0 0.5 0.5 0.05 0.05\n1 0.5 0.5 0.4 0.4\n"}},
                        names=["dot", "car"], size=(128, 128))


def test_shares_under_8_and_16_px_and_the_suggested_imgsz(make_dataset):
    result = audit(_tiny_box_dataset(make_dataset), imgsz=128)
    table = input_size_table(result.box_geometry, result.classes).set_index("class")
    # dot: 12 boxes of 6.4 px, 4 of 12.8 px
    assert table.at["dot", "boxes"] == 16 and table.at["dot", "under_8"] == pytest.approx(12 / 16)
    assert table.at["dot", "under_16"] == pytest.approx(1.0) and table.at["dot", "median_side"] == pytest.approx(6.4)
    assert table.at["car", "under_16"] == 0 and table.at["car", "median_side"] == pytest.approx(51.2)
    advice = suggest_imgsz(input_size_table(result.box_geometry, result.classes), 128)
    # 128 * 16 / 6.4 = 320, a multiple of 32; cost (320 / 128)^2 = 6.25x
    assert advice.suggested == 320 and advice.small_classes == ["dot"]
    assert advice.reached_median == pytest.approx(16.0) and advice.flops_factor == pytest.approx(6.25)
    step = next(step for step in next_steps(result) if step.text.startswith("Small objects"))
    assert step.command.endswith("--imgsz 320")
    assert "'dot': 6.4 px, 75% of its boxes under 8 px, 100% under 16 px" in step.text and "6.2x the FLOPs" in step.text
    # at the suggested size the advice is gone
    assert suggest_imgsz(input_size_table(audit(result.dataset, imgsz=320).box_geometry, result.classes),
                         320) is None


def test_the_terminal_summary_says_it_and_large_boxes_need_nothing(make_dataset):
    data_yaml = _tiny_box_dataset(make_dataset)
    output = CliRunner().invoke(app, ["audit", str(data_yaml), "--no-html", "--imgsz", "128"],
                                terminal_width=400).output
    assert "input size:" in output and "--imgsz 320" in output
    output = CliRunner().invoke(app, ["audit", str(data_yaml), "--no-html", "--imgsz", "640"],
                                terminal_width=400).output
    assert "input size:" not in output
