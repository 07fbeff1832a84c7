"""Named NumPy arrays in one flat file, read with one read and no copy per array: what the caches are stored in.

Reading a `.npz` (a zip of `.npy` files) costs member headers, two copies of each array and zip bookkeeping: on
the 10k replica's index cache `load_scan` went from 15-19 to 12-15 ms with this format (bench/README.md). It is a
magic line, the length of a JSON table of contents (name, dtype, shape, offset, length), a CRC-32 of that
length, the table and the data, then the table, then each array's bytes at a 64-byte aligned offset. Reading
takes the file in one `readinto` and gives each array as a writable view of that buffer. Only numeric and
boolean dtypes are accepted, so loading a file never runs code or builds Python objects; every entry is
checked against the file's length and the checksum catches damage, so a damaged or cut file is a ValueError.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAGIC = b"dataset-doctor arrays 1\n"
_SIZES = struct.Struct("<QI")  # table-of-contents length, CRC-32 of that length, the table and the data
_LENGTH = struct.Struct("<Q")
_ALIGN = 64
_MAX_CONTENTS_BYTES = 16 * 2**20
_KINDS = "biuf"  # booleans, signed and unsigned integers, floats


def write_arrays(handle: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` to an open binary file."""
    entries, chunks, offset = [], [], 0
    for name, array in arrays.items():
        array = np.asarray(array)
        if not array.flags.c_contiguous:  # (np.ascontiguousarray would make a 0-d array 1-d)
            array = array.copy(order="C")
        if array.dtype.kind not in _KINDS:
            raise ValueError(f"{name}: dtype {array.dtype} is not stored (numbers and booleans only)")
        padding = -offset % _ALIGN
        chunks.append(bytes(padding))
        offset += padding
        data = array.tobytes()
        entries.append([name, array.dtype.str, list(array.shape), offset, len(data)])
        chunks.append(data)
        offset += len(data)
    contents = json.dumps(entries).encode("utf-8")
    contents += b" " * (-(len(MAGIC) + _SIZES.size + len(contents)) % _ALIGN)  # data starts aligned
    handle.write(MAGIC + _SIZES.pack(len(contents), _checksum(len(contents), [contents, *chunks])) + contents)
    for chunk in chunks:
        handle.write(chunk)


def _checksum(contents_size: int, parts: list) -> int:
    """CRC-32 of the table-of-contents length and then `parts` (the table and the data, in file order)."""
    crc = zlib.crc32(_LENGTH.pack(contents_size))
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays write_arrays stored, as writable views of one buffer; ValueError when the file is not one
    intact such file, OSError when it cannot be read."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        buffer = bytearray(size)
        if handle.readinto(buffer) != size or handle.read(1):
            raise ValueError("the file changed while it was read")
    start = len(MAGIC) + _SIZES.size
    if size < start or buffer[: len(MAGIC)] != MAGIC:
        raise ValueError("not a dataset-doctor array file")
    contents_size, crc = _SIZES.unpack_from(buffer, len(MAGIC))
    if contents_size > min(_MAX_CONTENTS_BYTES, size - start):
        raise ValueError("damaged: table of contents past the end")
    view = memoryview(buffer)
    if _checksum(contents_size, [view[start:]]) != crc:
        raise ValueError("damaged: checksum mismatch")
    entries = json.loads(bytes(view[start:start + contents_size]).decode("utf-8"))
    data_start = start + contents_size
    data_size = size - data_start
    arrays: dict[str, np.ndarray] = {}
    for entry in entries if isinstance(entries, list) else [None]:
        try:
            name, dtype_text, shape, offset, length = entry
            dtype = np.dtype(dtype_text)
            valid = (dtype.kind in _KINDS and isinstance(offset, int) and isinstance(length, int)
                     and 0 <= offset <= offset + length <= data_size
                     and all(isinstance(n, int) and n >= 0 for n in shape)
                     and int(np.prod(shape, dtype=np.int64)) * dtype.itemsize == length)
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise ValueError(f"damaged: table of contents entry {entry!r:.80}")
        arrays[name] = np.frombuffer(buffer, dtype=dtype, count=length // dtype.itemsize,
                                     offset=data_start + offset).reshape(tuple(shape))
    return arrays
