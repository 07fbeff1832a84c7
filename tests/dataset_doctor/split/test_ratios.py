"""--ratios parsing: named splits, a zero test dropped, one-line errors for everything else."""

from __future__ import annotations

import pytest

from dataset_doctor.errors import DoctorError
from dataset_doctor.split.ratios import parse_ratios


@pytest.mark.parametrize(("text", "expected"), [
    ("0.8,0.2", {"train": 0.8, "val": 0.2}),
    ("0.7,0.2,0.1", {"train": 0.7, "val": 0.2, "test": 0.1}),
    (" 0.7 , 0.2 , 0.1 ", {"train": 0.7, "val": 0.2, "test": 0.1}),
    ("0.8,0.2,0", {"train": 0.8, "val": 0.2}),
    ("0.8,0.2,0.0", {"train": 0.8, "val": 0.2}),
    ([0.5, 0.5], {"train": 0.5, "val": 0.5}),
])
def test_valid_ratios(text, expected) -> None:
    assert parse_ratios(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("0.8,0.3", "must sum to 1"),
    ("0.6,0.2,0.1", "must sum to 1"),
    ("1.0", "2 or 3 numbers"),
    ("0.5,0.2,0.2,0.1", "2 or 3 numbers"),
    ("0.8,abc", "not a number"),
    ("0.8,,0.2", "empty value"),
    ("1,0", "val ratio must be above 0"),
    ("0,1", "train ratio must be above 0"),
    ("1.2,-0.2", "between 0 and 1"),
    ("0.5,nan", "between 0 and 1"),
])
def test_invalid_ratios_give_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(DoctorError, match=message) as error:
        parse_ratios(text)
    assert "\n" not in str(error.value)
