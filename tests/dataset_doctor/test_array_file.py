"""The caches' file format: arrays come back exactly and writable; damage of any kind is a ValueError."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from dataset_doctor.array_file import MAGIC, read_arrays, write_arrays

ARRAYS = {
    "scalar": np.array(7, dtype=np.int64), "matrix": np.arange(12.0).reshape(3, 4),
    "transposed": np.arange(12, dtype=np.int32).reshape(3, 4).T, "flags": np.array([True, False, True]),
    "empty": np.zeros((0, 8)), "text": np.frombuffer("héllo\0x".encode(), dtype=np.uint8),
}


def write(path, arrays=ARRAYS):
    with open(path, "wb") as handle:
        write_arrays(handle, arrays)
    return path


def test_every_array_comes_back_exactly_and_writable(tmp_path):
    back = read_arrays(write(tmp_path / "a"))
    assert list(back) == list(ARRAYS)
    for name, array in ARRAYS.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape, name
        np.testing.assert_array_equal(back[name], array)
    back["matrix"][0, 0] = -1.0  # a writable view, as np.load gave
    assert all(back[name].ctypes.data % 8 == 0 for name in back)  # aligned


def test_objects_and_strings_are_refused(tmp_path):
    for array in (np.array(["a"], dtype=object), np.array(["a"]), np.array([b"a"])):
        with open(tmp_path / "b", "wb") as handle, pytest.raises(ValueError):
            write_arrays(handle, {"x": array})


def test_any_flipped_byte_or_cut_is_an_error(tmp_path):
    good = write(tmp_path / "a").read_bytes()
    header = len(MAGIC) + 12
    positions = list(range(header + 8)) + list(range(header, len(good), max(1, len(good) // 97)))
    for position in positions:
        for bit in (0x01, 0x40):
            damaged = bytearray(good)
            damaged[position] ^= bit
            (tmp_path / "d").write_bytes(bytes(damaged))
            with pytest.raises(ValueError):
                read_arrays(tmp_path / "d")
    for size in (0, 10, len(MAGIC) + 5, len(good) // 2, len(good) - 1):
        (tmp_path / "d").write_bytes(good[:size])
        with pytest.raises(ValueError):
            read_arrays(tmp_path / "d")
    (tmp_path / "d").write_bytes(good + b"\0")
    with pytest.raises(ValueError):
        read_arrays(tmp_path / "d")


def forge(path, entries, data: bytes):
    """A file whose checksum is right for whatever its table of contents says."""
    contents = json.dumps(entries).encode()
    contents += b" " * (-(len(MAGIC) + 12 + len(contents)) % 64)
    crc = zlib.crc32(contents + data, zlib.crc32(struct.pack("<Q", len(contents))))
    path.write_bytes(MAGIC + struct.pack("<QI", len(contents), crc) + contents + data)
    return path


def test_a_table_of_contents_that_lies_is_refused_even_with_a_valid_checksum(tmp_path):
    np.testing.assert_array_equal(read_arrays(forge(tmp_path / "ok", [["x", "<f8", [1], 0, 8]], bytes(8)))["x"], [0])
    for entries in ([["x", "|O", [1], 0, 8]], [["x", "<f8", [2], 0, 8]], [["x", "<f8", [1], 10**9, 8]],
                    [["x", "<f8", [-1], 0, -8]], [["x", "<f8", [1], -8, 8]], [["x", "<f8", "1", 0, 8]],
                    ["nonsense"], {"x": 1}):
        with pytest.raises(ValueError):
            read_arrays(forge(tmp_path / "lie", entries, bytes(8)))
