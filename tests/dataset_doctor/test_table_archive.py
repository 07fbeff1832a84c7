"""Tables through array files without pickle: every dtype the audit's tables use comes back exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataset_doctor.array_file import read_arrays, write_arrays
from dataset_doctor.table_archive import Unarchivable, decode_table, encode_table


def round_trip(frame: pd.DataFrame, tmp_path) -> pd.DataFrame:
    arrays: dict[str, np.ndarray] = {}
    meta = encode_table(frame, "t", arrays)
    with open(tmp_path / "a.arrays", "wb") as handle:
        write_arrays(handle, arrays)
    return decode_table(meta, "t", read_arrays(tmp_path / "a.arrays"))


def test_every_column_kind_comes_back_with_its_dtype_and_missing_cells(tmp_path):
    frame = pd.DataFrame({
        "i32": np.array([1, -2, 3], dtype=np.int32), "i64": [2**40, 0, -1], "f": [0.1, np.nan, 1e-300],
        "flag": [True, False, True], "line": pd.array([3, None, 7], dtype="Int64"),
        "text": pd.Series(["a", None, "b\u00e9\udcff"], dtype="str"),  # a name that is not UTF-8, as surrogates
        "object": pd.Series(["x", None, float("nan")], dtype=object), "more_f": [1.5, 2.5, 3.5],
    })
    back = round_trip(frame, tmp_path)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert back["object"][1] is None and np.isnan(back["object"][2])  # None and NaN kept apart
    assert back["text"][2] == "b\u00e9\udcff"


def test_empty_tables_keep_their_columns(tmp_path):
    frame = pd.DataFrame({"a": pd.Series([], dtype=np.int64), "b": pd.Series([], dtype="str")})
    pd.testing.assert_frame_equal(round_trip(frame, tmp_path), frame)
    pd.testing.assert_frame_equal(round_trip(pd.DataFrame(), tmp_path), pd.DataFrame(), check_column_type=False)


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"c": pd.Categorical(["a", "b"])}),
    pd.DataFrame({"o": pd.Series(["a", 3], dtype=object)}),
    pd.DataFrame({"a": [1, 2]}, index=[5, 6]),
    pd.DataFrame({"s": pd.Series(["a\0b"], dtype="str")}),
    pd.DataFrame({1: [1.0]}),
])
def test_what_it_cannot_store_exactly_is_refused(frame, tmp_path):
    with pytest.raises(Unarchivable):
        encode_table(frame, "t", {})


def test_a_damaged_archive_is_an_error_not_a_wrong_table(tmp_path):
    frame = pd.DataFrame({"a": [1, 2, 3], "s": pd.Series(["x", "y", "z"], dtype="str")})
    arrays: dict[str, np.ndarray] = {}
    meta = encode_table(frame, "t", arrays)
    arrays["t.<i8"] = arrays["t.<i8"][:2]  # a block shorter than the table
    with pytest.raises(ValueError):
        decode_table(meta, "t", arrays)
    arrays = {}
    meta = encode_table(frame, "t", arrays)
    arrays["t.text"] = arrays["t.text"][:3]  # fewer strings than cells
    with pytest.raises(ValueError):
        decode_table(meta, "t", arrays)
