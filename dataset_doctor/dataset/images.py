"""Probing image files: size, readability, a content hash and a perceptual hash, from one read of each file.

Why one pass: the audit must really decode every image (a header check misses corrupt data), and the
decoded pixels also give the perceptual hash used to find near-duplicates and train/val leaks. JPEGs are
decoded at 1/2..1/8 scale (libjpeg's DCT scaling), which still walks the whole compressed stream but costs a
fraction of a full decode. Truncated JPEGs and PNGs, which decoders quietly half-read, are caught by their
missing end markers; JPEGs whose data is damaged in the middle by libjpeg's own warnings, which OpenCV does
not pass on (see _DecoderMessages).

Every image file of a dataset is read through this module, by bytes (`read_image_file`): cv2.imread takes the
name as UTF-8 and crashes on one that is not (os.fsdecode gives such names as surrogates, `bad\\udcff.jpg`).
Images above a pixel budget (`DEFAULT_MAX_PIXELS`) are never decoded in full: a 1 MB PNG can hold 32000x32000
pixels, a gigabyte once decoded. Their size comes from the header; JPEGs are decoded at 1/8 scale, PNGs are
checked by their structure instead (chunk checksums and the length of the decompressed data).
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
import tempfile
import threading
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

cv2.setNumThreads(1)  # one image per worker process: OpenCV's own threads would only contend with them

PHASH_BITS = 256
DEFAULT_MAX_PIXELS = 50_000_000  # above this, an image is a huge-image finding and is decoded reduced or not at all
# Gray-level standard deviation (of the 64x64 thumbnail the hash is computed on) below which an image is flat:
# JPEG noise on a single-colour frame stays under 0.5; a 20x20 mark on a 640x640 blank already gives ~8.
FLAT_MAX_STD = 1.0
_JPEG_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Decoding down to 64 px (the hash's own resolution) made the hash unstable: the two resampling steps alias
# differently for a copy resized by 10%, which then differed in up to 26 of 256 bits on the sample dataset.
# Keeping 128 px brings resized / re-encoded / brightened copies within 14 bits (95% within 10).
_MIN_HASH_SIDE = 128
_REDUCED_FLAGS = {8: cv2.IMREAD_REDUCED_GRAYSCALE_8, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                  2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 1: cv2.IMREAD_GRAYSCALE}
# libjpeg warnings (jerror.h) that mean image data is missing or garbled: OpenCV still returns an image.
_DAMAGE_WARNINGS = ("Corrupt JPEG data", "Premature end of JPEG file")
# ...except padding after the last block, common in camera files that decode completely.
_HARMLESS_WARNINGS = ("extraneous bytes before marker",)
_DECODER_CHATTER = ("JPEG", "libpng", "jpeg", "png")  # lines from the decoders, never shown to the user
_REDUCED_COLOR_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                        8: cv2.IMREAD_REDUCED_COLOR_8}
_HEADER_BYTES = 1 << 18  # enough for a JPEG frame header behind a large EXIF block (APP1 holds at most 64 KiB)


@dataclass(frozen=True)
class ImageProbe:
    """What one read of an image file tells. `error` is None for a usable image."""

    width: int
    height: int
    file_bytes: int
    content_hash: str  # SHA-256 of the file bytes, first 128 bits: equal files, equal hashes
    phash: str  # 256-bit DCT perceptual hash, hex ('' when unreadable)
    format: str
    error: str | None


def read_image_file(path: str, color: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray | None:
    """Decode an image file (BGR, or grayscale with color=False), reading it by bytes; None when it cannot be.

    An image above `max_pixels` is decoded at the smallest JPEG reduction that fits the budget (1/2..1/8, the
    shape then is that fraction of the header size), and not at all (None) when no reduction can fit it.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except (OSError, ValueError):
        return None
    if not data.size:
        return None
    head = data[:_HEADER_BYTES].tobytes()
    image_format = sniff_format(head)
    reduction = budget_reduction(_header_size(head, image_format), image_format, max_pixels)
    if reduction is None:
        return None
    flags = (_REDUCED_COLOR_FLAGS if color else _REDUCED_FLAGS)[reduction]
    try:
        return cv2.imdecode(data, flags)
    except cv2.error:
        return None


