"""Files that are legal on disk and hostile to tools: names that are not UTF-8, directory link loops, PNGs of a
gigapixel in one megabyte. Shared by the hostile tables and the unit tests of the modules that must survive them.
"""

from __future__ import annotations

import functools
import os
import struct
import zlib
from pathlib import Path

import cv2

from tests.tiny_dataset import noise_image, write_dataset

BAD_NAME = b"bad\xff\xfe"  # not UTF-8: os.fsdecode gives 'bad\udcff\udcfe'
BAD_SHOWN = "bad\\udcff\\udcfe"  # its display form in the terminal, HTML and CSV


def write_bytes_named(directory: Path, name: bytes, data: bytes) -> str:
    """Write `data` to directory/name with `name` as raw bytes; returns the path as os.fsdecode gives it."""
    path = os.fsencode(directory) + b"/" + name
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(descriptor, data)
    finally:
        os.close(descriptor)
    return os.fsdecode(path)


def jpeg_bytes(seed_name: str, size: tuple[int, int] = (96, 64)) -> bytes:
    return cv2.imencode(".jpg", noise_image(seed_name, size))[1].tobytes()


@functools.lru_cache(maxsize=4)
def huge_png(width: int, height: int, rows: int | None = None) -> bytes:
    """A valid 8-bit grayscale PNG of width x height, all black (a few kB per thousand rows, never in memory as
    pixels). `rows` < height writes fewer rows than the header promises (checksums still right)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + width)
    data = b"".join(compressor.compress(row) for _ in range(height if rows is None else rows)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def interlaced_png(width: int, height: int, missing_bytes: int = 0) -> bytes:
    """An Adam7-interlaced 8-bit grayscale PNG, mid-grey, written by hand (OpenCV writes no interlaced PNG);
    `missing_bytes` leaves that many bytes off the end of the image data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = b""
    for step_x, step_y, start_x, start_y in ((8, 8, 0, 0), (8, 8, 4, 0), (4, 8, 0, 4), (4, 4, 2, 0), (2, 4, 0, 2),
                                             (2, 2, 1, 0), (1, 2, 0, 1)):
        columns, rows = -(-(width - start_x) // step_x), -(-(height - start_y) // step_y)
        if columns > 0 and rows > 0:
            raw += (b"\x00" + b"\x80" * columns) * rows
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 1)
    data = zlib.compress(raw[:len(raw) - missing_bytes])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def small_dataset(root: Path, images: int = 3) -> Path:
    """train and val with `images` labelled JPEGs each (classes a and b in both, so nothing but the hostile part
    is a finding); returns data.yaml."""
    label = "0 0.5 0.5 0.3 0.3\n1 0.3 0.3 0.2 0.2\n"
    return write_dataset(root, {split: {f"im{number}.jpg": label for number in range(images)}
                                for split in ("train", "val")})


def dataset_with_bad_name(root: Path, label: bytes = b"0 0.5 0.5 0.2 0.2\n") -> Path:
    """small_dataset plus train image `bad\\xff\\xfe.jpg` with its label (give a bad line to get it drawn)."""
    yaml_path = small_dataset(root)
    write_bytes_named(root / "images" / "train", BAD_NAME + b".jpg", jpeg_bytes("bad name"))
    write_bytes_named(root / "labels" / "train", BAD_NAME + b".txt", label)
    return yaml_path


def dataset_with_loops(root: Path) -> Path:
    """small_dataset plus images/train/loop -> . and images/train/up -> ../train."""
    yaml_path = small_dataset(root)
    os.symlink(".", root / "images" / "train" / "loop")
    os.symlink("../train", root / "images" / "train" / "up")
    return yaml_path


def dataset_with_huge_png(root: Path, side: int = 32000) -> Path:
    """small_dataset plus train image huge.png of side x side pixels (about 1 MB at 32000), labelled."""
    yaml_path = small_dataset(root)
    (root / "images" / "train" / "huge.png").write_bytes(huge_png(side, side))
    (root / "labels" / "train" / "huge.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    return yaml_path
