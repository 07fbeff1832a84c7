"""Image probing: sizes, corruption that decoders hide, and a perceptual hash that finds edited copies."""

from __future__ import annotations

import struct
from importlib import resources

import cv2
import numpy as np
import pytest

from dataset_doctor.audit.near_duplicates import NEAR_DUPLICATE_MAX_BITS
from dataset_doctor.dataset.images import hamming_distance, phash_words, probe_image_bytes, probe_image_file
from tests.tiny_dataset import noise_image


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


# --- names, links and huge images (issue 16 items 3, 5, 9) ---------------------------------------------------------

def test_read_image_file_reads_a_name_that_is_not_utf8(tmp_path):
    from dataset_doctor.dataset.images import read_image_file
    from tests.odd_files import BAD_NAME, jpeg_bytes, write_bytes_named

    data = jpeg_bytes("odd")
    path = write_bytes_named(tmp_path, BAD_NAME + b".jpg", data)
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(read_image_file(path), expected)
    assert probe_image_file(path).error is None


def test_read_image_file_decodes_a_jpeg_above_the_budget_reduced(tmp_path):
    from dataset_doctor.dataset.images import read_image_file

    path = tmp_path / "big.jpg"
    path.write_bytes(encode(noise_image("big", (800, 600))))
    assert read_image_file(str(path)).shape == (600, 800, 3)
    # 400x300 = 120000 pixels is still above 100000: the next reduction, 1/4
    assert read_image_file(str(path), max_pixels=100_000).shape == (150, 200, 3)
    assert read_image_file(str(path), color=False, max_pixels=100_000).shape == (150, 200)


def test_budget_reduction():
    from dataset_doctor.dataset.images import budget_reduction

    assert budget_reduction((8000, 6000), "jpeg", 50_000_000) == 1
    assert budget_reduction((20000, 20000), "jpeg", 50_000_000) == 4
    assert budget_reduction((65535, 65535), "jpeg", 50_000_000) is None  # 1/8 is still 67 megapixels
    assert budget_reduction((20000, 20000), "png", 50_000_000) is None  # OpenCV decodes a PNG whole
    assert budget_reduction(None, "webp", 1) == 1  # size unknown from the header: OpenCV's own limit applies


def test_a_huge_png_is_measured_and_checked_without_decoding(monkeypatch):
    from dataset_doctor.dataset import images
    from tests.odd_files import huge_png

    def no_decode(*args):
        raise AssertionError("decoded a PNG above the pixel budget")

    monkeypatch.setattr(images._decoder_messages, "decode", no_decode)
    probe = probe_image_bytes(huge_png(8000, 8000))  # 64 megapixels, 60 kB
    assert (probe.width, probe.height, probe.format, probe.error, probe.phash) == (8000, 8000, "png", None, "")


def test_damage_in_a_huge_png_is_found_by_its_structure():
    from tests.odd_files import huge_png

    data = bytearray(huge_png(8000, 8000))
    data[len(data) // 2] ^= 0xFF
    assert "checksum error in chunk 'IDAT'" in probe_image_bytes(bytes(data)).error
    short = probe_image_bytes(huge_png(8000, 8000, rows=7000))
    assert short.error == f"damaged png data: {7000 * 8001} of {8000 * 8001} bytes of image data"


@pytest.mark.parametrize("width, height", [(1, 1), (5, 3), (37, 23), (9, 17)])
def test_png_structure_check_agrees_with_libpng_on_interlaced_images(width, height):
    from dataset_doctor.dataset.images import _decoder_messages, _png_structure_error
    from tests.odd_files import interlaced_png

    whole, short = interlaced_png(width, height), interlaced_png(width, height, missing_bytes=1)
    image, messages = _decoder_messages.decode(np.frombuffer(whole, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None and image.shape == (height, width) and (image == 128).all() and not messages
    assert _png_structure_error(whole, width, height) is None
    assert _decoder_messages.decode(np.frombuffer(short, np.uint8), cv2.IMREAD_GRAYSCALE)[0] is None
    assert "bytes of image data" in _png_structure_error(short, width, height)
def test_flat_images_of_different_colours_are_not_near_duplicates():
    hashes = {}
    for level in (0, 1, 37, 128, 200, 255):
        for extension in (".png", ".jpg"):
            flat = np.full((64, 96, 3), level, np.uint8)
            hashes[level, extension] = probe_image_bytes(encode(flat, extension)).phash
    for (level_a, ext_a), hash_a in hashes.items():
        for (level_b, ext_b), hash_b in hashes.items():
            if level_a == level_b:
                assert distance(hash_a, hash_b) == 0, (level_a, ext_a, ext_b)  # one colour: still the same
            else:
                assert distance(hash_a, hash_b) > 3 * NEAR_DUPLICATE_MAX_BITS, (level_a, level_b)
    textured = probe_image_bytes(encode(noise_image("texture"))).phash
    assert min(distance(textured, other) for other in hashes.values()) > 3 * NEAR_DUPLICATE_MAX_BITS