def image_header_size(path: str) -> tuple[int, int] | None:
    """(width, height) from the file's header (PNG and JPEG), without decoding; None where unknown."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEADER_BYTES)
    except OSError:
        return None
    return _header_size(head, sniff_format(head))


def budget_reduction(header_size: tuple[int, int] | None, image_format: str, max_pixels: int) -> int | None:
    """The decode reduction (1, 2, 4, 8) that keeps an image within `max_pixels`; None when none can.

    Only JPEGs decode reduced without the full image in memory (libjpeg's DCT scaling); OpenCV decodes a PNG
    whole even when asked for a reduced image, so a PNG above the budget cannot be decoded within it.
    """
    if header_size is None or header_size[0] * header_size[1] <= max_pixels:
        return 1
    if image_format == "jpeg":
        width, height = header_size
        for factor in (2, 4, 8):
            if -(-width // factor) * -(-height // factor) <= max_pixels:
                return factor
    return None


def probe_image_file(path: str) -> ImageProbe:
    """Read, hash and decode one image file. Never raises."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return _unreadable("file not found")
    except (OSError, ValueError) as error:
        return _unreadable(f"cannot read: {error.__class__.__name__}: {error}")
    return probe_image_bytes(data)


def probe_image_bytes(data: bytes) -> ImageProbe:
    size = len(data)
    if size == 0:
        return _unreadable("zero bytes", file_bytes=0)
    # SHA-256 runs on the CPU's SHA extensions where present: 2x faster than blake2b here.
    content_hash = hashlib.sha256(data).hexdigest()[:32]
    image_format = sniff_format(data)
    header_size = _header_size(data, image_format)
    width, height = header_size or (0, 0)

    def failed(reason: str) -> ImageProbe:
        return ImageProbe(width, height, size, content_hash, "", image_format, reason)

    if image_format == "unknown":
        return failed("not an image (unknown file signature)")
    truncated = _truncation(data, image_format)
    if truncated:
        return failed(truncated)

    if header_size is not None and header_size[0] * header_size[1] > DEFAULT_MAX_PIXELS and image_format == "png":
        # Decoding would hold every pixel (see budget_reduction): check the structure instead; no hash.
        damage = _png_structure_error(data, *header_size)
        return failed(damage) if damage else ImageProbe(width, height, size, content_hash, "", image_format, None)
    reduction = _reduction_for(header_size)
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        gray, messages = _decoder_messages.decode(buffer, _REDUCED_FLAGS[reduction])
    except cv2.error as error:
        return failed(f"cannot be decoded: {str(error).strip().splitlines()[-1]}")
    if gray is None or gray.size == 0:
        detail = f" ({messages[-1]})" if messages else ""
        return failed(f"cannot be decoded as {image_format}{detail}")
    damage = [m for m in messages if m.startswith(_DAMAGE_WARNINGS) and not any(h in m for h in _HARMLESS_WARNINGS)]
    if damage:
        return failed(f"damaged {image_format} data: the decoder reports '{damage[0]}'")
    if header_size is None:
        height, width = gray.shape[:2]
    else:
        width, height = _oriented_size(header_size, gray.shape[:2], reduction)
    if width <= 0 or height <= 0:
        return failed(f"invalid image size {width}x{height}")
    return ImageProbe(width, height, size, content_hash, perceptual_hash(gray), image_format, None)


class _DecoderMessages:
    """What the image decoders print while decoding one image.

    libjpeg reports damaged entropy-coded data (garbage or a missing stretch in the middle of the file, end
    marker intact) only as warnings, and OpenCV passes them to no one: it returns an image, part of it grey
    or garbage, and the warning goes to file descriptor 2. So for the length of one decode fd 2 points at a
    private temporary file, which is read back. One file per process (scans fork workers), a lock against
    threads; lines that are not decoder output are written back to the real stderr.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = -1
        self._capture = None

    def decode(self, buffer: np.ndarray, flags: int) -> tuple[np.ndarray | None, list[str]]:
        with self._lock:
            if self._owner != os.getpid():
                self._capture = tempfile.TemporaryFile()  # noqa: SIM115 (kept open for the process's life)
                self._owner = os.getpid()
            capture = self._capture.fileno()
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(capture, 2)
            try:
                image = cv2.imdecode(buffer, flags)
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            size = os.fstat(capture).st_size
            if not size:
                return image, []
            os.lseek(capture, 0, os.SEEK_SET)
            text = os.read(capture, size).decode("utf-8", errors="replace")
            os.ftruncate(capture, 0)
            os.lseek(capture, 0, os.SEEK_SET)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        others = [line for line in lines if not any(word in line for word in _DECODER_CHATTER)]
        if others:
            sys.stderr.write("\n".join(others) + "\n")
        return image, [line for line in lines if line not in others]


_decoder_messages = _DecoderMessages()


def perceptual_hash(gray: np.ndarray) -> str:
    """256-bit DCT perceptual hash as 64 hex digits: signs of the 16x16 lowest frequencies vs their median.

    Robust to resizing, re-encoding and brightness/contrast changes (they barely move low frequencies relative
    to each other). 256 bits rather than the classic 64 because 64 cannot tell two photos of the same scene
    apart: on the sample dataset, recoloured crops of one photo came within 2 of 63 bits, as close as a real
    resized copy. With 256 bits (decoded at 128 px or more) edited copies of scikit-learn's photos stay within
    8 bits, the sample's resized + brightened + re-encoded leaks within 14, and distinct photos of one scene
    start at 18 (NEAR_DUPLICATE_MAX_BITS = 16 sits between).
    """
    small = cv2.resize(gray.astype(np.float32), (64, 64), interpolation=cv2.INTER_AREA)
    mean, deviation = cv2.meanStdDev(small)
    if deviation.item() < FLAT_MAX_STD:
        return flat_image_hash(mean.item())
    ac = cv2.dct(small)[:16, :16].ravel()[1:]
    bits = np.zeros(PHASH_BITS, dtype=bool)
    # The median of the 255 AC terms is the 128th smallest: a partition, not a full median (same value).
    np.greater(ac, np.partition(ac, 127)[127], out=bits[1:])
    return np.packbits(bits).tobytes().hex()


def flat_image_hash(gray_level: float) -> str:
    """The hash of a flat (single-colour) image: a fixed pseudo-random 256-bit pattern per integer gray level.

    A flat image has no AC energy, so its DCT hash would be all zeros whatever its colour, and every blank,
    black or grey frame would be a near-duplicate of every other. Flat images of one level (JPEG or PNG of
    the same colour) still match exactly; other levels, and every real picture, are ~128 bits away.
    """
    level = int(round(gray_level))
    return hashlib.blake2b(f"flat image, gray level {level}".encode(), digest_size=PHASH_BITS // 8).hexdigest()


def phash_words(hashes) -> np.ndarray:
    """Hex perceptual hashes -> (N, 4) uint64 words, the form hamming_distance works on ('' gives zeros)."""
    hashes = list(hashes)
    raw = b"".join(bytes.fromhex(h) if h else bytes(PHASH_BITS // 8) for h in hashes)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hashes), PHASH_BITS // 64)


def hamming_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Differing bits between hash words (..., 4) of phash_words; broadcasts over leading axes."""
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=-1, dtype=np.int64)


