"""Reading YOLO txt prediction files: the format, missing files, and one-line errors naming file:line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dataset_doctor.dataset.predictions import read_prediction_dir, read_prediction_file
from dataset_doctor.errors import DoctorError


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_reads_values_with_crlf_blank_lines_exponents_and_a_bom(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "\ufeff1 0.5 0.5 0.2 0.3 0.9\r\n\n  0 5e-1 0.25 0.1 0.1 1e-2 \n")
    np.testing.assert_array_equal(read_prediction_file(path, num_classes=2),
                                  [[1, 0.5, 0.5, 0.2, 0.3, 0.9], [0, 0.5, 0.25, 0.1, 0.1, 0.01]])


def test_empty_file_means_no_detections(tmp_path: Path) -> None:
    assert read_prediction_file(write(tmp_path / "a.txt", "\n \n"), num_classes=2).shape == (0, 6)


@pytest.mark.parametrize(("text", "message"), [
    ("0 0.5 0.5 0.2 0.2 0.9\n0 0.5 0.5 0.2 0.2\n", "5 values, expected 6 (class cx cy w h confidence): no confidence"),
    ("0 0.5 0.5 0.2 0.2 0.9 7\n", "7 values, expected 6"),
    ("0 0.5 abc 0.2 0.2 0.9\n", "cy is not a finite number: 'abc'"),
    ("0 0.5 0.5 0.2 0.2 nan\n", "confidence is not a finite number: 'nan'"),
    ("0 0.5 0.5 1_0 0.2 0.9\n", "w is not a finite number"),
    ("2 0.5 0.5 0.2 0.2 0.9\n", "class '2' is not an integer in 0..1"),
    ("0.5 0.5 0.5 0.2 0.2 0.9\n", "class '0.5' is not an integer"),
    ("0 0.5 0.5 -0.2 0.2 0.9\n", "negative width or height"),
    ("0 320 240 50 40 0.9\n", "normalized to 0-1"),
])
def test_malformed_lines_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "a.txt", text)
    with pytest.raises(DoctorError) as caught:
        read_prediction_file(path, num_classes=2)
    line = 2 if text.count("\n") == 2 else 1
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_binary_garbage_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", b"0 0.5 0.5 0.2 0.2 0.9\n\xff\xfe\x00\n")
    with pytest.raises(DoctorError, match=r"a\.txt:2: not UTF-8"):
        read_prediction_file(path, num_classes=2)


def test_directory_matches_files_to_images_by_stem(tmp_path: Path) -> None:
    write(tmp_path / "p" / "img1.txt", "0 0.5 0.5 0.2 0.2 0.9\n")
    write(tmp_path / "p" / "img.v2.txt", "1 0.5 0.5 0.2 0.2 0.8\n1 0.1 0.1 0.1 0.1 0.7\n")
    write(tmp_path / "p" / "stray.txt", "0 0.5 0.5 0.2 0.2 0.9\n")
    files = read_prediction_dir(tmp_path / "p", ["img1", "img.v2", "img3"], num_classes=2)
    assert [len(rows) for rows in files.per_image] == [1, 2, 0]  # img3 has no file: no detections
    assert files.files_read == 2 and files.unmatched == ["stray.txt"]


def test_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(DoctorError, match="predictions directory not found"):
        read_prediction_dir(tmp_path / "nowhere", ["a"], 2)
    write(tmp_path / "wrong" / "x.txt", "0 0.5 0.5 0.2 0.2 0.9\n")
    with pytest.raises(DoctorError, match="none of the 1 prediction files is named after an image"):
        read_prediction_dir(tmp_path / "wrong", ["a"], 2)
    write(tmp_path / "run" / "labels" / "a.txt", "0 0.5 0.5 0.2 0.2 0.9\n")  # Ultralytics predict's layout
    with pytest.raises(DoctorError, match="pass --predictions .*labels"):
        read_prediction_dir(tmp_path / "run", ["a"], 2)
    (tmp_path / "empty").mkdir()  # a model that found nothing anywhere writes no files: allowed
    assert read_prediction_dir(tmp_path / "empty", ["a"], 2).files_read == 0
