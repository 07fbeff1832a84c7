"""Label parsing: every valid form of design.md section 1 accepted, every bad line reported, nothing ever raises."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataset_doctor.dataset import labels
from dataset_doctor.dataset.labels import parse_label_bytes, read_label_file


def boxes_of(parsed) -> list[list[float]]:
    return parsed.boxes.tolist()


def test_clean_file_takes_every_line_with_its_number():
    parsed = parse_label_bytes(b"0 0.5 0.5 0.2 0.4\n\n3 0.1 0.2 0.05 0.06\n")
    assert boxes_of(parsed) == [[1, 0, 0.5, 0.5, 0.2, 0.4], [3, 3, 0.1, 0.2, 0.05, 0.06]]
    assert parsed.problems == [] and not parsed.polygon.any() and parsed.nonblank_lines == 2


def test_crlf_spaces_tabs_and_exponents_are_valid():
    parsed = parse_label_bytes(b"  1 5e-1 0.5E0\t2.0e-01 4e-1  \r\n2.0 0.3 0.3 0.1 0.1\r\n")
    assert boxes_of(parsed) == [[1, 1, 0.5, 0.5, 0.2, 0.4], [2, 2, 0.3, 0.3, 0.1, 0.1]]
    assert parsed.problems == []


def test_a_utf8_byte_order_mark_is_not_part_of_line_one():
    for rest in (b"0 0.5 0.5 0.2 0.2\r\n1 0.25 0.25 0.1 0.1\n", b"0 0.5 0.5 0.2 0.2\n1 0.2 0.2 0.3 0.2 0.25 0.3\n",
                 b"0 0.5 0.5 0.2 0.2\nnot a box\n"):
        parsed = parse_label_bytes(b"\xef\xbb\xbf" + rest)
        assert parsed.boxes[0].tolist() == [1, 0, 0.5, 0.5, 0.2, 0.2], rest
        assert [problem[1] for problem in parsed.problems] == ([2] if b"not" in rest else []), parsed.problems


def test_polygon_becomes_its_bounding_box():
    parsed = parse_label_bytes(b"4 0.1 0.2 0.5 0.2 0.3 0.6\n1 0.5 0.5 0.2 0.2\n")
    assert parsed.polygon.tolist() == [True, False]
    line, cls, cx, cy, w, h = parsed.boxes[0]
    assert (line, cls) == (1, 4)
    assert np.allclose([cx, cy, w, h], [0.3, 0.4, 0.4, 0.4])


@pytest.mark.parametrize(("content", "check", "fragment"), [
    (b"0 0.5 0.5 0.2", "malformed-line", "4 values"),
    (b"0 0.5 0.5 0.2 0.2 0.9", "malformed-line", "6 values"),
    (b"0 0.1 0.1 0.2 0.2 0.3 0.3 0.4", "malformed-line", "8 values"),  # even count: not a polygon
    (b"0 0.5 abc 0.2 0.2", "malformed-line", "not a number: 'abc'"),
    (b"0 0.5 0.5 nan 0.2", "malformed-line", "nan or inf"),
    (b"0 inf 0.5 0.2 0.2", "malformed-line", "nan or inf"),
    (b"0 1_0 0.5 0.2 0.2", "malformed-line", "not a number"),  # Python accepts 1_0, label files must not
    (b"0 0x1p-1 0.5 0.2 0.2", "malformed-line", "not a number"),
    (b"\xff\xfe 0.5 0.5 0.2 0.2", "malformed-line", "not UTF-8"),
    (b"2.5 0.5 0.5 0.2 0.2", "class-out-of-range", "not an integer"),
    (b"1e40 0.5 0.5 0.2 0.2", "class-out-of-range", "not an integer"),
])
def test_bad_line_is_reported_with_its_number_and_good_lines_survive(content, check, fragment):
    parsed = parse_label_bytes(b"1 0.5 0.5 0.1 0.1\n" + content + b"\n3 0.2 0.2 0.1 0.1\n")
    assert [row[:2] for row in boxes_of(parsed)] == [[1, 1], [3, 3]]
    assert len(parsed.problems) == 1
    problem_check, line, message = parsed.problems[0]
    assert (problem_check, line) == (check, 2)
    assert fragment in message


def test_out_of_range_values_are_parsed_not_judged():
    """Range checks need nc and a tolerance: they belong to box_rules, not the parser."""
    parsed = parse_label_bytes(b"-1 1.5 0.5 0 -0.2\n")
    assert boxes_of(parsed) == [[1, -1, 1.5, 0.5, 0, -0.2]] and parsed.problems == []


def test_integer_valued_float_class_is_accepted():
    assert boxes_of(parse_label_bytes(b"3.0 0.5 0.5 0.1 0.1"))[0][1] == 3


def test_empty_and_blank_files_are_backgrounds():
    for content in (b"", b"\n\n", b"  \r\n\t\n"):
        parsed = parse_label_bytes(content)
        assert parsed.boxes.shape == (0, 6) and parsed.problems == [] and parsed.nonblank_lines == 0


def test_missing_and_unreadable_label_files(tmp_path):
    assert read_label_file(tmp_path / "missing.txt") == (None, None)
    directory = tmp_path / "actually_a_dir.txt"
    directory.mkdir()
    parsed, error = read_label_file(directory)
    assert parsed is None and "cannot read label file" in error


def test_huge_file_is_cut_with_a_problem(tmp_path, monkeypatch):
    monkeypatch.setattr(labels, "MAX_LABEL_BYTES", 1000)
    path = tmp_path / "big.txt"
    path.write_bytes(b"0 0.5 0.5 0.1 0.1\n" * 200)
    parsed, error = read_label_file(path)
    assert error is None
    assert len(parsed.boxes) == 1000 // 18  # whole lines within the first 1000 bytes
    assert any("larger than" in message for _, _, message in parsed.problems)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise_and_every_problem_has_a_real_line(data):
    parsed = parse_label_bytes(data)
    line_count = data.count(b"\n") + 1
    assert parsed.boxes.shape[1] == 6 and len(parsed.polygon) == len(parsed.boxes)
    assert np.isfinite(parsed.boxes).all()
    for check, line, message in parsed.problems:
        assert check in ("malformed-line", "class-out-of-range") and 1 <= line <= line_count and message
    assert len(parsed.boxes) + len(parsed.problems) == parsed.nonblank_lines


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["0", "1", "0.5", "1e-1", "nan", "x", "-2", "3.5", ""]),
                         min_size=0, max_size=9), max_size=20),
       st.sampled_from(["\n", "\r\n"]))
def test_text_like_files_match_a_line_by_line_reading(rows, newline):
    """The vectorised fast path and the per-line path must agree on what each line is."""
    text = newline.join(" ".join(fields) for fields in rows)
    parsed = parse_label_bytes(text.encode())
    expected_boxes, expected_problems = 0, 0
    for fields in rows:
        fields = [f for f in fields if f]
        if not fields:
            continue
        ok_count = len(fields) == 5 or (len(fields) >= 7 and len(fields) % 2 == 1)
        numbers = [float(f) for f in fields if f != "x"]
        ok = ok_count and "x" not in fields and all(np.isfinite(numbers)) and float(fields[0]).is_integer()
        expected_boxes += ok
        expected_problems += not ok
    assert (len(parsed.boxes), len(parsed.problems)) == (expected_boxes, expected_problems)