def sniff_format(data: bytes) -> str:
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    return "unknown"


def _unreadable(reason: str, file_bytes: int = 0) -> ImageProbe:
    return ImageProbe(0, 0, file_bytes, "", "", "unknown", reason)


def _header_size(data: bytes, image_format: str) -> tuple[int, int] | None:
    """(width, height) as stored in the header, before EXIF orientation; None where not parsed."""
    if image_format == "jpeg":
        return _jpeg_size(data)
    if image_format == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position, end = 2, len(data)
    while position + 4 <= end:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        if marker in _JPEG_SOF_MARKERS:
            if position + 9 > end:
                return None
            height, width = struct.unpack(">HH", data[position + 5:position + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header: broken
            return None
        position += 2 + length
    return None


def _truncation(data: bytes, image_format: str) -> str | None:
    if image_format == "jpeg":
        # The end-of-image marker must follow the last start-of-scan (an EXIF thumbnail has its own EOI, so
        # looking only for some EOI would miss a truncated main image). Searched from the ends of the file
        # (the first SOS is near the start, the last EOI at the end), not through the whole image data.
        last_end = data.rfind(b"\xff\xd9")
        if data.find(b"\xff\xda") == -1 or last_end == -1 or data.find(b"\xff\xda", last_end) != -1:
            return "truncated JPEG (no end-of-image marker after the image data)"
    elif image_format == "png" and data.rfind(b"IEND") == -1:
        return "truncated PNG (no IEND chunk)"
    return None


def _png_structure_error(data: bytes, width: int, height: int) -> str | None:
    """What is wrong with a PNG's structure, checked without holding its pixels; None when it is whole.

    Every chunk's CRC is checked and the image data is inflated in bounded pieces and counted: it must be
    exactly the length the header's size, bit depth, colour type and interlacing call for.
    """
    if len(data) < 33:
        return "truncated PNG (no complete header)"
    bit_depth, colour_type, _, _, interlace = data[24:29]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour_type)
    if channels is None or width == 0 or height == 0:
        return f"invalid PNG header (colour type {colour_type}, size {width}x{height})"
    bits = channels * bit_depth
    # Adam7 passes as (step x, step y, start x, start y)
    passes = [(8, 8, 0, 0), (8, 8, 4, 0), (4, 8, 0, 4), (4, 4, 2, 0), (2, 4, 0, 2), (2, 2, 1, 0), (1, 2, 0, 1)]
    expected = 0
    for step_x, step_y, start_x, start_y in passes if interlace else [(1, 1, 0, 0)]:
        columns, rows = -(-(width - start_x) // step_x), -(-(height - start_y) // step_y)
        if columns > 0 and rows > 0:
            expected += rows * (1 + -(-columns * bits // 8))
    inflater, inflated, position = zlib.decompressobj(), 0, 8
    try:
        while position + 12 <= len(data):
            (length,) = struct.unpack(">I", data[position:position + 4])
            kind = data[position + 4:position + 8]
            end = position + 8 + length
            if end + 4 > len(data):
                return f"truncated PNG (chunk {kind.decode('latin-1')!r} cut off)"
            (crc,) = struct.unpack(">I", data[end:end + 4])
            if zlib.crc32(data[position + 4:end]) != crc:
                return f"damaged png data: checksum error in chunk {kind.decode('latin-1')!r}"
            if kind == b"IDAT":
                pending = data[position + 8:end]
                while pending and inflated <= expected:
                    inflated += len(inflater.decompress(pending, 1 << 24))
                    pending = inflater.unconsumed_tail
            if kind == b"IEND":
                break
            position = end + 4
        inflated += len(inflater.flush())
    except zlib.error as error:
        return f"damaged png data: {error}"
    if inflated != expected or not inflater.eof:
        return f"damaged png data: {inflated} of {expected} bytes of image data"
    return None


def _reduction_for(header_size: tuple[int, int] | None) -> int:
    """The largest decode reduction that keeps at least `_MIN_HASH_SIDE` px on the short side."""
    if header_size is None:
        return 1
    short_side = min(header_size)
    for factor in (8, 4, 2):
        if short_side >= _MIN_HASH_SIDE * factor:
            return factor
    return 1


def _oriented_size(header_size: tuple[int, int], decoded_shape: tuple[int, int], reduction: int) -> tuple[int, int]:
    """The header size, swapped when the decoder applied an EXIF rotation by 90 degrees.

    cv2.imdecode applies EXIF orientation, and YOLO labels refer to the oriented image (as in Ultralytics).
    """
    width, height = header_size
    decoded_height, decoded_width = decoded_shape
    expected_width, expected_height = -(-width // reduction), -(-height // reduction)
    straight = abs(decoded_width - expected_width) + abs(decoded_height - expected_height)
    rotated = abs(decoded_width - expected_height) + abs(decoded_height - expected_width)
    return (height, width) if rotated < straight else (width, height)
