"""Image probing: sizes, corruption that decoders hide, and a perceptual hash that finds edited copies."""

from __future__ import annotations

import struct
from importlib import resources

import cv2
import numpy as np
import pytest

from dataset_doctor.audit.near_duplicates import NEAR_DUPLICATE_MAX_BITS
from dataset_doctor.dataset.images import hamming_distance, phash_words, probe_image_bytes, probe_image_file
from tests.conftest import noise_image


def encode(image: np.ndarray, extension: str = ".jpg", **params) -> bytes:
    flags = [cv2.IMWRITE_JPEG_QUALITY, params.get("quality", 90)] if extension == ".jpg" else []
    return cv2.imencode(extension, image, flags)[1].tobytes()


def distance(a: str, b: str) -> int:
    return int(hamming_distance(phash_words([a]), phash_words([b]))[0])


@pytest.mark.parametrize("extension", [".jpg", ".png", ".bmp", ".tiff", ".webp"])
def test_size_and_format_of_valid_images(extension):
    probe = probe_image_bytes(encode(noise_image("x", (300, 200)), extension))
    assert probe.error is None
    assert (probe.width, probe.height) == (300, 200)
    assert probe.format == extension.strip(".").replace("jpg", "jpeg")
    assert len(probe.phash) == 64 and len(probe.content_hash) == 32


def test_truncated_jpeg_is_caught_by_its_missing_end_marker():
    """Older OpenCV builds and PIL (LOAD_TRUNCATED_IMAGES) half-read such files; the end marker never lies."""
    data = encode(noise_image("y", (640, 480)))
    probe = probe_image_bytes(data[: len(data) * 2 // 3])
    assert probe.error is not None and "truncated JPEG" in probe.error
    assert (probe.width, probe.height) == (640, 480)  # the header is still readable


def test_truncated_png_is_caught():
    data = encode(noise_image("z", (200, 100)), ".png")
    assert "truncated PNG" in probe_image_bytes(data[: len(data) // 2]).error


def test_jpeg_with_trailing_bytes_after_the_end_marker_is_fine():
    data = encode(noise_image("t", (128, 128))) + b"\x00" * 100 + b"camera trailer"
    assert probe_image_bytes(data).error is None


@pytest.mark.parametrize(("data", "fragment"), [
    (b"", "zero bytes"),
    (b"hello, I am text", "not an image"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 50 + b"\xff\xda" + b"\x12" * 30 + b"\xff\xd9", "cannot be decoded"),
])
def test_unusable_bytes(data, fragment):
    probe = probe_image_bytes(data)
    assert probe.error is not None and fragment in probe.error and probe.phash == ""


def test_missing_file(tmp_path):
    assert probe_image_file(str(tmp_path / "gone.jpg")).error == "file not found"


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert a minimal EXIF APP1 segment holding only the orientation tag (0x0112)."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd
    payload = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]


def test_exif_rotation_swaps_width_and_height_like_the_training_decoder():
    """cv2.imread applies EXIF orientation and YOLO labels refer to the oriented image."""
    data = with_exif_orientation(encode(noise_image("r", (640, 320))), orientation=6)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (640, 320)
    probe = probe_image_bytes(data)
    assert probe.error is None and (probe.width, probe.height) == (320, 640)


def photo(name: str) -> np.ndarray:
    return cv2.imread(str(resources.files("sklearn.datasets") / "images" / name), cv2.IMREAD_COLOR)


@pytest.mark.parametrize("name", ["china.jpg", "flower.jpg"])
def test_perceptual_hash_finds_resized_reencoded_and_brightened_copies(name):
    original = photo(name)
    reference = probe_image_bytes(encode(original)).phash
    edits = {
        "downscaled": encode(cv2.resize(original, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)),
        "upscaled": encode(cv2.resize(original, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC)),
        "jpeg quality 40": encode(original, quality=40),
        "png": encode(original, ".png"),
        "brighter": encode(cv2.convertScaleAbs(original, alpha=1.1, beta=15)),
    }
    for edit, data in edits.items():
        assert distance(reference, probe_image_bytes(data).phash) <= NEAR_DUPLICATE_MAX_BITS, edit


def test_perceptual_hash_separates_different_pictures_of_one_scene():
    china = photo("china.jpg")
    crops = [china[y:y + 300, x:x + 400] for y in (0, 60, 127) for x in (0, 120, 240)]
    pictures = [*crops, photo("flower.jpg")]
    hashes = [probe_image_bytes(encode(picture)).phash for picture in pictures]
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            assert distance(hashes[i], hashes[j]) > 2 * NEAR_DUPLICATE_MAX_BITS
