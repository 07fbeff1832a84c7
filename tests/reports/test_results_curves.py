"""results.csv read by column name in our layout and in Ultralytics' (YOLOv8+, YOLOv5); other layouts skipped."""

from __future__ import annotations

import pytest

from dataset_doctor.errors import DoctorError
from reports.results_curves import read_results_curves
from trainer import run_dir as files

ULTRALYTICS = (
    "                  epoch,      train/box_loss,      train/cls_loss,      train/dfl_loss,   metrics/precision(B),"
    "      metrics/recall(B),       metrics/mAP50(B),    metrics/mAP50-95(B),        val/box_loss,        "
    "val/cls_loss,        val/dfl_loss,              lr/pg0,              lr/pg1,              lr/pg2\n"
    "                      1,              1.5302,              2.8731,              1.2214,                0.4213,"
    "                0.3124,                0.2911,                0.1502,              1.4,              2.1,"
    "              1.1,            0.00332,            0.00332,            0.00332\n"
    "                      2,              1.3107,              2.1058,              1.1502,                0.5561,"
    "                0.4470,                0.4402,                0.2521,              1.3,              1.9,"
    "              1.0,            0.00298,            0.00298,            0.00298\n")


def test_ours_is_read_as_the_run_directory_writes_it(tmp_path):
    files.append_results_row(tmp_path, {"epoch": 1, "time_s": 3.0, "box_loss": 2.0, "cls_loss": 3.0, "dfl_loss": 1.5,
                                        "train_map50": 0.2, "train_map50_95": 0.1, "val_map50": 0.15,
                                        "val_map50_95": 0.07})
    files.append_results_row(tmp_path, {"epoch": 2, "time_s": 6.0, "box_loss": 1.8, "cls_loss": 2.5, "dfl_loss": 1.4})
    read = read_results_curves(tmp_path / files.RESULTS_FILE)
    assert read.layout == "doctor" and read.note is None
    assert [row["epoch"] for row in read.rows] == [1, 2]
    assert read.rows[0]["val_map50_95"] == pytest.approx(0.07) and read.rows[0]["train_map50"] == pytest.approx(0.2)
    assert read.rows[1]["val_map50"] is None and read.rows[1]["box_loss"] == pytest.approx(1.8)


def test_ultralytics_columns_are_mapped_by_name_padding_and_all(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(ULTRALYTICS)
    read = read_results_curves(path)
    assert read.layout == "ultralytics" and read.note is None
    first, second = read.rows
    assert first["epoch"] == 1 and second["epoch"] == 2
    assert first["box_loss"] == pytest.approx(1.5302) and second["cls_loss"] == pytest.approx(2.1058)
    assert first["val_map50"] == pytest.approx(0.2911) and second["val_map50_95"] == pytest.approx(0.2521)
    assert first["val_precision"] == pytest.approx(0.4213) and first["lr"] == pytest.approx(0.00332)
    assert "train_map50" not in first  # Ultralytics logs no train mAP


def test_yolov5_epochs_count_from_zero(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("epoch,train/box_loss,train/obj_loss,train/cls_loss,metrics/precision,metrics/recall,"
                    "metrics/mAP_0.5,metrics/mAP_0.5:0.95\n0,0.1,0.05,0.02,0.5,0.4,0.45,0.25\n")
    (row,) = read_results_curves(path).rows
    assert row["epoch"] == 1 and row["val_map50"] == pytest.approx(0.45) and row["val_map50_95"] == 0.25


@pytest.mark.parametrize("text, note", [("step,accuracy\n1,0.5\n", "no 'epoch' column"),
                                        ("epoch,top1,top5\n1,0.5,0.8\n", "no loss or mAP column"),
                                        ("", "is empty"),
                                        ("epoch,box_loss\nlast,0.5\n", "line 2: epoch is not a number")])
def test_unknown_layouts_are_skipped_with_a_note(tmp_path, text, note):
    path = tmp_path / "results.csv"
    path.write_text(text)
    read = read_results_curves(path)
    assert read.rows == [] and note in read.note


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(DoctorError, match="results file not found") as error:
        read_results_curves(tmp_path / "nope.csv")
    assert "nope.csv" in str(error.value)
