"""Thumbnail helpers: boxes outside the image stay visible, tiny boxes get a ring, placeholder text wraps."""

from __future__ import annotations

import numpy as np

from reports.thumbnails import HIGHLIGHT, DrawnBox, draw_boxes, pad_to_fit, placeholder


def red_pixels(image: np.ndarray) -> np.ndarray:
    return (image[..., 2] > 150) & (image[..., 1] < 80) & (image[..., 0] < 80)


def test_pad_to_fit_shows_a_box_above_the_image():
    image = np.zeros((100, 200, 3), np.uint8)
    box = DrawnBox(0.5, -0.1, 0.2, 0.1, colour=HIGHLIGHT, thickness=2)  # y from -0.15 to -0.05: wholly outside
    assert not red_pixels(draw_boxes(image, [box])).any()  # clipped away without padding
    padded, [moved] = pad_to_fit(image, [box])
    assert padded.shape[1] == 200 and padded.shape[0] == 100 + 15 + 2
    assert moved.cy - moved.h / 2 >= 0 and moved.cy + moved.h / 2 <= 1
    assert (padded[17:, :] == image).all()  # the picture itself is unchanged, below the margin
    drawn = red_pixels(draw_boxes(padded, [moved]))
    rows, columns = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
    assert rows.max() < 17 and abs(columns.min() - 80) <= 2 and abs(columns.max() - 120) <= 2


def test_pad_to_fit_leaves_inside_boxes_alone_and_bounds_the_margin():
    image = np.zeros((50, 80, 3), np.uint8)
    inside = [DrawnBox(0.5, 0.5, 0.2, 0.2)]
    same, boxes = pad_to_fit(image, inside)
    assert same is image and boxes == inside
    far, _ = pad_to_fit(image, [DrawnBox(0.5, 1000.0, 0.1, 0.1)])
    assert far.shape[:2] == (50 + 50 + 2, 80)  # at most one image side, whatever the coordinate


def test_marker_rings_a_tiny_box():
    image = np.zeros((100, 100, 3), np.uint8)
    plain = draw_boxes(image, [DrawnBox(0.5, 0.5, 0.01, 0.01, colour=HIGHLIGHT)])
    ringed = draw_boxes(image, [DrawnBox(0.5, 0.5, 0.01, 0.01, colour=HIGHLIGHT, marker=True)])
    assert red_pixels(ringed).sum() > red_pixels(plain).sum() + 20
    assert red_pixels(ringed)[50, 40:47].any()  # the ring, about 8 px from the centre


def test_placeholder_wraps_long_reasons_onto_several_lines():
    tile = placeholder("truncated JPEG (no end-of-image marker after the image data)", (240, 160))
    text_rows = np.flatnonzero((tile < 120).any(axis=(1, 2)))
    bands = np.split(text_rows, np.flatnonzero(np.diff(text_rows) > 1) + 1)
    assert len(bands) >= 2


# --- names, links and huge images (issue 16 items 3, 5, 9) ---------------------------------------------------------

def test_load_thumbnail_reads_a_name_that_is_not_utf8(tmp_path):
    from reports.thumbnails import load_thumbnail
    from tests.odd_files import BAD_NAME, jpeg_bytes, write_bytes_named

    path = write_bytes_named(tmp_path, BAD_NAME + b".jpg", jpeg_bytes("thumb", (640, 320)))
    assert load_thumbnail(path, 320).shape == (160, 320, 3)  # cv2.imread on this name segfaulted


def test_load_thumbnail_leaves_a_huge_png_undecoded(tmp_path):
    from reports.thumbnails import load_thumbnail
    from tests.odd_files import huge_png

    (tmp_path / "huge.png").write_bytes(huge_png(8000, 8000))
    assert load_thumbnail(str(tmp_path / "huge.png")) is None
